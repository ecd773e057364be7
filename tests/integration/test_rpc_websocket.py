"""WebSocket /ws: subscriptions to blocks, tx and account, their limits, and slow subscribers.

Blocks are committed with TestChain while clients listen on a real RpcServer. Absence of a
notification is shown by ordering: notifications for one connection arrive in commit order,
so when the first one to arrive is for a later block, the earlier block produced none.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp
import pytest

from node import crypto, encoding, limits
from node.rpc.errors import SUBSCRIPTION_DUPLICATE, SUBSCRIPTION_HTTP, SUBSCRIPTION_LIMIT, SUBSCRIPTION_UNKNOWN_TOPIC
from node.transactions import CallContract
from tests.support import (CHAIN_ID, RPC_WAIT_S, address, hex0x, keys, make_chain, make_genesis, run_async, serve_rpc,
                           signer_for, transfer)

INVALID_PARAMS = -32602


class Client:
    """A WebSocket JSON-RPC client that sets notifications aside while it waits for a response."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.notifications: list[dict[str, Any]] = []
        self._ids = iter(range(1, 1_000_000))

    async def receive(self) -> dict[str, Any]:
        message = await self.socket.receive(timeout=RPC_WAIT_S)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return json.loads(message.data)

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        call_id = next(self._ids)
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
        if params is not None:
            request["params"] = params
        await self.socket.send_str(json.dumps(request))
        while True:
            message = await self.receive()
            if message.get("method") == "subscription":
                self.notifications.append(message)
            else:
                assert message.get("id") == call_id, message
                return message

    async def subscribe(self, topic: str, filter_value: Any = None) -> str:
        response = await self.call("subscribe", [topic] if filter_value is None else [topic, filter_value])
        assert "error" not in response, response
        assert isinstance(response["result"], str)
        return response["result"]

    async def next_notification(self) -> dict[str, Any]:
        """The params of the next notification: subscription, topic, result."""
        if self.notifications:
            message = self.notifications.pop(0)
        else:
            message = await self.receive()
        assert message["jsonrpc"] == "2.0" and message["method"] == "subscription" and "id" not in message, message
        return message["params"]


async def connect(rpc: Any) -> Client:
    return Client(await rpc.websocket())


# --- topics ---------------------------------------------------------------------------------

@run_async
async def test_blocks_subscription_notifies_each_committed_header() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        client = await connect(rpc)
        subscription = await client.subscribe("blocks")
        chain.submit(transfer(nonce=0))
        chain.commit_pending()
        chain.commit_pending()
        first = await client.next_notification()
        second = await client.next_notification()
        headers = [(await rpc.result("chain_getBlock", [height]))["header"] for height in (1, 2)]
        await client.socket.close()
    assert first == {"subscription": subscription, "topic": "blocks", "result": headers[0]}
    assert second == {"subscription": subscription, "topic": "blocks", "result": headers[1]}
    assert headers[0]["tx_count"] == 1


@run_async
async def test_tx_subscription_without_filter_notifies_every_transaction() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        client = await connect(rpc)
        subscription = await client.subscribe("tx")
        hashes = chain.submit(transfer(nonce=0), transfer("bob", 0, "alice"))
        chain.commit_pending()
        notification = await client.next_notification()  # one per block, with every transaction in it
        receipts = [(await rpc.result("tx_get", [hex0x(h)]))["receipt"] for h in hashes]
    assert (notification["subscription"], notification["topic"]) == (subscription, "tx")
    assert notification["result"] == {"height": 1, "transactions": [
        {"hash": hex0x(tx_hash), "status": "committed", "height": 1, "index": index, "receipt": receipt}
        for index, (tx_hash, receipt) in enumerate(zip(hashes, receipts))]}


@run_async
async def test_tx_subscription_with_hash_filter_notifies_only_that_transaction() -> None:
    chain = make_chain()
    watched = transfer("bob", 0, "alice", amount=42)
    async with serve_rpc(chain.ledger) as rpc:
        client = await connect(rpc)
        subscription = await client.subscribe("tx", hex0x(crypto.hash_bytes(watched)))
        chain.submit(transfer(nonce=0))
        chain.commit_pending()
        chain.submit(transfer(nonce=1), watched, transfer("gateway", 0, "alice"))
        chain.commit_pending()
        notification = await client.next_notification()
        chain.submit(transfer(nonce=2))
        chain.commit_pending()
        status = await client.call("node_status")  # anything queued for block 3 would arrive before this
    assert notification["subscription"] == subscription
    assert notification["result"]["hash"] == hex0x(crypto.hash_bytes(watched))
    assert (notification["result"]["height"], notification["result"]["index"]) == (2, 1)
    assert notification["result"]["receipt"]["events"][0]["amount"] == 42
    assert status["result"]["height"] == 3
    assert client.notifications == [], "no other transaction may be notified"


