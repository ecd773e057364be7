"""The ledger behind the Application boundary: `Ledger` implements node/application.py's protocol (the
only door between consensus and the ledger, in the spirit of CometBFT's ABCI) on the state, the mempool
and the chain store. The protocol lives apart so that consensus imports none of this module's execution,
VM and storage."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from node import blocks, crypto, encoding, limits
from node.blocks import Block, CommitCertificate, Header, InvalidBlock, Receipt
from node.execution import BlockContext, apply_block, execute_candidates, open_block_transactions, validate_header
from node.contracts import system
from node.mempool import Mempool
from node.orders import OrderEvent, order_events
from node.state import VALIDATOR_EPOCHS_KEY, CommittedState, State, TreeUpdate, ValidatorInfo
from node.application import Application  # noqa: F401 (Ledger implements it; importers find it here too)
from node.blocks import ChainHead
from node.storage.chain import ChainStore, CommitBatch
from node.transactions import Envelope, InvalidTransaction, open_transaction, transaction_hash


@dataclass(frozen=True, slots=True)
class ExecutedBlock:
    """A validated block's execution, kept until it commits."""

    block: Block
    envelopes: tuple[Envelope, ...]
    state: State
    receipts: tuple[Receipt, ...]
    encoded_receipts: tuple[bytes, ...]
    encoded_changes: dict[bytes, bytes | None]
    """The state changes, encoded once for both the commitment and the store."""
    tree_update: TreeUpdate


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """What subscribers learn after each commit."""

    block: Block
    block_hash: bytes
    certificate: CommitCertificate
    envelopes: tuple[Envelope, ...]
    receipts: tuple[Receipt, ...]
    touched: tuple[tuple[bytes, ...], ...]
    order_events: tuple[OrderEvent, ...] = ()
    """Transitions of orders of the system orders contract in this block."""


def touched_accounts(envelope: Envelope, receipt: Receipt, order_events: Sequence[OrderEvent] = ()
                     ) -> tuple[bytes, ...]:
    """The sender, every account an event names (addresses are the 20-byte event fields), and the buyer and
    merchant of every order the transaction moved."""
    accounts = [envelope.sender]
    for event in receipt.events:
        # A contract's own event is (contract, data): only the contract is an account there.
        fields = event.fields if event.name in blocks.NATIVE_EVENTS else event.fields[:1]
        for value in fields:
            if len(value) == 20 and value not in accounts:
                accounts.append(value)
    for order_event in order_events:
        for party in (order_event.buyer, order_event.merchant):
            if party not in accounts:
                accounts.append(party)
    return tuple(accounts)


