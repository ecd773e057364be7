"""Shared test helpers: deterministic keys, small genesis documents, a ledger that commits blocks."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from node import blocks, crypto
from node.app import CommittedBlock, Ledger
from node.genesis import Genesis, genesis_document, parse_genesis
from node.localnet import dev_keys
from node.storage.chain import ChainStore
from node.storage.kv import KeyValueStore, MemoryStore
from node.transactions import Body, Transaction, sign_transaction

CHAIN_ID = "paychain-test"
ASSETS = [{"code": "CNY", "decimals": 2, "min_fee": 1}, {"code": "USD", "decimals": 2, "min_fee": 2}]


def keys(name: str) -> crypto.KeyPair:
    return dev_keys(f"test/{name}")


def make_genesis(users: dict[str, dict[str, int]] | None = None, gateways: tuple[str, ...] = ("gateway",),
                 merchants: tuple[str, ...] = ("merchant",),
                 validators: int = 1, chain_id: str = CHAIN_ID) -> Genesis:
    """A genesis with named test accounts; users default to alice and bob with 1,000.00 CNY and USD each."""
    users = users if users is not None else {"alice": {"CNY": 100_000, "USD": 100_000},
                                             "bob": {"CNY": 100_000, "USD": 100_000}}
    accounts = [{"address": crypto.format_address(keys(n).address), "role": "user", "balances": b}
                for n, b in users.items()]
    accounts += [{"address": crypto.format_address(keys(n).address), "role": "gateway",
                  "balances": {"CNY": 10_000, "USD": 10_000}} for n in gateways]
    accounts += [{"address": crypto.format_address(keys(n).address), "role": "merchant",
                  "balances": {"CNY": 1_000}} for n in merchants]
    validator_entries = [{"name": f"v{i}", "public_key": keys(f"validator-{i}").public_key.hex(),
                          "role": ("merchant", "gateway", "user")[min(i, 2)], "p2p_address": ""}
                         for i in range(validators)]
    document = genesis_document(chain_id, 1_700_000_000_000, ASSETS, keys("fees").address, validator_entries,
                                accounts)
    return parse_genesis(document)


def sign(name: str, nonce: int, body: Body, fee: int = 1, fee_asset: str = "CNY", chain_id: str = CHAIN_ID) -> bytes:
    pair = keys(name)
    return sign_transaction(pair, Transaction(chain_id, pair.public_key, nonce, fee_asset, fee, body))


@dataclass
class TestChain:
    """A ledger on a store, with a single validator that can certify blocks."""

    ledger: Ledger
    validator: crypto.KeyPair = field(default_factory=lambda: keys("validator-0"))
    now_ms: int = 1_700_000_001_000

    def commit_pending(self) -> CommittedBlock:
        """Propose a block from the mempool and commit it with the validator's certificate."""
        height = self.ledger.head.height + 1
        self.now_ms += 1000
        block = self.ledger.prepare_proposal(height, 0, self.validator.address, self.now_ms)
        self.ledger.process_proposal(block)
        return self.ledger.commit(block, certify(block, self.validator, self.ledger.chain_id))

    def submit(self, *raws: bytes) -> list[bytes]:
        return [self.ledger.check_tx(raw) for raw in raws]


def certify(block: blocks.Block, validator: crypto.KeyPair, chain_id: str) -> blocks.CommitCertificate:
    vote = blocks.CommitVote(block.header.height, block.header.view, blocks.header_hash(block.header))
    signature = blocks.sign_commit(validator, chain_id, vote)
    return blocks.CommitCertificate(vote.height, vote.view, vote.block_hash, (blocks.CommitSignature(0, signature),))


def make_chain(genesis: Genesis | None = None, kv: KeyValueStore | None = None) -> TestChain:
    genesis = genesis or make_genesis()
    return TestChain(Ledger(ChainStore(kv or MemoryStore(), genesis), clock_ms=lambda: 1_700_000_100_000))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