@run_async
async def test_account_subscription_notifies_only_transactions_touching_the_address() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        client = await connect(rpc)
        subscription = await client.subscribe("account", address("bob"))
        chain.submit(transfer(nonce=0, recipient="merchant"))
        chain.commit_pending()  # bob untouched
        received, sent = chain.submit(transfer(nonce=1, recipient="bob", amount=300),
                                      transfer("bob", 0, "merchant", amount=50))
        chain.commit_pending()
        first = await client.next_notification()
        second = await client.next_notification()
        bob = await rpc.result("account_get", [address("bob")])
    assert [first["subscription"], second["subscription"]] == [subscription] * 2
    assert {first["topic"], second["topic"]} == {"account"}
    after_block = {"address": address("bob"), "height": 2, "success": True, "nonce": bob["nonce"],
                   "balances": bob["balances"]}
    assert first["result"] == {**after_block, "tx_hash": hex0x(received)}
    assert second["result"] == {**after_block, "tx_hash": hex0x(sent)}
    assert bob["balances"]["CNY"] == 100_000 + 300 - 50 - 1


@run_async
async def test_orders_subscription_follows_an_order_and_order_rpc_lists_it() -> None:
    genesis = make_genesis(orders=(100, 3, 5))
    chain = make_chain(genesis)
    contract = chain.ledger.params.contract("orders")

    def call(name: str, nonce: int, function: str, *args, value: tuple[str, int] = ("", 0)) -> bytes:
        body = CallContract(contract, function, encoding.encode_value(args), 50_000, *value)
        return signer_for(genesis)(name, nonce, body, fee=51)

    chain.submit(call("merchant", 0, "catalog_add", "tea", "Tea", 300, "CNY", 10, 5))
    chain.commit_pending()
    async with serve_rpc(chain.ledger) as rpc:
        client = await connect(rpc)
        subscription = await client.subscribe("orders", address("alice"))
        chain.submit(call("alice", 0, "create_order", keys("merchant").address, "tea", 2, 300, "CNY",
                          value=("CNY", 600)))
        chain.commit_pending()
        created = await client.next_notification()
        order_id = created["result"]["orders"][0]["order_id"]
        chain.submit(call("merchant", 1, "ship", bytes.fromhex(order_id[2:]), "SF1"))
        chain.commit_pending()
        shipped = await client.next_notification()
        order = await rpc.result("order_get", [order_id])
        page = await rpc.result("order_list", {"party": address("merchant"), "role": "merchant"})
        none = await rpc.result("order_list", {"party": address("alice"), "state": "completed"})
        missing = await rpc.call("order_get", ["0x" + "00" * 32])
    assert created["subscription"] == subscription and created["topic"] == "orders"
    [created_order], [shipped_order] = created["result"]["orders"], shipped["result"]["orders"]
    assert (created_order["event"], created_order["state"]) == ("order_created", "created")
    assert (shipped_order["event"], shipped_order["state"]) == ("order_shipped", "shipped")
    assert shipped_order["buyer"] == address("alice") and shipped["result"]["height"] == 3
    assert order["state"] == "shipped" and order["total"] == 600 and order["tracking"] == "SF1"
    assert [o["order_id"] for o in page["orders"]] == [order_id] and page["next"] is None
    assert none["orders"] == []
    assert missing["error"]["code"] == 1001


# --- errors and limits ------------------------------------------------------------------------

@run_async
async def test_unknown_topic_is_refused() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        client = await connect(rpc)
        response = await client.call("subscribe", ["weather"])
        assert (await client.call("node_status"))["result"]["height"] == 0  # the connection stays usable
    assert response["error"]["code"] == SUBSCRIPTION_UNKNOWN_TOPIC
    assert "weather" in response["error"]["message"] and "blocks" in response["error"]["message"]


