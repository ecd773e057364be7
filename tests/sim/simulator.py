"""Deterministic simulation of a validator network: the real PBFT core, driver, WAL parser and
ledger, an in-memory network, per-node simulated clocks, all driven by one seed.

Besides the validators, one full node follows the chain by block sync and forwards what clients
send it; it may be Byzantine too. The fault model is in `tests/sim/faults.py`; the Byzantine
strategies in `tests/sim/byzantine.py`.

Crashes are real crashes: a node dies in the middle of whatever it was doing (`SimCrash` is raised
out of a WAL append, a store write or a send), its memory is lost, and it restarts from the bytes
its WAL and store held — through the node's own WAL parser, so torn records are truncated and a
corrupted one refuses start-up, as on disk.

Safety is checked where it matters, on what honest nodes *send*: no honest key signs two values
for one (height, view, slot), and no honest key sends a ViewChange that drops a prepared
certificate behind a Commit it signed; and on every commit: one block per height, body bound to
its header, certificate checked against the validator set another honest node committed with.
At the end: ledger invariants, bounded consensus memory, and progress once faults healed. Any
violation raises `InvariantViolation` naming the seed; a seed replays exactly (`trace_digest`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import heapq
import random
from pathlib import Path
from typing import Iterator

from node import blocks, crypto, limits
from node.app import CommittedBlock, Ledger
from node.consensus.core import Replica, signing_slots
from node.consensus import driver as driver_module
from node.consensus.driver import Driver, FailStop
from node.consensus.messages import Commit, PreparedState, SignedMessage, SyncRequest, ViewChange
from node.consensus.record_file import HEADER_BYTES, RECORD_OVERHEAD_BYTES, LogCorrupted, StorageFailure, \
    frame_record
from node.consensus.wal import MemoryVoteLog
from node.genesis import Genesis, genesis_document, parse_genesis
from node.mempool import Mempool
from node.state import KEY_ACCOUNT, KEY_SUPPLY, ValidatorInfo
from node.storage.chain import ChainStore
from node.storage.kv import MemoryStore, StoreError
from node.transactions import (AddValidator, GovernanceApprove, GovernancePropose, InvalidTransaction, Transaction,
                               Transfer, open_transaction, sign_transaction, transaction_hash)
from tests.sim.byzantine import Strategy
from tests.sim.faults import BYZANTINE_MODES, FULL_NODE_MODES, FaultPlan, Partition, random_plan
from tests.support import keys

__all__ = ["BYZANTINE_MODES", "FULL_NODE_MODES", "FaultPlan", "GENESIS_TIME_MS", "InvariantViolation", "Partition",
           "Simulator", "run_seed"]

GENESIS_TIME_MS = 1_700_000_000_000
USERS = 8
CLIENT_RESEND_MS = 1_500
"""A client re-sends a transfer it has not seen committed after this long."""
CHAIN_ID = "paychain-sim"


class InvariantViolation(AssertionError):
    pass


class SimCrash(BaseException):
    """The node dies right here: the rest of what it was doing is lost (BaseException: no handler in the
    node's code may swallow a crash)."""


def make_sim_genesis(n: int) -> Genesis:
    validators = [{"name": f"v{i}", "public_key": keys(f"validator-{i}").public_key.hex(),
                   "role": ("merchant", "gateway", "user")[min(i, 2)], "p2p_address": f"127.0.0.1:{20_000 + i}"}
                  for i in range(n)]
    accounts = [{"address": crypto.format_address(keys(f"user-{u}").address), "role": "user",
                 "balances": {"CNY": 1_000_000}} for u in range(USERS)]
    accounts += [{"address": crypto.format_address(keys(f"validator-{i}").address), "role": "user",
                  "balances": {"CNY": 10_000}} for i in range(n)]  # operators, to pay governance fees
    return parse_genesis(genesis_document(CHAIN_ID, GENESIS_TIME_MS, [{"code": "CNY", "decimals": 2, "min_fee": 1}],
                                          keys("fees").address, validators, accounts))


@contextlib.contextmanager
def memoized_crypto() -> Iterator[None]:
    """Within a run, remember signature checks and frame decodes by their exact inputs.

    One broadcast reaches n-1 nodes, each decoding the same bytes and checking the same signatures;
    both are pure functions of their inputs (decoded messages are immutable), so the answers are
    the same as computing them again — only the simulation gets about twice as fast.
    """
    verify, decode = crypto.verify, driver_module.decode_frame
    crypto.verify = functools.lru_cache(maxsize=65_536)(verify)
    driver_module.decode_frame = functools.lru_cache(maxsize=4_096)(decode)
    try:
        yield
    finally:
        crypto.verify, driver_module.decode_frame = verify, decode


# --- storage that can fail the way disks do --------------------------------------------------------

class SimWal(MemoryVoteLog):
    """The node's WAL bytes, with crashes and storage faults at the worst moments."""

    def __init__(self, node: SimNode) -> None:
        self.node = node
        self.durable_signatures: set[bytes] = set()
        """Signatures of own messages whose record is durable (checked against what the node sends)."""
        self.durable_prepared: dict[tuple[int, bytes], int] = {}
        """(height, block hash) -> highest view of a durable prepared certificate."""
        super().__init__()

    def append(self, record) -> None:
        super().append(record)  # a crash or failed write raises: the record is not known durable then
        self._remember(record)

    def reopen(self, committed_height: int) -> None:
        super().reopen(committed_height)
        for record in self.replay():
            self._remember(record)

    def _remember(self, record) -> None:
        if isinstance(record, SignedMessage):
            self.durable_signatures.add(record.signature)
        elif isinstance(record, PreparedState):
            key = (record.certificate.height, record.certificate.block_hash)
            self.durable_prepared[key] = max(self.durable_prepared.get(key, -1), record.certificate.view)

    def _append_body(self, body: bytes) -> None:
        frame = frame_record(body)
        fault = self.node.sim.storage_fault(self.node)
        if fault == "crash_before":
            raise SimCrash
        if fault == "torn":
            self.data += frame[:self.node.sim.fault_rng.randrange(1, len(frame))]
            raise SimCrash
        if fault == "fsync_failed":
            if self.node.sim.fault_rng.random() < 0.5:  # what reached the disk is unknown
                self.data += frame
            raise StorageFailure(Path("sim/votes.log"), "fsync", OSError(5, "simulated I/O error"))
        self.data += frame
        if fault == "crash_after":
            raise SimCrash

    def _rewrite_bodies(self, bodies: list[bytes]) -> None:
        fault = self.node.sim.storage_fault(self.node)
        if fault in ("crash_before", "torn"):
            raise SimCrash  # the replace never happened: the old file stays
        super()._rewrite_bodies(bodies)
        if fault in ("crash_after", "fsync_failed"):
            raise SimCrash

    def corrupt_middle_record(self) -> bool:
        """Flip a byte inside the first record when a later one exists (not a torn tail: refuses start)."""
        first_body_at = HEADER_BYTES + RECORD_OVERHEAD_BYTES
        if len(self.data) < first_body_at + 2 or len(self.replay()) < 2:
            return False
        self.data[first_body_at] ^= 0x40
        return True


class SimStore(MemoryStore):
    """The block store: an atomic batch lands whole or not at all, but the node may die around it or see
    the write fail (fail-stop)."""

    def __init__(self, node: SimNode) -> None:
        super().__init__()
        self.node = node

    def write(self, puts, deletes=()) -> None:
        fault = self.node.sim.storage_fault(self.node) if self.node.up else None
        if fault in ("crash_before", "torn"):
            raise SimCrash
        if fault == "fsync_failed":
            if self.node.sim.fault_rng.random() < 0.5:
                super().write(puts, deletes)
            raise StoreError("simulated: LevelDB write failed")
        super().write(puts, deletes)
        if fault == "crash_after":
            raise SimCrash


# --- nodes ----------------------------------------------------------------------------------------

class SimNode:
    """One node process (a validator, or with `index` None a full node): store and WAL survive a crash,
    everything else is rebuilt at restart."""

    def __init__(self, sim: Simulator, index: int | None, name: str, slot: int, mode: str | None) -> None:
        self.sim = sim
        self.index = index
        self.name = name
        self.slot = slot
        """Position in the network: the validator index, or n + j for full node j (partitions use it)."""
        self.keys = keys(f"validator-{index}" if index is not None else name)
        self.mode = mode
        """Byzantine strategy, or None for an honest node."""
        self.kv = SimStore(self)
        self.wal = SimWal(self)
        self.up = False
        self.refused_start: str | None = None
        self.timer_generation: dict[str, int] = {}
        self.strategy = Strategy(sim, self, mode) if mode is not None else None
        self.boot()

    @property
    def honest(self) -> bool:
        return self.mode is None

    def clock_ms(self) -> int:
        return self.sim.wall_ms() + self.sim.plan.clock_skew_ms.get(self.slot, 0)

    def boot(self) -> None:
        self.ledger = Ledger(ChainStore(self.kv, self.sim.genesis), Mempool(clock_ms=self.clock_ms),
                             clock_ms=self.clock_ms)
        try:
            self.wal.reopen(self.ledger.head.height)
        except LogCorrupted as error:
            self.refused_start = str(error)
            return
        self.ledger.listeners.append(lambda committed: self.sim.on_commit(self, committed))
        validator_keys = self.ledger.validator_keys  # genesis', or as governance changed them
        index = validator_keys.index(self.keys.public_key) if self.keys.public_key in validator_keys else None
        replica = Replica(index, self.keys if index is not None else None, self.sim.genesis.signing_domain,
                          validator_keys, self.ledger.head.height + 1, base_timeout_ms=500, resend_ms=300,
                          persisted=self.wal.replay())
        full_node_keys = [key for key in self.sim.full_node_keys if key != self.keys.public_key]
        self.driver = Driver(replica, self.ledger, SimTransport(self), SimTimers(self), self.wal, self.clock_ms,
                             self.keys, full_node_keys=full_node_keys)
        self.up = True
        self.driver.start()


class SimTransport:
    def __init__(self, node: SimNode) -> None:
        self.node = node

    def send(self, peer: bytes, data: bytes) -> None:
        self.node.sim.transmit(self.node, peer, data)

    def broadcast(self, data: bytes) -> None:
        for target in self.node.driver.replica.validator_keys:  # the current set
            if target != self.node.keys.public_key:
                self.node.sim.transmit(self.node, target, data)


class SimTimers:
    def __init__(self, node: SimNode) -> None:
        self.node = node

    def set(self, name: str, delay_ms: int, height: int, view: int) -> None:
        generation = self.node.timer_generation.get(name, 0) + 1
        self.node.timer_generation[name] = generation
        self.node.sim.schedule(delay_ms, ("timer", self.node, name, generation, height, view))


# --- the simulator ----------------------------------------------------------------------------------

class Simulator:
    def __init__(self, seed: int, n: int = 4, plan: FaultPlan | None = None,
                 client_resend_ms: int | None = CLIENT_RESEND_MS) -> None:
        self.seed = seed
        self.client_resend_ms = client_resend_ms
        """None: clients never re-send (a test that checks forwarding must not have resends hide a loss)."""
        self.rng = random.Random(seed)
        self.n = n
        self.f = (n - 1) // 3
        self.plan = plan if plan is not None else random_plan(self.rng, n)
        self.fault_rng = random.Random(seed * 1_000_003 + 17)
        self.genesis = make_sim_genesis(n)
        self.now_ms = 0
        self._queue: list[tuple[int, int, tuple]] = []
        self._sequence = 0
        self._trace = hashlib.blake2b(digest_size=16)
        self.committed: dict[int, bytes] = {}
        """height -> block hash committed by an honest node (the one chain)."""
        self.validator_sets: dict[int, tuple[bytes, ...]] = {}
        """height -> validator keys the first honest node to commit it used (checked by the others)."""
        self.signed_on_wire: dict[tuple[bytes, tuple[int, int, str]], bytes | None] = {}
        self.commit_votes: dict[tuple[bytes, int], int] = {}
        """(honest key, height) -> highest view it sent a Commit in."""
        self.crashes = 0
        self.proposal_id: bytes | None = None
        self.full_node_keys = [keys("full-node-0").public_key]
        self.nodes = [SimNode(self, i, f"v{i}", i, self.plan.byzantine.get(i)) for i in range(n)]
        self.full_nodes = [SimNode(self, None, "full-node-0", n, self.plan.full_node_mode)]
        self.twin: SimNode | None = None
        for validator, mode in self.plan.byzantine.items():
            if mode == "twins":
                self.twin = SimNode(self, validator, f"v{validator}-twin", validator, "twins")
        self.client_nonces = [0] * USERS
        self.client_waiting: dict[int, tuple[bytes, bytes, int]] = {}
        """user -> (hash, signed bytes, simulated ms last sent) of its transfer not yet seen committed."""
        self.accepted_by: dict[str, list[tuple[bytes, int]]] = {}
        """node name -> (hash, simulated ms) of the client transactions it admitted."""
        self._schedule_plan()

    def _schedule_plan(self) -> None:
        for validator, crash_ms, restart_ms in self.plan.crashes:
            self.schedule(crash_ms, ("crash", self.nodes[validator], validator in self.plan.corrupt_wal))
            self.schedule(restart_ms, ("restart", self.nodes[validator]))
        self.schedule(0, ("client",))
        self.schedule(1_000, ("status",))
        for node in self._all_nodes():
            if node.strategy is not None:
                self.schedule(self.rng.randrange(10, 60), ("attack", node))
        if self.plan.add_full_node_at_ms is not None:
            self.schedule(self.plan.add_full_node_at_ms, ("governance_propose",))

    # --- plumbing ---------------------------------------------------------------------------

    def wall_ms(self) -> int:
        return GENESIS_TIME_MS + 1_000 + self.now_ms

    def schedule(self, delay_ms: int, event: tuple) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (self.now_ms + max(0, delay_ms), self._sequence, event))

    @property
    def trace_digest(self) -> str:
        """A digest of every event handled and every block committed: equal for two runs of one seed."""
        return self._trace.hexdigest()

    def before_heal(self) -> bool:
        return self.now_ms < self.plan.heal_ms

    def storage_fault(self, node: SimNode) -> str | None:
        """The fault, if any, that strikes this durable write of `node` (honest nodes only, before heal)."""
        if not node.up or not node.honest or not self.before_heal():
            return None
        roll = self.fault_rng.random()
        if roll < self.plan.step_crash_rate:
            return self.fault_rng.choice(["crash_before", "crash_after", "crash_after"])
        if roll < self.plan.step_crash_rate + self.plan.storage_fault_rate:
            return self.fault_rng.choice(["torn", "fsync_failed"])
        return None

    def index_of(self, public_key: bytes) -> int:
        for node in self._all_nodes():
            if node.keys.public_key == public_key:
                return node.slot
        return 0

    def all_public_keys(self) -> list[bytes]:
        return [node.keys.public_key for node in self.nodes + self.full_nodes]

    def _cut(self, sender_slot: int, receiver_slot: int) -> bool:
        return any(p.start_ms <= self.now_ms < p.end_ms and sender_slot in p.senders and receiver_slot in p.receivers
                   for p in self.plan.partitions)

    def transmit(self, sender: SimNode, target: bytes, data: bytes) -> None:
        """A frame the node's code sends: checked (honest senders), rewritten (Byzantine ones), delivered."""
        if not sender.up:
            return
        if sender.honest:
            self._check_sent(sender, data)
        frames = [(data, target)] if sender.strategy is None else sender.strategy.rewrite(target, data)
        for frame, destination in frames:
            self.deliver_raw(sender, destination, frame)
        if sender.honest and self.before_heal() and self.fault_rng.random() < self.plan.step_crash_rate / 4:
            raise SimCrash  # between two sends of one step

    def deliver_raw(self, sender: SimNode, target: bytes, frame: bytes) -> None:
        for destination in self._instances(target):
            if self._cut(sender.slot, destination.slot) or self.rng.random() < self.plan.loss:
                continue
            copies = 2 if self.rng.random() < self.plan.duplicate else 1
            for _ in range(copies):
                self.schedule(self.rng.randint(*self.plan.delay_ms),
                              ("deliver", destination, sender.keys.public_key, frame))

    def _instances(self, public_key: bytes) -> list[SimNode]:
        """The node(s) holding `public_key`: a twin shares its validator's key."""
        return [node for node in self._all_nodes() if node.keys.public_key == public_key]

    def _all_nodes(self) -> list[SimNode]:
        return self.nodes + self.full_nodes + ([self.twin] if self.twin is not None else [])

    # --- events -------------------------------------------------------------------------------

    def run(self, until_ms: int) -> None:
        with memoized_crypto():
            while self._queue and self._queue[0][0] <= until_ms:
                time_ms, sequence, event = heapq.heappop(self._queue)
                self.now_ms = time_ms
                self._trace.update(f"{time_ms}:{sequence}:{event[0]}".encode())
                self._handle(event)
        self.now_ms = until_ms

    def _handle(self, event: tuple) -> None:
        kind = event[0]
        if kind == "deliver":
            _, node, sender, frame = event
            if node.up:
                self._on_node(node, self._deliver, node, sender, frame)
        elif kind == "timer":
            _, node, name, generation, height, view = event
            if node.up and node.timer_generation.get(name) == generation:
                self._on_node(node, node.driver.on_timer, name, height, view)
        elif kind == "crash":
            self._scheduled_crash(event[1], event[2])
        elif kind == "restart":
            if not event[1].up and event[1].refused_start is None:
                self._on_node(event[1], event[1].boot)
        elif kind == "client":
            self._client_step()
            self.schedule(self.rng.randint(5, 60), ("client",))
        elif kind == "status":
            for node in self._all_nodes():
                if node.up:
                    self._on_node(node, node.driver.on_tick)
            self.schedule(1_000, ("status",))
        elif kind == "attack":
            if event[1].up:
                self._on_node(event[1], event[1].strategy.attack)
            self.schedule(self.rng.randrange(10, 60), event)
        elif kind.startswith("governance"):
            self._governance_step(kind)

    def _deliver(self, node: SimNode, sender: bytes, frame: bytes) -> None:
        if node.strategy is not None and node.mode in FULL_NODE_MODES:
            request = driver_module.decode_frame(frame)
            if isinstance(request, SyncRequest):
                answer = node.strategy.answer_sync(request)
                if answer is not None:
                    self.deliver_raw(node, sender, answer)
                return
        node.driver.on_frame(sender, frame)

    def _on_node(self, node: SimNode, handler, *args) -> None:
        """Run one step of `node`; a crash or a fail-stop inside it takes the node down, mid-step."""
        try:
            handler(*args)
        except SimCrash:
            self._crash(node)
        except FailStop:
            if node.honest and not self.before_heal():
                raise InvariantViolation(f"seed {self.seed}: {node.name} failed-stop after faults healed")
            self._crash(node)

    def _crash(self, node: SimNode) -> None:
        """The node's process dies; it restarts after a while (before the faults heal)."""
        node.up = False
        node.timer_generation = {k: v + 1 for k, v in node.timer_generation.items()}
        self.crashes += 1
        restart_ms = min(self.now_ms + self.fault_rng.randrange(50, 1_500), max(self.now_ms + 50, self.plan.heal_ms))
        self.schedule(restart_ms - self.now_ms, ("restart", node))

    def _scheduled_crash(self, node: SimNode, corrupt: bool) -> None:
        if node.up:
            node.up = False
            node.timer_generation = {k: v + 1 for k, v in node.timer_generation.items()}
            self.crashes += 1
        if corrupt:
            node.wal.corrupt_middle_record()

    def _client_step(self) -> None:
        """A user sends its next transfer once its previous one is committed somewhere honest; like a real
        wallet it re-sends the same signed bytes when that takes too long (a crashed mempool loses them)."""
        user = self.rng.randrange(USERS)
        waiting = self.client_waiting.get(user)
        if waiting is not None:
            tx_hash, raw, sent_ms = waiting
            if any(n.up and n.ledger.store.get_tx(tx_hash) for n in self.nodes if n.honest):
                del self.client_waiting[user]
            elif self.client_resend_ms is not None and self.now_ms - sent_ms >= self.client_resend_ms:
                self._client_submit(user, raw)
            return
        sender = keys(f"user-{user}")
        recipient = keys(f"user-{(user + 1 + self.rng.randrange(USERS - 1)) % USERS}")
        raw = sign_transaction(sender, self.genesis.signing_domain, Transaction(CHAIN_ID, sender.public_key, self.client_nonces[user], "CNY",
                                                   1, Transfer(recipient.address, "CNY", self.rng.randint(1, 500))))
        if self._client_submit(user, raw):
            self.client_nonces[user] += 1

    def _client_submit(self, user: int, raw: bytes) -> bool:
        """Submit to a random live node; True if it was admitted (then the user waits for it)."""
        live = [n for n in self.nodes + self.full_nodes if n.up]
        if not live:
            return False
        target = self.rng.choice(live)
        results: list = []
        self._on_node(target, lambda: results.extend(target.driver.submit([raw])))
        if not results or isinstance(results[0], InvalidTransaction):
            return False
        self.client_waiting[user] = (results[0], raw, self.now_ms)
        self.accepted_by.setdefault(target.name, []).append((results[0], self.now_ms))
        return True

    def _governance_step(self, kind: str) -> None:
        """Honest operators make the full node a validator: one proposes, then enough approve."""
        honest = [node for node in self.nodes if node.honest]
        full_node = self.full_nodes[0]
        if kind == "governance_propose":
            info = ValidatorInfo("fn", full_node.keys.public_key, 1, "127.0.0.1:29999")
            self.proposal_id = self._operator_send(honest[0], GovernancePropose(AddValidator(info), 200))
            self.schedule(600, ("governance_approve",))
        elif self.proposal_id is not None:
            quorum = blocks.quorum_size(self.n)
            for operator in honest[1:quorum]:
                self._operator_send(operator, GovernanceApprove(self.proposal_id))

    def _operator_send(self, operator: SimNode, body) -> bytes | None:
        signer = operator.keys
        raw = sign_transaction(signer, self.genesis.signing_domain, Transaction(CHAIN_ID, signer.public_key, 0, "CNY", 1, body))
        live = [n for n in self.nodes if n.up and n.honest]
        results: list = []
        if live:
            target = live[0]
            self._on_node(target, lambda: results.extend(target.driver.submit([raw])))
        return results[0] if results and isinstance(results[0], bytes) else transaction_hash(raw)

    # --- checks ----------------------------------------------------------------------------

    def _check_sent(self, sender: SimNode, data: bytes) -> None:
        """Safety on the wire: what an honest key signs and sends, whatever crashes happened in between."""
        decoded = driver_module.decode_frame(data)
        if not isinstance(decoded, SignedMessage):
            return
        key = sender.keys.public_key
        message = decoded.message
        if decoded.signature not in sender.wal.durable_signatures:
            raise InvariantViolation(f"seed {self.seed}: {sender.name} sent {type(message).__name__} at height "
                                     f"{message.height} before its WAL record was durable")
        if isinstance(message, Commit) and sender.wal.durable_prepared.get(
                (message.height, message.block_hash), -1) < message.view:
            raise InvariantViolation(f"seed {self.seed}: {sender.name} sent a Commit at height {message.height} "
                                     f"before the prepared certificate behind it was durable")
        for slot, value in signing_slots(message):
            known = self.signed_on_wire.setdefault((key, slot), value)
            if known != value:
                raise InvariantViolation(f"seed {self.seed}: {sender.name} signed two values for {slot}")
        if isinstance(message, Commit):
            views = self.commit_votes
            views[(key, message.height)] = max(views.get((key, message.height), -1), message.view)
        if isinstance(message, ViewChange):
            committed_view = self.commit_votes.get((key, message.height))
            if committed_view is not None and committed_view < message.new_view and (
                    message.prepared is None or message.prepared.view < committed_view):
                raise InvariantViolation(f"seed {self.seed}: {sender.name} sent a view change to {message.new_view} "
                                         f"at height {message.height} without the certificate behind its commit vote "
                                         f"in view {committed_view}")

    def on_commit(self, node: SimNode, committed: CommittedBlock) -> None:
        if not node.honest:
            return
        height = committed.block.header.height
        self._trace.update(committed.block_hash)
        known = self.committed.setdefault(height, committed.block_hash)
        if known != committed.block_hash:
            raise InvariantViolation(f"seed {self.seed}: fork at height {height} on {node.name}")
        try:
            blocks.check_body(committed.block)
            reference = self.validator_sets.setdefault(
                height, tuple(v.public_key for v in node.ledger.store.validators_at(height)))
            blocks.verify_certificate(committed.certificate, committed.block.header, self.genesis.signing_domain, reference)
        except blocks.InvalidBlock as error:
            raise InvariantViolation(f"seed {self.seed}: {node.name} committed block {height}: {error}") from error

    def check_ledgers(self) -> None:
        """Supply conserved, no negative balance, nonces sequential, one transaction index, equal roots."""
        genesis_supply = sum(record.amount for key, record in self.genesis.records if key.startswith(KEY_SUPPLY))
        roots: dict[int, bytes] = {}
        for node in self.live_honest():
            state = node.ledger.state()
            total = 0
            for key, record in state.iter_records():
                if key.startswith(KEY_ACCOUNT):
                    for balance in record.balances:
                        if balance.amount < 0:
                            raise InvariantViolation(f"seed {self.seed}: negative balance on {node.name}")
                        total += balance.amount
            if total != genesis_supply:
                raise InvariantViolation(f"seed {self.seed}: supply {total} != {genesis_supply} on {node.name}")
            head = node.ledger.head
            if roots.setdefault(head.height, head.state_root) != head.state_root:
                raise InvariantViolation(f"seed {self.seed}: state roots differ at height {head.height}")
            self._check_blocks(node)

    def _check_blocks(self, node: SimNode) -> None:
        next_nonce: dict[bytes, int] = {}
        store = node.ledger.store
        for height in range(1, node.ledger.head.height + 1):
            block = store.get_block(height)
            if blocks.header_hash(block.header) != self.committed.get(height):
                raise InvariantViolation(f"seed {self.seed}: {node.name} stores another block at {height}")
            for raw in block.transactions:
                record = store.get_tx(transaction_hash(raw))
                if record is None or record.raw != raw or record.height != height:
                    raise InvariantViolation(f"seed {self.seed}: {node.name}'s transaction index is wrong at {height}")
                envelope = open_transaction(raw, self.genesis.signing_domain, verify_signature=False)
                expected = next_nonce.get(envelope.sender, 0)
                if envelope.nonce != expected:
                    raise InvariantViolation(f"seed {self.seed}: nonce {envelope.nonce} after {expected - 1} "
                                             f"at height {height} on {node.name}")
                next_nonce[envelope.sender] = expected + 1

    def check_bounded_memory(self) -> None:
        """What one sender can make a replica keep at one height stays within fixed bounds."""
        votes_per_sender_max = limits.pbft_past_views_kept + 2
        for node in self.live_honest():
            replica = node.driver.replica
            for (kind, sender), views in replica.round.votes.items():
                future = [v for v in views if v > replica.view]
                if len(future) > 1 or len(views) > votes_per_sender_max:
                    raise InvariantViolation(f"seed {self.seed}: {node.name} keeps {len(views)} {kind} votes of "
                                             f"validator {sender} ({len(future)} for future views)")
            per_sender: dict[int, int] = {}
            for view, collected in replica.round.view_changes.items():
                for sender in collected:
                    per_sender[sender] = per_sender.get(sender, 0) + 1
            if any(count > 2 for count in per_sender.values()):
                raise InvariantViolation(f"seed {self.seed}: {node.name} keeps more than two view changes per sender")
            if any(slot[0] < replica.height for slot in replica.signed):
                raise InvariantViolation(f"seed {self.seed}: {node.name} keeps signatures of committed heights")

    def view_change_allowance_ms(self) -> int:
        """Time the healed network may need to reach an honest primary: the faults may have left the views
        high (timeouts double per view), and up to f primaries in a row may be Byzantine or lasting-faulty."""
        replicas = [node.driver.replica for node in self.live_honest() if node.driver.replica.is_validator]
        if not replicas:
            return 0
        view = max(replica.view for replica in replicas)
        return sum(replicas[0].timeout_ms(v) for v in range(view, view + self.f + 1))

    def live_honest(self) -> list[SimNode]:
        """Honest nodes (validators and the full node) that are up."""
        return [n for n in self.nodes + self.full_nodes if n.honest and n.up]

    def honest_heights(self) -> list[int]:
        return [n.ledger.head.height for n in self.live_honest()]


def run_seed(seed: int, n: int = 4, duration_ms: int = 12_000, progress_ms: int = 8_000,
             plan: FaultPlan | None = None, client_resend_ms: int | None = CLIENT_RESEND_MS) -> Simulator:
    """Run one seeded simulation and check every invariant; raises InvariantViolation naming the seed."""
    sim = Simulator(seed, n, plan, client_resend_ms)
    heal = sim.plan.heal_ms
    sim.run(heal)
    for node in sim.nodes + sim.full_nodes:  # everything heals: nodes still down restart now
        if not node.up and node.refused_start is None:
            sim._on_node(node, node.boot)
    heights_at_heal = min(sim.honest_heights(), default=0)
    progress_ms += sim.view_change_allowance_ms()
    sim.run(max(duration_ms, heal + progress_ms))
    sim.check_ledgers()
    sim.check_bounded_memory()
    if min(sim.honest_heights()) <= heights_at_heal:
        raise InvariantViolation(f"seed {seed}: no progress within {progress_ms} ms after faults healed at {heal} ms "
                                 f"(heights {sim.honest_heights()}, plan {sim.plan})")
    return sim
