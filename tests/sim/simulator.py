"""Deterministic simulation of a validator network: the real PBFT core, driver and ledger,
an in-memory network and a simulated clock, all driven by one seed.

Besides the validators, one non-voting full node follows the chain by block sync and
forwards the transactions clients send it; it is checked like an honest validator.

Faults come from a `FaultPlan`: message loss, duplication, delay (so reordering),
partitions that heal, crashes with restart from the WAL, and Byzantine validators (at most
f). After every event the simulator checks safety; at the end it checks the ledger
invariants and that the chain advanced once faults healed. Any violation raises
`InvariantViolation` naming the seed, so a failure can be replayed exactly.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from dataclasses import dataclass, field
from typing import Callable

from node import blocks, crypto
from node.app import CommittedBlock, Ledger
from node.blocks import Block, Header, header_hash
from node.consensus.core import Replica
from node.consensus.driver import Driver
from node.consensus.messages import (Commit, NewView, PreparedCertificate, Prepare, PrePrepare, SignedMessage,
                                     ViewChange, VoteSignature, decode_frame, encode_message, sign_message)
from node.consensus.wal import MemoryVoteLog
from node.mempool import Mempool
from node.genesis import Genesis, genesis_document, parse_genesis
from node.state import KEY_ACCOUNT, KEY_SUPPLY
from node.storage.chain import ChainStore
from node.storage.kv import MemoryStore
from node.transactions import InvalidTransaction, Transaction, Transfer, open_transaction, sign_transaction
from tests.support import keys

GENESIS_TIME_MS = 1_700_000_000_000
USERS = 8
BYZANTINE_MODES = ("equivocate", "withhold", "bad_signature", "replay", "forge_view_change", "twins", "outsider")


class InvariantViolation(AssertionError):
    pass


@dataclass
class FaultPlan:
    loss: float = 0.0
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (1, 20)
    partitions: list[tuple[int, int, frozenset[int]]] = field(default_factory=list)
    """(start ms, end ms, isolated group): messages between the group and the rest are lost meanwhile."""
    crashes: list[tuple[int, int, int]] = field(default_factory=list)
    """(validator, crash ms, restart ms)."""
    byzantine: dict[int, str] = field(default_factory=dict)
    """validator -> one of BYZANTINE_MODES."""

    @property
    def heal_ms(self) -> int:
        ends = [end for _, end, _ in self.partitions] + [restart for _, _, restart in self.crashes]
        return max(ends, default=0)


def random_plan(rng: random.Random, n: int) -> FaultPlan:
    """A fault plan with at most f faulty validators (crashed, partitioned away, or Byzantine)."""
    f = (n - 1) // 3
    faulty = rng.sample(range(n), f)
    plan = FaultPlan(loss=rng.choice([0.0, 0.02, 0.1]), duplicate=rng.choice([0.0, 0.05]),
                     delay_ms=rng.choice([(1, 10), (1, 50), (5, 200)]))
    for validator in faulty:
        kind = rng.choice(["crash", "partition", "byzantine"])
        start = rng.randrange(200, 3_000)
        if kind == "crash":
            plan.crashes.append((validator, start, start + rng.randrange(200, 3_000)))
        elif kind == "partition":
            plan.partitions.append((start, start + rng.randrange(500, 4_000), frozenset([validator])))
        else:
            plan.byzantine[validator] = rng.choice(BYZANTINE_MODES)
    if rng.random() < 0.3:  # a short partition of a majority-preserving minority plus healing
        start = rng.randrange(0, 2_000)
        plan.partitions.append((start, start + rng.randrange(100, 1_500), frozenset(faulty)))
    return plan


def make_sim_genesis(n: int) -> Genesis:
    validators = [{"name": f"v{i}", "public_key": keys(f"validator-{i}").public_key.hex(),
                   "role": ("merchant", "gateway", "user")[min(i, 2)], "p2p_address": ""} for i in range(n)]
    accounts = [{"address": crypto.format_address(keys(f"user-{u}").address), "role": "user",
                 "balances": {"CNY": 1_000_000}} for u in range(USERS)]
    accounts += [{"address": crypto.format_address(keys(f"validator-{i}").address), "role": "user",
                  "balances": {"CNY": 10_000}} for i in range(n)]  # operators, to pay governance fees
    return parse_genesis(genesis_document("paychain-sim", GENESIS_TIME_MS, [{"code": "CNY", "decimals": 2,
                                                                             "min_fee": 1}],
                                          keys("fees").address, validators, accounts))


class SimNode:
    """One node process (a validator, or with `index` None a full node): store and WAL survive a
    crash, everything else is rebuilt."""

    def __init__(self, sim: Simulator, index: int | None, name: str, slot: int) -> None:
        self.sim = sim
        self.index = index
        self.name = name
        self.slot = slot
        """Position in the network: the validator index, or n + j for full node j (partitions use it)."""
        self.keys = keys(f"validator-{index}" if index is not None else name)
        self.kv = MemoryStore()
        self.wal = MemoryVoteLog()
        self.up = False
        self.timer_generation: dict[str, int] = {}
        self.boot()

    def boot(self) -> None:
        self.ledger = Ledger(ChainStore(self.kv, self.sim.genesis), Mempool(clock_ms=self.sim.wall_ms),
                             clock_ms=self.sim.wall_ms)
        self.ledger.listeners.append(lambda committed: self.sim.on_commit(self, committed))
        validator_keys = self.ledger.validator_keys  # genesis', or as governance changed them
        index = validator_keys.index(self.keys.public_key) if self.keys.public_key in validator_keys else None
        self.replica = Replica(index, self.keys if index is not None else None, self.sim.genesis.params.chain_id,
                               validator_keys, self.ledger.head.height + 1,
                               base_timeout_ms=500, resend_ms=300, persisted=self.wal.replay())
        full_node_keys = [key for key in self.sim.full_node_keys if key != self.keys.public_key]
        self.driver = Driver(self.replica, self.ledger, SimTransport(self), SimTimers(self), self.wal,
                             self.sim.wall_ms, self.keys, full_node_keys=full_node_keys)
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


class Simulator:
    def __init__(self, seed: int, n: int = 4, plan: FaultPlan | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.n = n
        self.f = (n - 1) // 3
        self.plan = plan if plan is not None else random_plan(self.rng, n)
        self.genesis = make_sim_genesis(n)
        self.now_ms = 0
        self._queue: list[tuple[int, int, tuple]] = []
        self._sequence = 0
        self.committed: dict[int, bytes] = {}
        """height -> block hash committed by an honest node (the one chain)."""
        self.sent_history: list[tuple[int, bytes]] = []
        self.alternatives: dict[bytes, bytes] = {}
        """An equivocating primary's block hash -> the other block it sent for the same view."""
        self.full_node_keys = [keys("full-node-0").public_key]
        self._genesis_index = {key: i for i, key in enumerate(self.genesis.params.validator_keys)}
        self.nodes = [SimNode(self, i, f"v{i}", i) for i in range(n)]
        self.full_nodes = [SimNode(self, None, "full-node-0", n)]
        self.twin: SimNode | None = None
        for validator, mode in self.plan.byzantine.items():
            if mode == "twins":
                self.twin = SimNode(self, validator, f"v{validator}-twin", validator)
        self.client_nonces = [0] * USERS
        self.client_waiting: dict[int, bytes] = {}
        self.accepted_by: dict[str, list[tuple[bytes, int]]] = {}
        """node name -> (hash, simulated ms) of the client transactions it admitted."""
        self.crashed_at: dict[int, int] = {}
        for validator, crash_ms, restart_ms in self.plan.crashes:
            self.schedule(crash_ms, ("crash", self.nodes[validator]))
            self.schedule(restart_ms, ("restart", self.nodes[validator]))
        self.schedule(0, ("client",))
        self.schedule(1_000, ("status",))

    # --- plumbing ---------------------------------------------------------------------------

    def wall_ms(self) -> int:
        return GENESIS_TIME_MS + 1_000 + self.now_ms

    def schedule(self, delay_ms: int, event: tuple) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (self.now_ms + max(0, delay_ms), self._sequence, event))

    def honest(self, node: SimNode) -> bool:
        return node.index not in self.plan.byzantine

    def _partitioned(self, a: int, b: int) -> bool:
        for start, end, group in self.plan.partitions:
            if start <= self.now_ms < end and ((a in group) != (b in group)):
                return True
        return False

    def transmit(self, sender: SimNode, target: bytes, data: bytes) -> None:
        if not sender.up:
            return
        for frame, destination in self._byzantine_rewrite(sender, target, data):
            if (self._partitioned(sender.slot, self._instances(destination)[0].slot)
                    or self.rng.random() < self.plan.loss):
                continue
            copies = 2 if self.rng.random() < self.plan.duplicate else 1
            for _ in range(copies):
                self.schedule(self.rng.randint(*self.plan.delay_ms),
                              ("deliver", destination, sender.keys.public_key, frame))

    def _byzantine_rewrite(self, sender: SimNode, target: bytes, data: bytes) -> list[tuple[bytes, bytes]]:
        mode = self.plan.byzantine.get(sender.index)
        signed = decode_frame(data)
        if mode is None or mode == "twins" or not isinstance(signed, SignedMessage):
            return [(data, target)]  # service frames are not signed: the transport names their sender
        message = signed.message
        target_index = self._genesis_index.get(target, 0)
        chain_id = self.genesis.params.chain_id
        if mode == "withhold" and isinstance(message, (Prepare, Commit, ViewChange)):
            return []
        if mode == "bad_signature":
            return [(encode_message(dataclasses.replace(signed, signature=bytes(64))), target)]
        if mode == "replay":
            self.sent_history.append((target, data))
            old_target, old = self.rng.choice(self.sent_history)
            return [(data, target), (old, target)]
        if mode == "equivocate" and isinstance(message, PrePrepare) and target_index % 2 == 1:
            # Two blocks for one view: odd validators get the other one, and this validator votes
            # for both (below), as a real attacker would.
            header = dataclasses.replace(message.block.header, timestamp_ms=message.block.header.timestamp_ms + 1)
            other = PrePrepare(message.height, message.view, Block(header, message.block.transactions))
            self.alternatives[header_hash(message.block.header)] = header_hash(header)
            return [(encode_message(sign_message(sender.keys, chain_id, sender.index, other)), target)]
        if mode == "equivocate" and isinstance(message, (Prepare, Commit)) and target_index % 2 == 1:
            other_hash = self.alternatives.get(message.block_hash)
            if other_hash is not None:
                vote = dataclasses.replace(message, block_hash=other_hash)
                return [(encode_message(sign_message(sender.keys, chain_id, sender.index, vote)), target)]
        if mode == "forge_view_change" and isinstance(message, NewView):
            # too few distinct signers: one view change listed three times
            forged = dataclasses.replace(message, view_changes=message.view_changes[:1] * 3)
            return [(encode_message(sign_message(sender.keys, chain_id, sender.index, forged)), target)]
        if mode == "forge_view_change" and isinstance(message, ViewChange):
            # a prepared certificate for a block nobody prepared, "signed" by this validator three times:
            # accepted, it would force the new primary to re-propose a block of the attacker's choosing
            fake_block = Block(dataclasses.replace(self.genesis_header_template(message.height),
                                                   proposer=sender.keys.address), ())
            fake_hash = header_hash(fake_block.header)
            vote = sign_message(sender.keys, chain_id, sender.index, Prepare(message.height, 0, fake_hash))
            certificate = PreparedCertificate(message.height, 0, fake_hash,
                                              (VoteSignature(sender.index, vote.signature),) * 3)
            forged = dataclasses.replace(message, prepared=certificate, prepared_block=fake_block)
            return [(encode_message(sign_message(sender.keys, chain_id, sender.index, forged)), target)]
        if mode == "outsider":
            outsider = keys("outsider")
            fake = sign_message(outsider, chain_id, sender.index, message)  # claims a validator's index
            return [(data, target), (encode_message(fake), target)]
        return [(data, target)]

    def genesis_header_template(self, height: int):
        return Header(self.genesis.params.chain_id, height, 0, bytes(32), bytes(20), 0, 0, bytes(32), bytes(32),
                      bytes(32))

    # --- events -------------------------------------------------------------------------------

    def run(self, until_ms: int) -> None:
        while self._queue and self._queue[0][0] <= until_ms:
            time_ms, _, event = heapq.heappop(self._queue)
            self.now_ms = time_ms
            self._handle(event)
        self.now_ms = until_ms

    def _handle(self, event: tuple) -> None:
        kind = event[0]
        if kind == "deliver":
            _, destination, sender, frame = event
            for node in self._instances(destination):
                if node.up:
                    node.driver.on_frame(sender, frame)
        elif kind == "timer":
            _, node, name, generation, height, view = event
            if node.up and node.timer_generation.get(name) == generation:
                node.driver.on_timer(name, height, view)
        elif kind == "crash":
            event[1].up = False
            event[1].timer_generation = {k: v + 1 for k, v in event[1].timer_generation.items()}
        elif kind == "restart":
            event[1].boot()
        elif kind == "client":
            self._client_step()
            self.schedule(self.rng.randint(5, 60), ("client",))
        elif kind == "status":
            for node in self._all_nodes():
                if node.up:
                    node.driver.on_tick()
            self.schedule(1_000, ("status",))

    def _instances(self, public_key: bytes) -> list[SimNode]:
        """The node(s) holding `public_key`: a twin shares its validator's key."""
        return [node for node in self._all_nodes() if node.keys.public_key == public_key]

    def _all_nodes(self) -> list[SimNode]:
        return self.nodes + self.full_nodes + ([self.twin] if self.twin is not None else [])

    def _client_step(self) -> None:
        """A user sends its next transfer once its previous one is committed somewhere honest."""
        user = self.rng.randrange(USERS)
        waiting = self.client_waiting.get(user)
        if waiting is not None:
            if not any(n.up and n.ledger.store.get_tx(waiting) for n in self.nodes if self.honest(n)):
                return
            del self.client_waiting[user]
        sender = keys(f"user-{user}")
        recipient = keys(f"user-{(user + 1 + self.rng.randrange(USERS - 1)) % USERS}")
        raw = sign_transaction(sender, Transaction("paychain-sim", sender.public_key, self.client_nonces[user], "CNY",
                                                   1, Transfer(recipient.address, "CNY", self.rng.randint(1, 500))))
        live = [n for n in self.nodes + self.full_nodes if n.up]
        if not live:
            return
        target = self.rng.choice(live)
        result = target.driver.submit([raw])[0]
        if isinstance(result, InvalidTransaction):
            return
        self.client_nonces[user] += 1
        self.client_waiting[user] = result
        self.accepted_by.setdefault(target.name, []).append((result, self.now_ms))

    # --- checks ----------------------------------------------------------------------------

    def on_commit(self, node: SimNode, committed: CommittedBlock) -> None:
        height = committed.block.header.height
        validators = node.ledger.state().validators_at(height)
        blocks.verify_certificate(committed.certificate, committed.block.header, [v.public_key for v in validators])
        if not self.honest(node) and self.plan.byzantine.get(node.index) != "twins":
            return
        known = self.committed.get(height)
        if known is None:
            self.committed[height] = committed.block_hash
        elif known != committed.block_hash:
            raise InvariantViolation(f"seed {self.seed}: fork at height {height} on {node.name}")

    def check_ledgers(self) -> None:
        """Supply conserved, no negative balance, nonces sequential, equal roots at equal heights."""
        genesis_supply = sum(self.genesis.records[i][1].amount for i in range(len(self.genesis.records))
                             if self.genesis.records[i][0].startswith(KEY_SUPPLY))
        roots: dict[int, bytes] = {}
        for node in self.nodes + self.full_nodes:
            if not self.honest(node) or not node.up:
                continue
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
            next_nonce: dict[bytes, int] = {}
            for height in range(1, head.height + 1):
                for raw in node.ledger.store.get_block(height).transactions:
                    envelope = open_transaction(raw, self.genesis.params.chain_id, verify_signature=False)
                    expected = next_nonce.get(envelope.sender, 0)
                    if envelope.nonce != expected:
                        raise InvariantViolation(f"seed {self.seed}: nonce {envelope.nonce} after {expected - 1} "
                                                 f"at height {height} on {node.name}")
                    next_nonce[envelope.sender] = expected + 1
            for user in range(USERS):
                address = keys(f"user-{user}").address
                nonce = state.account(address).nonce
                if nonce > self.client_nonces[user]:
                    raise InvariantViolation(f"seed {self.seed}: user {user} nonce {nonce} beyond what was sent")

    def honest_heights(self) -> list[int]:
        """Heights of the honest validators that are up and of the full nodes."""
        return [n.ledger.head.height for n in self.nodes + self.full_nodes if self.honest(n) and n.up]


def run_seed(seed: int, n: int = 4, duration_ms: int = 12_000, progress_ms: int = 8_000,
             plan: FaultPlan | None = None, on_step: Callable[[Simulator], None] | None = None) -> Simulator:
    """Run one seeded simulation and check every invariant; raises InvariantViolation naming the seed."""
    sim = Simulator(seed, n, plan)
    heal = sim.plan.heal_ms
    sim.run(heal)
    heights_at_heal = min(sim.honest_heights(), default=0)
    sim.run(max(duration_ms, heal + progress_ms))
    sim.check_ledgers()
    if min(sim.honest_heights()) <= heights_at_heal:
        raise InvariantViolation(f"seed {seed}: no progress within {progress_ms} ms after faults healed at {heal} ms "
                                 f"(heights {sim.honest_heights()}, plan {sim.plan})")
    return sim