@pytest.mark.parametrize("params", [
    ["account"], ["account", "pay1notanaddress"], ["tx", "0x1234zz"], ["tx", 7], [], "blocks",
    ["blocks", None, "extra"],
])
@run_async
async def test_invalid_subscribe_params(params: Any) -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        client = await connect(rpc)
        response = await client.call("subscribe", params)
    assert response["error"]["code"] == INVALID_PARAMS


@run_async
async def test_subscription_limit_per_connection() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        client = await connect(rpc)
        ids = [await client.subscribe("tx", tx_filter(index)) for index in range(limits.ws_subscriptions_per_connection_max)]
        over = await client.call("subscribe", ["blocks"])
        other = await connect(rpc)
        other_id = await other.subscribe("blocks")  # the limit is per connection
        assert (await client.call("unsubscribe", [ids[0]]))["result"] is True
        again = await client.subscribe("tx")
    assert len(set(ids + [other_id, again])) == len(ids) + 2
    assert over["error"]["code"] == SUBSCRIPTION_LIMIT
    assert str(limits.ws_subscriptions_per_connection_max) in over["error"]["message"]


def tx_filter(index: int) -> str:
    return "0x" + f"{index:064x}"


@run_async
async def test_invalid_duplicate_subscription_on_one_connection() -> None:
    """The same topic and filter twice on one connection would only double the fan-out's work."""
    async with serve_rpc(make_chain().ledger) as rpc:
        client = await connect(rpc)
        first = await client.subscribe("account", address("alice"))
        again = await client.call("subscribe", ["account", address("alice")])
        other_filter = await client.subscribe("account", address("bob"))
        other = await connect(rpc)
        on_another_connection = await other.subscribe("account", address("alice"))
    assert again["error"]["code"] == SUBSCRIPTION_DUPLICATE and first in again["error"]["message"]
    assert len({first, other_filter, on_another_connection}) == 3


