"""Per-client cost budgets on a real RpcServer (issue 12 #2): a client that spends its budget is told
"rate limited, retry after" before anything of its request runs, other clients and named gateways go on
being served, and no single request may cost more than the cap, whoever sends it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from node import limits
from node.rpc.budget import ClientBudgets
from node.rpc.errors import RATE_LIMITED
from tests.support import RPC_WAIT_S, address, hex0x, make_chain, run_async, serve_rpc, transfer
from wallet_cli.rpc_client import RpcClient

INVALID_REQUEST = -32600
GATEWAY_TOKEN = "g" * 40


def batch(method: str, params: list[Any], count: int) -> str:
    return json.dumps([{"jsonrpc": "2.0", "method": method, "params": params, "id": i} for i in range(count)])


def bad_signatures(count: int) -> list[str]:
    """Distinct transfers whose signatures do not verify: each one is a signature check for the node."""
    raws = [bytearray(transfer(nonce=nonce)) for nonce in range(count)]
    for raw in raws:
        raw[-1] ^= 1
    return [hex0x(bytes(raw)) for raw in raws]


async def post_from(rpc: Any, source: str, body: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """POST from a given loopback address: (status, parsed answer, Retry-After header)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=RPC_WAIT_S)) as session:
        async with session.post(rpc.url(), data=body,
                                headers={"Content-Type": "application/json", **(headers or {})}) as response:
            return response.status, json.loads(await response.text()), response.headers.get("Retry-After")


def small_budgets(rpc: Any, units: int) -> None:
    """Budgets of `units` a client (refilling at that rate per second, too slow to matter in a test)."""
    rpc.server.budgets = ClientBudgets(rate_per_s=1, burst=units)


@run_async
async def test_a_client_over_its_budget_is_told_when_to_retry_and_nothing_of_its_request_runs() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger, gateway_tokens=(GATEWAY_TOKEN,)) as rpc:
        small_budgets(rpc, 120)
        txs = bad_signatures(100)
        status, answer, _ = await post_from(rpc, "127.0.0.1", batch("tx_sendBatch", [txs], 1))
        assert status == 200 and answer[0]["result"]["rejected"] == 100      # paid: 101 units and the body
        checked = dict(chain.ledger.rejections)
        status, answer, retry_after = await post_from(rpc, "127.0.0.1", batch("tx_sendBatch", [txs[:50]], 1))
        assert status == 429 and answer["error"]["code"] == RATE_LIMITED
        assert "retry after" in answer["error"]["message"]
        assert answer["error"]["data"]["retry_after_ms"] > 1000 and int(retry_after) >= 1
        assert dict(chain.ledger.rejections) == checked, "no signature of the refused request was checked"
        # another client address has its own budget, and a named gateway is not held to one
        status, answer, _ = await post_from(rpc, "127.0.0.2", batch("tx_sendBatch", [txs[:50]], 1))
        assert status == 200 and answer[0]["result"]["rejected"] == 50
        status, answer, _ = await post_from(rpc, "127.0.0.1", batch("tx_sendBatch", [txs[:50]], 1),
                                            {"Authorization": f"Bearer {GATEWAY_TOKEN}"})
        assert status == 200 and answer[0]["result"]["rejected"] == 50


@run_async
async def test_invalid_batch_submitting_more_transactions_than_a_request_may_is_refused_whole() -> None:
    """The review's batch of 100 tx_sendBatch calls, scaled: the total across the calls counts."""
    chain = make_chain()
    per_call = limits.rpc_request_txs_max // 4 + 1
    async with serve_rpc(chain.ledger) as rpc:
        status, answer = await rpc.post(batch("tx_sendBatch", [bad_signatures(per_call)], 4))
    assert status == 200 and answer["error"]["code"] == INVALID_REQUEST
    assert str(limits.rpc_request_txs_max) in answer["error"]["message"]
    assert not chain.ledger.rejections and not rpc.admitted


@run_async
async def test_invalid_batch_costing_more_than_a_request_may_is_refused_whole() -> None:
    """100 history pages of 100 items (1.5 s of reading before) are over the per-request price."""
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        status, answer = await rpc.post(batch("account_getHistory", [address("alice"), 100], 100))
    assert status == 200 and answer["error"]["code"] == INVALID_REQUEST
    assert "split it" in answer["error"]["message"]


@run_async
async def test_history_rows_and_query_gas_are_priced_before_they_run() -> None:
    chain = make_chain()
    alice = address("alice")
    async with serve_rpc(chain.ledger) as rpc:
        small_budgets(rpc, 2 * (limits.rpc_cost_units_per_call + 20 * limits.rpc_cost_units_per_history_item))
        assert (await rpc.call("account_getHistory", [alice, 20]))["result"]["items"] == []
        assert (await rpc.call("account_getHistory", [alice, 20]))["result"]["items"] == []
        status, answer = await rpc.post(batch("account_getHistory", [alice, 20], 1))
        assert status == 429 and answer["error"]["code"] == RATE_LIMITED
        small_budgets(rpc, limits.rpc_cost_units_per_call + limits.contract_query_gas_max // limits.rpc_cost_gas_per_unit)
        await rpc.result("node_status")   # now one unit short of a query at the most gas
        status, answer = await rpc.post(batch("contract_query", [alice, "f"], 1))
        assert status == 429 and answer["error"]["code"] == RATE_LIMITED


@run_async
async def test_a_websocket_client_over_its_budget_is_told_when_to_retry() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        small_budgets(rpc, 3)
        socket = await rpc.websocket()
        answers = []
        for call_id in range(4):
            await socket.send_str(json.dumps({"jsonrpc": "2.0", "method": "node_status", "id": call_id}))
            answers.append(json.loads((await socket.receive()).data))
        await socket.close()
    assert ["result" in answer for answer in answers] == [True, True, True, False]
    assert answers[3]["error"]["code"] == RATE_LIMITED and answers[3]["error"]["data"]["retry_after_ms"] > 0


@run_async
async def test_the_wallet_client_waits_as_told_and_retries() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        rpc.server.budgets = ClientBudgets(rate_per_s=20, burst=1)
        client = RpcClient(rpc.url(), timeout_s=RPC_WAIT_S)
        heights = await asyncio.to_thread(lambda: [client.call("node_status")["height"] for _ in range(3)])
        refused = rpc.server.metrics.rpc_calls.labels("(request)", "rate_limited")._value.get()
    assert heights == [0, 0, 0] and refused >= 2, "two of the calls were refused once, then served"
