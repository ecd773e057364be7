"""Carries out the PBFT core's actions against the Application, a transport, timers and the WAL.

The driver is synchronous and owns no clock or sockets: the node's async loop and the
deterministic simulator both feed it events (frames, timer expiries, new transactions) and
supply the ports. It also answers what needs the store rather than consensus state: block
sync (Status / SyncRequest / SyncResponse) and forwarding of admitted transactions (TxBatch).
Those service messages are exchanged with every allowed peer, validators and non-voting full
nodes; a driver without a validator index is a full node: it never votes and follows the
chain by block sync.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from node import crypto, limits
from node.application import Application
from node.blocks import InvalidBlock, header_hash
from node.consensus.core import (Action, Broadcast, CommitBlock, NeedSync, Persist, Replica, RequestProposal,
                                 SendTo, SetTimer, ValidateBlock)
from node.consensus.messages import (CertifiedBlock, InvalidMessage, ServiceMessage, SignedMessage, Status,
                                     SyncRequest, SyncResponse, TxBatch, check_certified_block, decode_frame,
                                     encode_message, encode_service)
from node.consensus.sync import BlockSync
from node.consensus.wal import VoteLog
from node.transactions import Envelope, InvalidTransaction, transaction_hash

log = logging.getLogger("paychain.consensus")


SYNC_TIMER = "sync"
"""The driver's own timer: a block-sync request timed out."""


class FailStop(Exception):
    """The node cannot go on safely: a durable write (WAL or block store) failed, or the ledger refused a
    block 2f+1 validators certified. The process stops; it never runs on unsure of what it stored."""


class Transport(Protocol):
    def send(self, peer: bytes, data: bytes) -> None:
        """Send to one peer, named by its public key."""

    def broadcast(self, data: bytes) -> None:
        """Send to every validator but this node."""


class Timers(Protocol):
    def set(self, name: str, delay_ms: int, height: int, view: int) -> None: ...


@dataclass
class DriverStats:
    messages_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    synced_blocks: int = 0


