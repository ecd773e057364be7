"""The Application protocol: the only door between consensus and the ledger (CometBFT's ABCI idea).

Consensus (node/consensus/) imports this module and nothing of execution, the VM or storage; `node.app.Ledger`
implements it. The methods, in the order a block meets them:

    check_tx(raw)                    admit a transaction to the mempool
    prepare_proposal(...)            build a block from the mempool (proposer only)
    process_proposal(block)          validate and execute a proposed block
    commit(block, certificate)       make a validated block final and durable
    head / validator_keys            what consensus needs to know about the chain
    signing_domain                   what every signature on the chain is made for (chain id and genesis hash)
    has_pending / waiting_transactions   what the mempool holds (a full node re-forwards what waits)
"""

from __future__ import annotations

from typing import Protocol

from node import crypto, limits
from node.blocks import Block, ChainHead, CommitCertificate
from node.transactions import Envelope
from node.validators import ValidatorInfo


class Application(Protocol):
    @property
    def chain_id(self) -> str: ...

    @property
    def signing_domain(self) -> crypto.SigningDomain:
        """What votes, certificates and transactions are signed for (chain id and genesis hash)."""

    @property
    def validator_keys(self) -> tuple[bytes, ...]: ...

    @property
    def head(self) -> ChainHead: ...

    def has_pending(self) -> bool: ...

    def waiting_transactions(self, age_ms_min: int, txs_max: int) -> list[bytes]:
        """Pending raw transactions, oldest first, that have waited at least `age_ms_min`."""

    def has_transaction(self, tx_hash: bytes) -> bool:
        """True if the transaction is in the mempool."""

    @property
    def known_validators(self) -> tuple[ValidatorInfo, ...]:
        """The next block's validators and those of any change already scheduled (whom to connect to)."""

    def check_tx(self, raw: bytes, verified: Envelope | None = None) -> bytes: ...

    def record_rejection(self, tx_hash: bytes, code: str, message: str) -> None:
        """Count a refused transaction by rule (for /metrics and `tx_get`)."""

    def prepare_proposal(self, height: int, view: int, proposer: bytes, timestamp_ms: int,
                         txs_max: int = limits.block_txs_max) -> Block: ...

    def process_proposal(self, block: Block, check_clock: bool = True) -> None: ...

    def commit(self, block: Block, certificate: CommitCertificate) -> object: ...

    async def commit_async(self, block: Block, certificate: CommitCertificate) -> object: ...

    def certified_block(self, height: int) -> tuple[Block, CommitCertificate] | None: ...
