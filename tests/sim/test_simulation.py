"""Seeded simulations of the real PBFT core, driver and ledger under faults (see simulator.py).

A failure names its seed; replay it with `python scripts/sim_many.py --seed N --n 4 -v`.
"""

from __future__ import annotations

import pytest

from node import limits
from node.consensus.runner import status_interval_ms
from node.state import ValidatorInfo
from node.transactions import AddValidator, GovernanceApprove, GovernancePropose, Transaction, sign_transaction
from tests.sim.simulator import BYZANTINE_MODES, GENESIS_TIME_MS, FaultPlan, Simulator, run_seed
from tests.support import keys

SEEDS_N4 = 150
SEEDS_N7 = 50
CHUNK = 25


@pytest.mark.parametrize("first", range(0, SEEDS_N4, CHUNK))
def test_random_faults_n4(first):
    for seed in range(first, first + CHUNK):
        run_seed(seed, n=4, duration_ms=8_000, progress_ms=5_000)


@pytest.mark.parametrize("first", range(10_000, 10_000 + SEEDS_N7, CHUNK))
def test_random_faults_n7(first):
    for seed in range(first, first + CHUNK):
        run_seed(seed, n=7, duration_ms=8_000, progress_ms=5_000)


@pytest.mark.parametrize("mode", BYZANTINE_MODES)
@pytest.mark.parametrize("validator", [1, 2])  # the primaries of heights 1 and 2 in view 0
def test_each_byzantine_behaviour_is_tolerated(mode, validator):
    sim = run_seed(500 + validator, n=4, plan=FaultPlan(delay_ms=(1, 30), byzantine={validator: mode}),
                   duration_ms=6_000, progress_ms=4_000)
    assert min(sim.honest_heights()) >= 5


def test_crashed_primary_is_replaced_by_a_view_change_and_restarts_from_its_wal():
    sim = run_seed(7, n=4, plan=FaultPlan(crashes=[(1, 300, 3_000)]), duration_ms=8_000, progress_ms=4_000)
    restarted = sim.nodes[1]
    # While validator 1 was down (300..3,000 ms), the heights it was primary of in view 0 were
    # decided in a later view: the others changed view instead of waiting for it.
    store = sim.nodes[0].ledger.store
    crash_ms, restart_ms = 300, 3_000
    while_down = [h for h in range(1, store.head.height + 1)
                  if crash_ms < store.get_block(h).header.timestamp_ms - GENESIS_TIME_MS - 1_000 < restart_ms
                  and h % 4 == 1]
    assert while_down and all(store.get_certificate(h).view > 0 for h in while_down)
    # The restarted node caught up with the others by block sync and consensus.
    assert abs(restarted.ledger.head.height - max(sim.honest_heights())) <= 2
    assert restarted.wal.votes, "the restarted validator had persisted its votes"


def test_partitioned_minority_catches_up_after_healing():
    sim = run_seed(11, n=4, plan=FaultPlan(partitions=[(200, 4_000, frozenset([3]))]), duration_ms=9_000,
                   progress_ms=5_000)
    heights = sim.honest_heights()
    assert max(heights) - min(heights) <= 2
    assert sim.nodes[3].driver.stats.synced_blocks > 0


def test_a_restarted_validator_never_signs_two_blocks_for_one_height_and_view():
    sim = run_seed(13, n=4, plan=FaultPlan(crashes=[(0, 500, 1_500), (0, 2_500, 3_500)], loss=0.05),
                   duration_ms=8_000, progress_ms=4_000)
    signed: dict[tuple[int, int, str], bytes | None] = {}
    for vote in sim.nodes[0].wal.votes:
        key = (vote.height, vote.view, vote.kind)
        assert signed.setdefault(key, vote.block_hash) == vote.block_hash, key


def test_full_node_follows_by_block_sync_and_forwards_what_it_is_sent():
    sim = run_seed(17, n=4, plan=FaultPlan(delay_ms=(1, 30), partitions=[(500, 2_500, frozenset([4]))]),
                   duration_ms=6_000, progress_ms=3_000)
    full_node = sim.full_nodes[0]
    assert full_node.replica.index is None
    assert full_node.driver.stats.synced_blocks > 0
    assert max(sim.honest_heights()) - full_node.ledger.head.height <= 1
    # No vote of the full node's key exists: it is not a validator, so it never signs one.
    assert not full_node.wal.votes and not full_node.replica.signed
    # Transfers clients sent to the full node reached the validators and were committed, except those sent
    # so recently that a forward lost on a link could not yet have been repeated (see limits.reforward_*).
    via_full_node = sim.accepted_by.get(full_node.name, [])
    store = sim.nodes[0].ledger.store
    recent_ms = limits.reforward_age_ms_min + 2 * status_interval_ms
    stranded = [tx_hash for tx_hash, sent_ms in via_full_node
                if not store.get_tx(tx_hash) and sent_ms < sim.now_ms - recent_ms]
    assert via_full_node and any(store.get_tx(tx_hash) for tx_hash, _ in via_full_node)
    assert stranded == []


def _operator_tx(sim, operator: int, body) -> bytes:
    signer = keys(f"validator-{operator}")
    return sign_transaction(signer, Transaction("paychain-sim", signer.public_key, 0, "CNY", 1, body))


def test_governance_makes_the_full_node_a_validator_and_it_carries_the_quorum():
    sim = Simulator(21, n=4, plan=FaultPlan(delay_ms=(1, 20)))
    full_node = sim.full_nodes[0]
    sim.run(1_000)
    info = ValidatorInfo("fn", full_node.keys.public_key, 1, "127.0.0.1:9")
    [proposal_id] = sim.nodes[0].driver.submit([_operator_tx(sim, 0, GovernancePropose(AddValidator(info), 100))])
    sim.run(2_000)
    for operator in (1, 2):
        sim.nodes[operator].driver.submit([_operator_tx(sim, operator, GovernanceApprove(proposal_id))])
    sim.run(4_000)
    assert full_node.driver.replica.index == 4 and len(sim.nodes[0].driver.replica.validator_keys) == 5
    # With five validators 2f+1 = 4: crash validator 3 and the chain moves only if the newcomer votes.
    sim.schedule(0, ("crash", sim.nodes[3]))
    sim.run(4_000)
    before = max(sim.honest_heights()) + 1  # a block may have been certified with validator 3 in flight
    sim.run(9_000)
    sim.check_ledgers()
    top = min(sim.honest_heights())
    assert top > before + 3
    store = sim.nodes[0].ledger.store
    assert all(4 in {s.validator_index for s in store.get_certificate(h).signatures} for h in range(before + 1, top))