@run_async
async def test_invalid_subscriptions_beyond_the_client_and_public_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every subscription costs a message per block: bounded per client address over all its connections,
    and for all public clients together; a gateway (token) is held to neither."""
    monkeypatch.setattr(limits, "ws_subscriptions_per_client_max", 3)
    monkeypatch.setattr(limits, "ws_public_subscriptions_max", 5)
    async with serve_rpc(make_chain().ledger, gateway_tokens=(GATEWAY_TOKEN,)) as rpc, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as elsewhere_session:
        first, second = await connect(rpc), await connect(rpc)
        await first.subscribe("blocks")
        await first.subscribe("tx")
        await second.subscribe("blocks")
        over_client = await second.call("subscribe", ["tx"])
        elsewhere = Client(await elsewhere_session.ws_connect(rpc.url("/ws")))   # another client address
        await elsewhere.subscribe("blocks")
        await elsewhere.subscribe("tx")
        over_public = await elsewhere.call("subscribe", ["orders"])
        gateway = Client(await rpc.websocket(headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}))
        for topic in ("blocks", "tx", "orders"):
            await gateway.subscribe(topic)
        for client in (first, second, elsewhere, gateway):
            await client.socket.close()
    assert over_client["error"]["code"] == SUBSCRIPTION_LIMIT and "per client address" in over_client["error"]["message"]
    assert over_public["error"]["code"] == SUBSCRIPTION_LIMIT and "retry later" in over_public["error"]["message"]


@pytest.mark.parametrize("method, params", [("subscribe", ["blocks"]), ("unsubscribe", ["0x1"])])
@run_async
async def test_subscribe_over_http_is_refused(method: str, params: list[str]) -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        error = await rpc.error(method, params)
    assert error["code"] == SUBSCRIPTION_HTTP and "WebSocket" in error["message"]


@run_async
async def test_unsubscribe_stops_notifications() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        client = await connect(rpc)
        dropped = await client.subscribe("blocks")
        other = await connect(rpc)
        kept = await other.subscribe("blocks")
        assert (await client.call("unsubscribe", [dropped]))["result"] is True
        assert (await client.call("unsubscribe", {"subscription": dropped}))["result"] is False
        chain.commit_pending()
        chain.commit_pending()
        notifications = [await other.next_notification() for _ in range(2)]
        await client.call("node_status")  # a notification for `dropped` would have been queued before this
    assert [(n["subscription"], n["result"]["height"]) for n in notifications] == [(kept, 1), (kept, 2)]
    assert client.notifications == []


@pytest.mark.parametrize("params", [[], [7], ["0x1", "0x2"], "0x1"])
@run_async
async def test_invalid_unsubscribe_params(params: Any) -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        client = await connect(rpc)
        assert (await client.call("unsubscribe", params))["error"]["code"] == INVALID_PARAMS


@run_async
async def test_ordinary_calls_work_over_the_websocket() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        client = await connect(rpc)
        status = await client.call("node_status")
        await client.socket.send_str('[{"jsonrpc": "2.0", "method": "tx_get", "params": ["0x' + "00" * 32 + '"], '
                                     '"id": 1}, {"jsonrpc": "2.0", "method": "nope", "id": 2}]')
        batch = await client.receive()
        await client.socket.send_str("{not json")
        parse_error = await client.receive()
        await client.socket.send_str("[" * (limits.ws_message_bytes_max - 1))  # deeper than the parser follows
        deep = await client.receive()
        after = await client.call("chain_getParams")
    assert status["result"]["chain_id"] == CHAIN_ID
    assert [r.get("result", {}).get("status") for r in batch] == ["unknown", None]
    assert batch[1]["error"]["code"] == -32601
    assert parse_error["error"]["code"] == -32700 and parse_error["id"] is None
    assert deep["error"]["code"] == -32700
    assert after["result"]["chain_id"] == CHAIN_ID


@pytest.mark.parametrize("limit", ["ws_connections_max", "ws_connections_per_client_max"])
@run_async
async def test_connection_limits(monkeypatch: pytest.MonkeyPatch, limit: str) -> None:
    """Over all clients and per client address: 429, never a 5xx (the client may retry later)."""
    monkeypatch.setattr(limits, limit, 2)
    monkeypatch.setattr(limits, "ws_connections_reserved_for_gateways", 0)
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        first, second = await connect(rpc), await connect(rpc)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await rpc.websocket()
        assert refused.value.status == 429
        await first.socket.close()
        third = await _connect_when_allowed(rpc, time.monotonic() + RPC_WAIT_S)
        await third.subscribe("blocks")
        chain.commit_pending()
        assert (await third.next_notification())["result"]["height"] == 1
        await second.socket.close()
        await third.socket.close()


GATEWAY_TOKEN = "g" * 40


@run_async
async def test_slots_kept_for_gateways_stay_free_when_the_public_ones_are_taken(monkeypatch: pytest.MonkeyPatch
                                                                                ) -> None:
    monkeypatch.setattr(limits, "ws_connections_max", 4)
    monkeypatch.setattr(limits, "ws_connections_reserved_for_gateways", 2)
    chain = make_chain()
    async with serve_rpc(chain.ledger, gateway_tokens=(GATEWAY_TOKEN,)) as rpc:
        public = [await connect(rpc), await connect(rpc)]
        for headers in ({}, {"Authorization": "Bearer " + "h" * 40}, {"Authorization": "Bearer \u00e9" * 3}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await rpc.websocket(headers=headers)
            assert refused.value.status == 429   # a wrong or undecodable token is just a public client
        gateways = [Client(await rpc.websocket(headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}))
                    for _ in range(2)]
        await gateways[1].subscribe("blocks")
        chain.commit_pending()
        assert (await gateways[1].next_notification())["result"]["height"] == 1
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await rpc.websocket(headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"})   # every slot is taken
        for client in public + gateways:
            await client.socket.close()


async def _connect_when_allowed(rpc: Any, deadline: float, status: int = 429) -> Client:
    """Connect once the server has a free WebSocket slot (polling until `deadline`)."""
    while True:
        try:
            return await connect(rpc)
        except aiohttp.WSServerHandshakeError as error:
            if error.status != status or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.01)


# --- slow subscribers --------------------------------------------------------------------------

@run_async
async def test_a_burst_larger_than_the_buffer_closes_the_connection_with_1008(monkeypatch: pytest.MonkeyPatch
                                                                              ) -> None:
    buffer_max = 4
    monkeypatch.setattr(limits, "ws_subscriber_buffer_messages_max", buffer_max)
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        flooded = await connect(rpc)
        await flooded.subscribe("tx")
        for nonce in range(buffer_max + 3):  # more blocks than the buffer holds, in one burst
            chain.submit(transfer(nonce=nonce))
            chain.commit_pending()
        calm = await connect(rpc)
        await calm.subscribe("blocks")
        delivered = []
        while (message := await flooded.socket.receive(timeout=RPC_WAIT_S)).type == aiohttp.WSMsgType.TEXT:
            delivered.append(json.loads(message.data))
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1008, message
        assert "too slow" in message.extra
        assert len(delivered) <= buffer_max
        chain.submit(transfer(nonce=buffer_max + 3))
        chain.commit_pending()
        assert (await calm.next_notification())["result"]["height"] == buffer_max + 4  # others are unaffected


TXS_PER_BLOCK = 40
SLOW_TEST_BLOCKS_MAX = 90
"""make_chain's clock allows about 100 blocks of TestChain time."""


