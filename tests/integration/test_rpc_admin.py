"""Admin RPC methods (node/rpc/admin.py): only over HTTP with the node's admin token."""

from __future__ import annotations

import json

from node.rpc.admin import AdminMethods
from node.rpc.jsonrpc import Dispatcher
from node.rpc.methods import NodeMethods
from tests.support import hex0x, keys, make_chain, run_async, serve_rpc, transfer

TOKEN = "t" * 40


def admin_dispatcher(ledger) -> Dispatcher:
    dispatcher = Dispatcher()
    NodeMethods(ledger, keys("validator-0").address, lambda raws: None).register(dispatcher)
    AdminMethods(ledger, lambda: {"peers": [], "p2p": {"sent_frames": 3}}).register(dispatcher)
    return dispatcher


async def admin_call(rpc, method: str, params=None, token: str | None = TOKEN) -> dict:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, response = await rpc.post(json.dumps({"jsonrpc": "2.0", "method": method, "params": params or [],
                                                  "id": 1}), headers)
    assert status == 200
    return response


@run_async
async def test_admin_methods_need_the_token() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger, admin_dispatcher(chain.ledger), admin_token=TOKEN) as rpc:
        for token in (None, "wrong" * 10, TOKEN[:-1]):
            response = await admin_call(rpc, "admin_mempool", token=token)
            assert response["error"]["code"] == 1004 and "Authorization: Bearer" in response["error"]["message"]
        assert (await admin_call(rpc, "admin_network"))["result"]["p2p"] == {"sent_frames": 3}


@run_async
async def test_admin_methods_are_off_without_a_configured_token() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger, admin_dispatcher(chain.ledger), admin_token=None) as rpc:
        assert (await admin_call(rpc, "admin_mempool"))["error"]["code"] == 1004


@run_async
async def test_admin_mempool_and_drop_transaction() -> None:
    chain = make_chain()
    first, second = chain.submit(transfer(nonce=0), transfer(nonce=1))
    async with serve_rpc(chain.ledger, admin_dispatcher(chain.ledger), admin_token=TOKEN) as rpc:
        listed = (await admin_call(rpc, "admin_mempool", [10]))["result"]
        assert listed["txs"] == 2 and [t["hash"] for t in listed["oldest"]] == [hex0x(first), hex0x(second)]
        assert listed["oldest"][0]["kind"] == "transfer" and listed["oldest"][0]["nonce"] == 0
        dropped = (await admin_call(rpc, "admin_dropTransaction", [hex0x(first)]))["result"]
        assert dropped["txs"] == 0  # the later nonce could no longer run: dropped with it
        missing = await admin_call(rpc, "admin_dropTransaction", [hex0x(first)])
        assert missing["error"]["code"] == 1001
        bad = await admin_call(rpc, "admin_setLogLevel", ["LOUD"])
        assert bad["error"]["code"] == -32602
        assert (await admin_call(rpc, "admin_setLogLevel", ["debug"]))["result"] == {"level": "DEBUG"}
        (await admin_call(rpc, "admin_setLogLevel", ["warning"]))