class Driver:
    def __init__(self, replica: Replica, app: Application, transport: Transport, timers: Timers, wal: VoteLog,
                 clock_ms: Callable[[], int], keys: crypto.KeyPair | None,
                 full_node_keys: Sequence[bytes] = ()) -> None:
        """`full_node_keys`: the allowlisted non-voting peers, told of every new height."""
        self.replica = replica
        self.app = app
        self.transport = transport
        self.timers = timers
        self.wal = wal
        self.clock_ms = clock_ms
        self.keys = keys
        self.full_node_keys = tuple(full_node_keys)
        self.stats = DriverStats()
        self.sync = BlockSync()
        self._sync_tokens: dict[bytes, tuple[float, int]] = {}
        """peer -> (tokens, when counted): block-sync answers are rate-limited per peer (authenticated peers only)."""
        self.on_committed: Callable[[], None] | None = None
        """Called after each commit, once the replica follows the next height's validators (the runner
        updates the transport's validators and peers)."""

    @property
    def peer_heights(self) -> dict[bytes, int]:
        """peer public key -> the height it last claimed."""
        return self.sync.claimed_heights()

    # --- events in ----------------------------------------------------------------------------

    def start(self) -> None:
        self.execute(self.replica.start())
        self.work_changed()

    def on_frame(self, sender: bytes, data: bytes) -> None:
        """A frame from the authenticated peer `sender`: decode, then consensus or sync/forwarding."""
        message = self.decode_frame(data)
        if isinstance(message, SignedMessage):
            self.on_signed(message)
        elif message is not None:
            self.on_service(sender, message)

    def decode_frame(self, data: bytes) -> SignedMessage | ServiceMessage | None:
        self.stats.messages_in += 1
        try:
            return decode_frame(data)
        except InvalidMessage:
            self.count_drop("malformed")
            return None

    def admit_forwarded(self, batch: TxBatch, opened: Sequence[Envelope | InvalidTransaction]) -> None:
        """A TxBatch whose transactions were already decoded and verified (e.g. on worker processes)."""
        for raw, envelope in zip(batch.transactions, opened):
            if isinstance(envelope, Envelope):
                try:
                    self.app.check_tx(raw, verified=envelope)
                except InvalidTransaction:
                    pass  # already known or no longer valid here (check_tx counted it if it is news)
            else:  # refused by the verifier (undecodable, bad signature): counted like check_tx counts it
                self.app.record_rejection(transaction_hash(raw), envelope.code, envelope.message)
        self.work_changed()

    def on_signed(self, signed: SignedMessage) -> None:
        self.execute(self.replica.on_message(signed))

    def on_timer(self, name: str, height: int, view: int) -> None:
        if name == SYNC_TIMER:
            self._request_sync(woken=True)  # a request in flight is due a hedge or timed out: ask the next peer
            return
        self.execute(self.replica.on_timeout(name, height, view))

    def on_peer_connected(self, peer: bytes) -> None:
        """A link to `peer` came up: tell it our height, and re-send own votes if it is a validator."""
        self._send_service(peer, Status(self.app.head.height, self.replica.view))
        if peer in self.replica.validator_keys:
            self.execute(self.replica.on_peer_connected(self.replica.validator_keys.index(peer)))

    def work_changed(self) -> None:
        self.execute(self.replica.on_work(self.app.has_pending()))

    def submit(self, raws: Sequence[bytes]) -> list[bytes | InvalidTransaction]:
        """Admit transactions from a client and forward the admitted ones to every validator."""
        results: list[bytes | InvalidTransaction] = []
        admitted = []
        for raw in raws:
            try:
                results.append(self.app.check_tx(raw))
                admitted.append(raw)
            except InvalidTransaction as error:
                results.append(error)
        if admitted:
            self.forward(admitted)
            self.work_changed()
        return results

    def forward(self, raws: Sequence[bytes]) -> None:
        """TxBatches to every validator, each within a frame (deploys are far larger than payments)."""
        batch: list[bytes] = []
        size = 0
        for raw in raws:
            if batch and (len(batch) == limits.rpc_send_batch_txs_max or size + len(raw) > limits.block_bytes_max):
                self._broadcast_service(TxBatch(tuple(batch)))
                batch, size = [], 0
            batch.append(raw)
            size += len(raw)
        if batch:
            self._broadcast_service(TxBatch(tuple(batch)))

    def on_tick(self) -> None:
        """Periodic: tell peers this node's height, and forward again what has waited too long.

        A forward lost on a link that was down (e.g. just after start) would otherwise strand the
        transaction: no empty blocks means the primary does not change while nothing happens, and a
        primary that never got the transaction has no reason to propose.
        """
        self.send_status()
        self._request_sync()  # gives up a request that timed out and asks another peer
        self.forward(self.app.waiting_transactions(limits.reforward_age_ms_min, limits.reforward_txs_max))

    def send_status(self) -> None:
        """Tell every peer, validators and full nodes, this node's height."""
        status = Status(self.app.head.height, self.replica.view)
        self._broadcast_service(status)
        for peer in self.full_node_keys:
            self._send_service(peer, status)

    # --- actions out -----------------------------------------------------------------------------

    def execute(self, actions: list[Action]) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            queue[:0] = self._carry_out(action)

    def _carry_out(self, action: Action) -> list[Action]:
        if isinstance(action, Persist):
            try:
                self.wal.append(action.record)  # durable before any later action (the sends that depend on it)
            except Exception as error:
                raise FailStop(f"write-ahead log write failed: {error}") from error
            return []
        if isinstance(action, Broadcast):
            self._send(None, action.message)
            return []
        if isinstance(action, SendTo):
            self._send(action.validator_index, action.message)
            return []
        if isinstance(action, SetTimer):
            self.timers.set(action.name, action.delay_ms, action.height, action.view)
            return []
        if isinstance(action, ValidateBlock):
            return self._validate(action)
        if isinstance(action, RequestProposal):
            return self._propose(action)
        if isinstance(action, CommitBlock):
            return self._commit(action)
        if isinstance(action, NeedSync):
            self.sync.on_evidence(self.replica.validator_keys[action.validator_index], self.app.head.height + 1)
            self._request_sync()
            return []
        raise AssertionError(f"unhandled action {action!r}")

    def _send(self, validator_index: int | None, message: SignedMessage) -> None:
        if validator_index is None:
            self._transmit(None, encode_message(message))
        elif validator_index != self.replica.index:
            self._transmit(self.replica.validator_keys[validator_index], encode_message(message))

    def _transmit(self, peer: bytes | None, data: bytes) -> None:
        """Send a frame to one peer, or (None) to every other validator."""
        self.stats.messages_out += 1
        self.stats.bytes_out += len(data)
        if peer is None:
            self.transport.broadcast(data)
        else:
            self.transport.send(peer, data)

    def _validate(self, action: ValidateBlock) -> list[Action]:
        block_hash = header_hash(action.block.header)
        try:
            self.app.process_proposal(action.block, check_clock=action.for_vote)
            valid = True
        except InvalidBlock as error:
            log.warning("rejected block %d: %s", action.block.header.height, error)
            valid = False
        return self.replica.on_block_validated(block_hash, valid)

    def _propose(self, action: RequestProposal) -> list[Action]:
        if action.height != self.app.head.height + 1 or self.keys is None:
            return []
        block = self.app.prepare_proposal(action.height, action.view, self.keys.address, self.clock_ms(),
                                             txs_max=limits.pbft_block_txs_max)
        return self.replica.on_proposal(block)

    def _commit(self, action: CommitBlock) -> list[Action]:
        height = action.block.header.height
        if height != self.app.head.height + 1:
            return []
        self._commit_certified(action.block, action.certificate)
        return self._after_commit()

    def _commit_certified(self, block, certificate) -> None:
        """Commit a block whose certificate was checked; any failure now is local (disk, state): fail-stop."""
        try:
            self.app.commit(block, certificate)
        except Exception as error:
            raise FailStop(f"committing certified block {block.header.height} failed: {error!r}") from error

    def _after_commit(self) -> list[Action]:
        try:
            self.wal.committed(self.app.head.height)
        except Exception as error:
            raise FailStop(f"write-ahead log compaction failed: {error}") from error
        status = Status(self.app.head.height, self.replica.view)
        for peer in self.full_node_keys:  # full nodes follow without polling
            self._send_service(peer, status)
        if self.app.validator_keys != self.replica.validator_keys:
            actions = self._switch_validator_set()
        else:
            actions = self.replica.on_committed(self.app.head.height, self.app.has_pending())
        if self.on_committed is not None:
            self.on_committed()
        return actions

    def _switch_validator_set(self) -> list[Action]:
        """Governance changed the validators from the next height on: a fresh replica for the new set."""
        keys = self.app.validator_keys
        old = self.replica
        index = keys.index(self.keys.public_key) if self.keys is not None and self.keys.public_key in keys else None
        log.warning("validator set changes at height %d: %d validators, this node %s", self.app.head.height + 1,
                    len(keys), "votes" if index is not None else "does not vote")
        self.replica = Replica(index, self.keys if index is not None else None, old.domain, keys,
                               self.app.head.height + 1, base_timeout_ms=old.base_timeout_ms,
                               timeout_ms_max=old.timeout_ms_max, resend_ms=old.resend_ms,
                               persisted=self.wal.replay())
        self.replica.dropped = old.dropped  # counters in /metrics never go backwards
        return self.replica.start() + self.replica.on_work(self.app.has_pending())

    # --- block sync and forwarding ------------------------------------------------------------------

    def _request_sync(self, woken: bool = False) -> None:
        """Ask the next trusted peer that claims more than this node has (see node/consensus/sync.py).

        While requests are in flight the sync timer stays armed (set with each request, set again each
        time it fires), so a silent peer is backed up by the next one after the hedge delay, not a tick."""
        now_ms = self.clock_ms()
        request = self.sync.next_request(self.app.head.height, now_ms)
        if request is not None:
            self._send_service(request.peer, SyncRequest(request.from_height, limits.sync_blocks_per_response_max))
        wake_ms = self.sync.wake_in_ms(now_ms) if request is not None or woken else None
        if wake_ms is not None:
            self.timers.set(SYNC_TIMER, wake_ms, self.app.head.height + 1, 0)

    def on_service(self, sender: bytes, message: ServiceMessage) -> None:
        """A service message from the authenticated peer `sender` (a validator or an allowlisted full node)."""
        if isinstance(message, Status):
            self.sync.on_claim(sender, message.height)
            self._request_sync()
        elif isinstance(message, SyncRequest):
            self._answer_sync(sender, message)
        elif isinstance(message, SyncResponse):
            self._apply_sync(sender, message)
        elif isinstance(message, TxBatch):
            for raw in message.transactions:
                try:
                    self.app.check_tx(raw)
                except InvalidTransaction:
                    pass  # already known, or no longer valid here: the sender's node reported it
            self.work_changed()

    def _answer_sync(self, sender: bytes, request: SyncRequest) -> None:
        if not self._take_sync_token(sender):
            return self.count_drop("sync_request_rate")
        blocks = []
        size = 0
        last = min(self.app.head.height, request.from_height + request.count - 1)
        for height in range(request.from_height, last + 1):
            certified = self.app.certified_block(height)
            if certified is None:
                break
            block, certificate = certified
            size += sum(map(len, block.transactions))
            if blocks and size > limits.block_bytes_max:
                break  # keep the response within one frame
            blocks.append(CertifiedBlock(block, certificate))
        # An empty answer too: the asker learns at once that this node cannot serve those heights.
        self._send_service(sender, SyncResponse(tuple(blocks)))

    def _take_sync_token(self, peer: bytes) -> bool:
        """A token bucket per peer (burst and rate `sync_answers_per_peer_per_s_max`): True if it may be answered."""
        now = self.clock_ms()
        capacity = limits.sync_answers_per_peer_per_s_max
        tokens, last_ms = self._sync_tokens.get(peer, (capacity, now))
        tokens = min(capacity, tokens + (now - last_ms) * capacity / 1_000)
        if tokens < 1:
            self._sync_tokens[peer] = (tokens, now)
            return False
        self._sync_tokens[peer] = (tokens - 1, now)
        return True

    def _apply_sync(self, sender: bytes, response: SyncResponse) -> None:
        if not self.sync.is_awaited(sender):
            return self.count_drop("unsolicited_sync_response")  # unread: checking certificates costs signatures
        applied = 0
        confirmed = 0
        invalid = False
        asked_from_height = self.sync.awaited_from_height(sender)
        for certified in response.blocks:
            height = certified.block.header.height
            if asked_from_height <= height <= self.app.head.height and self._is_committed_here(certified):
                confirmed += 1  # asked for, and committed meanwhile from another peer's answer: served
                continue
            if height != self.app.head.height + 1:
                continue
            try:
                check_certified_block(certified, self.app.signing_domain, self.app.validator_keys)
                if certified.block.header.parent_hash != self.app.head.block_hash:
                    raise InvalidMessage(f"block {certified.block.header.height} does not extend this node's chain")
            except InvalidMessage as error:
                log.warning("block sync: rejected block %d: %s", certified.block.header.height, error)
                self.count_drop("bad_sync_block")
                invalid = True
                break
            self._commit_certified(certified.block, certified.certificate)
            self.stats.synced_blocks += 1
            applied += 1
            self.execute(self._after_commit())
        if response.blocks and not applied and not confirmed and not invalid:
            self.count_drop("sync_block_not_next")  # an empty answer is a plain "cannot serve": not counted
        self.sync.on_answer(sender, applied, invalid, self.clock_ms(), confirmed_blocks=confirmed)
        self._request_sync()  # the same or another peer may have more

    def _is_committed_here(self, certified: CertifiedBlock) -> bool:
        """True if this node committed exactly this block (header and body) at its height."""
        stored = self.app.certified_block(certified.block.header.height)
        return stored is not None and stored[0] == certified.block

    def _broadcast_service(self, message: ServiceMessage) -> None:
        self._transmit(None, encode_service(message))

    def _send_service(self, peer: bytes, message: ServiceMessage) -> None:
        self._transmit(peer, encode_service(message))

    def count_drop(self, reason: str) -> None:
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + 1
