"""What can go wrong in a simulated run: the fault plan and how a seed draws one.

The fault model (DESIGN.md §4, issue 10): honest validators crash and restart any number of
times, at any moment — between events, between two actions of one step, right after a durable
write, in the middle of one (a torn record), or because an fsync failed (fail-stop). On top of
that, up to f validators (and the full node) are Byzantine, each with a strategy from
`BYZANTINE_MODES`. The remaining fault budget (f minus the Byzantine ones) may go to faults that
make an honest validator useless for a while or for good: a corrupted WAL record (it refuses to
start), a clock far behind (it cannot vote), a long partition. Links lose, duplicate and delay
messages, and partitions are one-way or asymmetric. Everything heals at `heal_ms`; from then on
the honest validators that can run must make progress.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

BYZANTINE_MODES = (
    "equivocate",         # two blocks for one view, and votes for both
    "withhold",           # no Prepare, Commit or ViewChange
    "bad_signature",      # every consensus message with a zeroed signature
    "replay",             # old messages again, to anyone
    "forge_view_change",  # NewView with one view change listed thrice; ViewChange with a self-made certificate
    "twins",              # a second node with the same key, running honest code
    "outsider",           # messages signed by a non-validator claiming a validator's index
    "view_change_liar",   # ViewChange that drops its certificate, or pairs it with a shortened or swapped body
    "future_flood",       # Prepares, Commits and ViewChanges for many future views, early ViewChanges
    "sync_liar",          # claims ever-higher heights every few ms and serves nothing
    "forged_sync",        # answers sync with certified headers carrying forged bodies, unasked too
    "tx_spam",            # forwards garbage and badly signed transactions
)
FULL_NODE_MODES = ("sync_liar", "forged_sync", "tx_spam")
"""What a Byzantine full node (an allowlisted peer without a vote) can do."""


@dataclass(frozen=True, slots=True)
class Partition:
    """Between `start_ms` and `end_ms`, messages from any node in `senders` to any node in `receivers` are lost
    (one-way; a symmetric partition is two of these)."""

    start_ms: int
    end_ms: int
    senders: frozenset[int]
    receivers: frozenset[int]


@dataclass
class FaultPlan:
    loss: float = 0.0
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (1, 20)
    partitions: list[Partition] = field(default_factory=list)
    crashes: list[tuple[int, int, int]] = field(default_factory=list)
    """(validator, crash ms, restart ms): scheduled crash-restarts of honest validators (any number)."""
    step_crash_rate: float = 0.0
    """Chance, per durable write and per message sent, that the node crashes right there (before heal)."""
    storage_fault_rate: float = 0.0
    """Chance, per durable write, of a failed fsync (fail-stop) or a torn write, before heal."""
    corrupt_wal: tuple[int, ...] = ()
    """Validators whose WAL gets a corrupted record while they are down: they refuse to start, for good."""
    byzantine: dict[int, str] = field(default_factory=dict)
    """validator -> one of BYZANTINE_MODES."""
    full_node_mode: str | None = None
    """One of FULL_NODE_MODES for a Byzantine full node, or None."""
    clock_skew_ms: dict[int, int] = field(default_factory=dict)
    """slot -> how far this node's clock is from true time (negative: behind)."""
    add_full_node_at_ms: int | None = None
    """Governance makes the full node a validator, proposed at this time (if set)."""
    heal_ms_min: int = 0

    @property
    def heal_ms(self) -> int:
        ends = [p.end_ms for p in self.partitions] + [restart for _, _, restart in self.crashes]
        return max(ends + [self.heal_ms_min], default=0)


def random_plan(rng: random.Random, n: int) -> FaultPlan:
    """Up to f Byzantine validators, the rest of the budget in lasting faults, any number of honest crashes."""
    f = (n - 1) // 3
    plan = FaultPlan(loss=rng.choice([0.0, 0.02, 0.1]), duplicate=rng.choice([0.0, 0.05]),
                     delay_ms=rng.choice([(1, 10), (1, 50), (5, 200)]),
                     step_crash_rate=rng.choice([0.0, 0.0, 0.003, 0.01]),
                     storage_fault_rate=rng.choice([0.0, 0.0, 0.002]))
    validators = list(range(n))
    rng.shuffle(validators)
    byzantine_count = rng.randint(0, f)
    for validator in validators[:byzantine_count]:
        plan.byzantine[validator] = rng.choice(BYZANTINE_MODES)
    for validator in validators[byzantine_count:f]:  # the rest of the fault budget: a lasting honest fault
        _lasting_fault(rng, plan, validator)
    honest = validators[byzantine_count:]
    for _ in range(rng.randint(0, 2 * n)):  # crash-restarts are not faults: any honest validator, any number
        validator = rng.choice(honest)
        crash_ms = rng.randrange(100, 4_000)
        plan.crashes.append((validator, crash_ms, crash_ms + rng.randrange(50, 2_500)))
    for _ in range(rng.choice([0, 0, 1, 2])):
        plan.partitions.append(_random_partition(rng, n + 1))
    for slot in range(n + 1):
        plan.clock_skew_ms.setdefault(slot, rng.choice([0, 0, -800, 800, -2_000, 2_000]))
    if rng.random() < 0.15:
        plan.full_node_mode = rng.choice(FULL_NODE_MODES)
    if rng.random() < 0.1 and plan.full_node_mode is None:
        plan.add_full_node_at_ms = rng.randrange(500, 3_000)
    plan.heal_ms_min = 1_000
    return plan


def _lasting_fault(rng: random.Random, plan: FaultPlan, validator: int) -> None:
    kind = rng.choice(["corrupt_wal", "lagging_clock", "long_partition", "none"])
    if kind == "corrupt_wal":
        plan.corrupt_wal += (validator,)
        crash_ms = rng.randrange(300, 3_000)
        plan.crashes.append((validator, crash_ms, crash_ms + rng.randrange(100, 1_000)))
    elif kind == "lagging_clock":
        plan.clock_skew_ms[validator] = -rng.randrange(6_000, 9_000)  # beyond timestamp_skew_ms_max: cannot vote
    elif kind == "long_partition":
        start = rng.randrange(0, 2_000)
        everyone = frozenset(range(64))
        plan.partitions.append(Partition(start, start + rng.randrange(2_000, 5_000), frozenset([validator]),
                                         everyone - {validator}))


def _random_partition(rng: random.Random, slots: int) -> Partition:
    """A one-way cut between two random groups (asymmetric: the other direction keeps working)."""
    start = rng.randrange(0, 3_000)
    group = frozenset(rng.sample(range(slots), rng.randint(1, max(1, slots // 2))))
    rest = frozenset(range(slots)) - group
    senders, receivers = (group, rest) if rng.random() < 0.5 else (rest, group)
    return Partition(start, start + rng.randrange(100, 2_500), senders, receivers)
