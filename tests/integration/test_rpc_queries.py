"""Read-only contract queries over real HTTP (issue 11): they run on VM query threads beside the event
loop, stop at their deadline, are bounded in number, and never read a state that moves under them.

aba434e ran a query on the event loop itself: one free `contract_query` of a costly body blocked the
node (no status answers, no commits) for as long as it ran.
"""

from __future__ import annotations

import asyncio

import pytest

from node import crypto, limits
from node.contracts import runtime
from node.rpc.errors import CONTRACT_FAILED, TOO_MANY
from node.state import StaleStateView, contract_key
from tests.support import run_async, serve_rpc
from tests.unit.test_contract_execution import Harness

QUERIES_ADMITTED = 2 * limits.contract_queries_running_max
"""Queries that run or wait at once; one more is told to retry."""


@pytest.fixture
def deployed() -> tuple[Harness, str]:
    harness = Harness()
    address, receipt = harness.deploy()
    assert receipt.success
    return harness, crypto.format_address(address)


async def spin(rpc, address: str, gas_limit: int = limits.contract_query_gas_max) -> dict:
    return await rpc.call("contract_query", {"address": address, "function": "spin", "gas_limit": gas_limit})


@pytest.fixture
def long_queries(monkeypatch):
    """Queries may use a transaction's whole gas: a spinning one then runs for about 100 ms or more."""
    # and such a query is priced like the longest real one, so these tests meet the query bounds, not the budget
    monkeypatch.setattr(limits, "rpc_cost_gas_per_unit",
                        limits.rpc_cost_gas_per_unit * limits.contract_gas_max // limits.contract_query_gas_max)
    monkeypatch.setattr(limits, "contract_query_gas_max", limits.contract_gas_max)


@run_async
async def test_the_node_answers_and_commits_while_hostile_queries_run(deployed, long_queries):
    harness, address = deployed
    async with serve_rpc(harness.chain.ledger) as rpc:
        queries = [asyncio.create_task(spin(rpc, address, limits.contract_gas_max))
                   for _ in range(limits.contract_queries_running_max)]
        await asyncio.sleep(0.01)   # let them start
        status = await rpc.result("node_status")
        receipt = harness.call("alice", crypto.parse_address(address), "bump", 5)
        answered_while_running = not any(query.done() for query in queries)
        answers = await asyncio.gather(*queries)
        assert answered_while_running, "status and a commit were served while the queries ran"
        assert receipt.success
        assert (await rpc.result("node_status"))["height"] == status["height"] + 1
    for answer in answers:
        assert answer["error"]["code"] == CONTRACT_FAILED and answer["error"]["data"]["rule"] == "out_of_gas"


@run_async
async def test_a_query_stops_at_its_deadline(deployed, long_queries, monkeypatch):
    harness, address = deployed
    monkeypatch.setattr(limits, "contract_query_ms_max", 20)   # 2M gas of spinning takes far longer
    async with serve_rpc(harness.chain.ledger) as rpc:
        answer = await spin(rpc, address, limits.contract_gas_max)
    assert answer["error"]["code"] == CONTRACT_FAILED and answer["error"]["data"]["rule"] == "query_timeout"
    assert 0 < answer["error"]["data"]["gas_used"] < limits.contract_gas_max


@run_async
async def test_queries_beyond_the_bound_are_told_to_retry(deployed, long_queries):
    harness, address = deployed
    async with serve_rpc(harness.chain.ledger) as rpc:
        answers = await asyncio.gather(*(spin(rpc, address, limits.contract_gas_max)
                                         for _ in range(QUERIES_ADMITTED + 2)))
        codes = sorted(answer["error"]["code"] for answer in answers)
        assert codes.count(TOO_MANY) >= 2
        assert codes.count(CONTRACT_FAILED) >= limits.contract_queries_running_max
        busy = next(answer for answer in answers if answer["error"]["code"] == TOO_MANY)
        assert "retry" in busy["error"]["message"]
        # and once they are done, a query runs again
        answer = await rpc.result("contract_query", {"address": address, "function": "count"})
        assert answer["value"] == 0 and answer["gas_used"] > 0


def test_a_view_read_after_its_state_committed_is_stale(deployed):
    """What lets a query on another thread know that a commit overlapped it (it is then run again)."""
    harness, address = deployed
    view = harness.chain.ledger.state()
    key = contract_key(crypto.parse_address(address))
    assert view.get(key) is not None
    harness.call("alice", crypto.parse_address(address), "bump", 1)
    with pytest.raises(StaleStateView):
        view.get(key)


def test_a_query_that_read_a_moving_state_never_returns_its_answer(deployed):
    """runtime.call on a stale view raises StaleStateView (not a contract failure, not a wrong answer)."""
    harness, address = deployed
    contract = crypto.parse_address(address)
    view = harness.chain.ledger.state()
    harness.call("alice", contract, "bump", 3)
    head = harness.chain.ledger.head
    with pytest.raises(StaleStateView):
        runtime.call(view, bytes(20), contract, "count", b"\x90", limits.contract_query_gas_max, head.height,
                     head.timestamp_ms, read_only=True)