class Ledger:
    """The Application: state + mempool + chain store."""

    def __init__(self, store: ChainStore, mempool: Mempool | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self.params = store.genesis.params
        self.committed: CommittedState = store.load_state()
        self.mempool = mempool if mempool is not None else Mempool()  # an empty one is falsy
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._executed: OrderedDict[bytes, ExecutedBlock] = OrderedDict()
        self._verified: OrderedDict[bytes, Envelope] = OrderedDict()
        self.listeners: list[Callable[[CommittedBlock], None]] = []
        self.rejections: dict[str, int] = {}
        """Count of rejected transactions per rule (for /metrics)."""
        self.recent_rejections: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        """tx hash -> (rule, message) for the latest rejections, so `tx_get` can say why."""
        self._commit_in_flight = False

    # --- what consensus reads ---------------------------------------------------------------

    @property
    def chain_id(self) -> str:
        return self.params.chain_id

    @property
    def signing_domain(self) -> crypto.SigningDomain:
        return self.store.genesis.signing_domain

    @property
    def validator_keys(self) -> tuple[bytes, ...]:
        """Keys of the validators that certify the next block (genesis', or as governance changed them)."""
        return tuple(v.public_key for v in self.validators)

    @property
    def validators(self) -> tuple[ValidatorInfo, ...]:
        """The validator set for the next block."""
        return self.state().validators_at(self.head.height + 1)

    @property
    def known_validators(self) -> tuple[ValidatorInfo, ...]:
        """The next block's validators and every validator of a change already scheduled (peers to connect to)."""
        state = self.state()
        known = {v.public_key: v for v in state.validators_at(self.head.height + 1)}
        record = state.get(VALIDATOR_EPOCHS_KEY)
        for epoch in record.epochs if record else ():
            if epoch.from_height > self.head.height + 1:
                known.update({v.public_key: v for v in epoch.validators})
        return tuple(known.values())

    @property
    def head(self) -> ChainHead:
        return self.store.head

    def has_pending(self) -> bool:
        return len(self.mempool) > 0

    def waiting_transactions(self, age_ms_min: int, txs_max: int) -> list[bytes]:
        return self.mempool.waiting_since(age_ms_min, txs_max)

    def has_transaction(self, tx_hash: bytes) -> bool:
        return tx_hash in self.mempool

    def certified_block(self, height: int) -> tuple[Block, CommitCertificate] | None:
        """A committed block with its certificate (for block sync)."""
        block = self.store.get_block(height)
        certificate = self.store.get_certificate(height)
        return None if block is None or certificate is None else (block, certificate)

    def state(self) -> State:
        """A read view of the committed state (valid until the next commit)."""
        return State(self.committed)

    # --- mempool ----------------------------------------------------------------------------

    def check_tx(self, raw: bytes, verified: Envelope | None = None) -> bytes:
        """Admit a signed transaction; returns its hash or raises InvalidTransaction.

        `verified` is the transaction already opened with its signature checked (e.g. by a
        batch verifier on another core); otherwise it is opened and verified here.
        """
        try:
            envelope = verified if verified is not None else open_transaction(raw, self.signing_domain)
            assert envelope.raw == raw
            self._admit(envelope)
        except InvalidTransaction as error:
            if error.code not in ("already_known", "already_committed"):
                self.record_rejection(transaction_hash(raw), error.code, error.message)
            raise
        self._remember_verified(envelope)
        return envelope.hash

    def _admit(self, envelope: Envelope) -> None:
        try:
            self.mempool.add(envelope, self.state())
        except InvalidTransaction as error:
            # Only a used nonce can mean "already committed": look the hash up just then.
            if error.code == "nonce_used" and self.store.get_tx(envelope.hash) is not None:
                raise InvalidTransaction("already_committed", "transaction is already committed") from error
            raise

    def record_rejection(self, tx_hash: bytes, code: str, message: str) -> None:
        """Count a rejection and remember why, so `tx_get` can tell the sender."""
        self.rejections[code] = self.rejections.get(code, 0) + 1
        self.recent_rejections[tx_hash] = (code, message)
        while len(self.recent_rejections) > limits.recent_rejections_max:
            self.recent_rejections.popitem(last=False)

    def _remember_verified(self, envelope: Envelope) -> None:
        self._verified[envelope.hash] = envelope
        while len(self._verified) > limits.signature_cache_entries_max:
            self._verified.popitem(last=False)

    # --- blocks -------------------------------------------------------------------------------

    def prepare_proposal(self, height: int, view: int, proposer: bytes, timestamp_ms: int,
                         txs_max: int = limits.block_txs_max) -> Block:
        """Build the next block (at most `txs_max` transactions) from the mempool; it is executed and ready
        to commit."""
        assert 0 < txs_max <= limits.block_txs_max
        assert height == self.head.height + 1
        parent = self.store.head_header
        if parent is not None:
            timestamp_ms = max(timestamp_ms, parent.timestamp_ms)
        state = self.state()
        candidates = self.mempool.reap(state, txs_max, limits.block_bytes_max)
        context = BlockContext(height, timestamp_ms)
        new_state, included, receipts, skipped = execute_candidates(
            state, candidates, context, txs_max, limits.block_bytes_max)
        if skipped:
            for envelope, code in skipped:
                self.record_rejection(envelope.hash, code, "dropped by the proposer: the transaction can no longer "
                                                            "be included")
            self.mempool.update(state, set(), skipped)
        encoded_changes = new_state.encoded_changes()
        tree_update = self.committed.tree.compute_update(encoded_changes)
        tx_hashes = [e.hash for e in included]
        encoded_receipts = tuple(encoding.encode(r) for r in receipts)
        header = Header(self.chain_id, height, view, self.head.block_hash, proposer, timestamp_ms, len(included),
                        blocks.tx_root(tx_hashes), blocks.receipts_root_of_encoded(encoded_receipts),
                        tree_update.root)
        block = Block(header, tuple(e.raw for e in included))
        self._remember_executed(ExecutedBlock(block, tuple(included), new_state, tuple(receipts), encoded_receipts,
                                              encoded_changes, tree_update))
        return block

    def process_proposal(self, block: Block, check_clock: bool = True) -> None:
        """Validate and execute a proposed block; raise InvalidBlock if any rule fails.

        `check_clock` applies the local-clock rule (timestamp not too far ahead). It is a rule for
        voting only: a block that already carries 2f+1 commits (commit quorum, block sync) is
        executed without it, so a node whose clock lags can still apply certified blocks.
        """
        if self._executed_block(block) is not None:
            return
        header = block.header
        validate_header(self.store.head_header, self.head.block_hash, header, self.chain_id)
        if check_clock and header.timestamp_ms > self._clock_ms() + limits.timestamp_skew_ms_max:
            raise InvalidBlock("block timestamp is too far in the future")
        blocks.check_body(block)
        envelopes = open_block_transactions(block, self.signing_domain, self._verified)
        new_state, receipts = apply_block(self.state(), block, {e.hash: e for e in envelopes})
        encoded_changes = new_state.encoded_changes()
        tree_update = self.committed.tree.compute_update(encoded_changes)
        if tree_update.root != header.state_root:
            raise InvalidBlock("state root does not match execution")
        encoded_receipts = tuple(encoding.encode(r) for r in receipts)
        self._remember_executed(ExecutedBlock(block, envelopes, new_state, receipts, encoded_receipts,
                                              encoded_changes, tree_update))

    def _executed_block(self, block: Block) -> ExecutedBlock | None:
        """The execution of exactly this block (header *and* body), if it was executed already.

        The cache is keyed by header hash; a block with that header but another body is not it.
        """
        executed = self._executed.get(blocks.header_hash(block.header))
        if executed is None:
            return None
        if executed.block.transactions != block.transactions:
            raise InvalidBlock(f"block {block.header.height}: its body differs from the executed block with the "
                               "same header")
        return executed

    def _remember_executed(self, executed: ExecutedBlock) -> None:
        self._executed[blocks.header_hash(executed.block.header)] = executed
        while len(self._executed) > 8:
            self._executed.popitem(last=False)

    def commit(self, block: Block, certificate: CommitCertificate) -> CommittedBlock:
        """Make a validated block final: one atomic store write, then update memory and the mempool."""
        executed, batch, result = self._begin_commit(block, certificate)
        self.store.write_commit(batch)
        return self._finish_commit(executed, batch, result)

    async def commit_async(self, block: Block, certificate: CommitCertificate,
                           executor: Executor | None = None) -> CommittedBlock:
        """`commit`, with the synced store write on a worker thread so the event loop keeps serving.

        While the write runs, readers see the previous block (state, head, mempool) — exactly as
        before the commit began; nothing else may commit meanwhile (the caller is the only committer).
        """
        assert not self._commit_in_flight, "one commit at a time"
        executed, batch, result = self._begin_commit(block, certificate)
        self._commit_in_flight = True
        write = asyncio.get_running_loop().run_in_executor(executor, self.store.write_commit, batch)
        cancelled = False
        try:
            while not write.done():
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    # Shutting down mid-write: let the atomic batch finish before anyone closes the store.
                    cancelled = True
        finally:
            self._commit_in_flight = False
        write.result()
        finished = self._finish_commit(executed, batch, result)
        if cancelled:
            raise asyncio.CancelledError
        return finished

    def _begin_commit(self, block: Block, certificate: CommitCertificate
                      ) -> tuple[ExecutedBlock, CommitBatch, CommittedBlock]:
        block_hash = blocks.header_hash(block.header)
        executed = self._executed_block(block)
        if executed is None:
            self.process_proposal(block, check_clock=False)  # certified: final whatever this node's clock says
            executed = self._executed[block_hash]
        assert executed.block == block
        blocks.verify_certificate(certificate, block.header, self.signing_domain, self.validator_keys)
        events = order_events(executed.receipts, self.params.contract(system.ORDERS))
        by_tx: dict[int, list[OrderEvent]] = {}
        for event in events:
            by_tx.setdefault(event.tx_index, []).append(event)
        touched = tuple(touched_accounts(e, r, by_tx.get(i, ()))
                        for i, (e, r) in enumerate(zip(executed.envelopes, executed.receipts)))
        new_orders = [(e.tx_index, e.order_id, e.buyer, e.merchant) for e in events if e.name == "order_created"]
        batch = self.store.prepare_commit(block, certificate, executed.encoded_receipts,
                                          [e.hash for e in executed.envelopes], touched, executed.encoded_changes,
                                          new_orders)
        result = CommittedBlock(block, block_hash, certificate, executed.envelopes, executed.receipts, touched,
                                tuple(events))
        return executed, batch, result

    def _finish_commit(self, executed: ExecutedBlock, batch: CommitBatch, result: CommittedBlock) -> CommittedBlock:
        assert self.store.head == batch.head
        self.committed.apply(executed.state.changes, executed.tree_update)
        self._executed.clear()
        for envelope in executed.envelopes:
            self._verified.pop(envelope.hash, None)
        self.mempool.update(self.state(), {e.sender for e in executed.envelopes})
        for listener in self.listeners:
            listener(result)
        return result