def _busy_block(chain: Any, nonces: dict[str, int]) -> None:
    """Commit a block of TXS_PER_BLOCK transfers between alice and bob."""
    raws = []
    for index in range(TXS_PER_BLOCK):
        sender, recipient = ("alice", "bob") if index % 2 == 0 else ("bob", "alice")
        raws.append(transfer(sender, nonces[sender], recipient, amount=1))
        nonces[sender] += 1
    chain.submit(*raws)
    chain.commit_pending()


def small_receive_buffer(address_info: Any) -> socket.socket:
    family, kind, protocol, _, _ = address_info
    client = socket.socket(family, kind, protocol)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    return client


@run_async
async def test_a_client_that_never_reads_is_disconnected_and_others_are_served(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    """A subscriber that stops reading fills its TCP window, then its buffer; the server must let it go.

    The connection limit is set to 2 so that the server's letting go is visible from outside:
    a third client can connect only once the stuck one is gone.
    """
    monkeypatch.setattr(limits, "ws_connections_max", 2)
    monkeypatch.setattr(limits, "ws_connections_reserved_for_gateways", 0)
    chain = make_chain()
    nonces = {"alice": 0, "bob": 0}
    async with serve_rpc(chain.ledger) as rpc, aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(socket_factory=small_receive_buffer)) as stuck_session:
        stuck = Client(await stuck_session.ws_connect(rpc.url("/ws")))   # a small window: the node's buffers fill
        for topic, party in (("tx", None), ("blocks", None), ("account", "alice"), ("account", "bob")):
            await stuck.subscribe(topic, party and address(party))  # the last thing this client reads
        reader = await connect(rpc)
        await reader.subscribe("blocks")
        newcomer = None
        for _ in range(SLOW_TEST_BLOCKS_MAX):
            _busy_block(chain, nonces)
            notification = await reader.next_notification()
            assert notification["result"]["height"] == chain.ledger.head.height
            try:
                newcomer = await connect(rpc)
                break
            except aiohttp.WSServerHandshakeError as error:
                assert error.status == 429
        assert newcomer is not None, "the server never dropped a subscriber that does not read"
        # Everyone else is still served.
        await newcomer.subscribe("blocks")
        _busy_block(chain, nonces)
        assert (await reader.next_notification())["result"]["height"] == chain.ledger.head.height
        assert (await newcomer.next_notification())["result"]["height"] == chain.ledger.head.height
        assert (await rpc.result("node_status"))["height"] == chain.ledger.head.height
        # The stuck client, reading at last, finds its stream ended well short of everything published.
        # a tx and a blocks message a block, and an account message for each transfer's sender and recipient
        published = (2 + 2 * TXS_PER_BLOCK) * chain.ledger.head.height
        delivered = 0
        while (message := await stuck.socket.receive(timeout=RPC_WAIT_S)).type == aiohttp.WSMsgType.TEXT:
            delivered += 1
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        assert delivered < published
        await reader.socket.close()
        await newcomer.socket.close()


@run_async
async def test_a_closed_client_does_not_disturb_the_others() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        leaving, staying = await connect(rpc), await connect(rpc)
        await leaving.subscribe("blocks")
        await staying.subscribe("blocks")
        await leaving.socket.close()
        chain.commit_pending()
        chain.commit_pending()
        heights = [(await staying.next_notification())["result"]["height"] for _ in range(2)]
        assert heights == [1, 2]
        assert (await rpc.result("node_status"))["height"] == 2
