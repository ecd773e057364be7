"""The WebSocket hub (node/rpc/subscriptions.py) away from sockets: the commit path only queues a block,
each block's payloads are built once for all subscribers, and every buffer is bounded."""

from __future__ import annotations

import json

import pytest

from node import limits
from node.rpc import subscriptions, views
from node.rpc.subscriptions import Connection, Subscription, SubscriptionHub
from tests.support import keys, make_chain, run_async, transfer


def subscribed(hub: SubscriptionHub, *subscriptions: tuple[str, bytes | None]) -> Connection:
    connection = Connection(client="127.0.0.1")
    hub.add_connection(connection)
    for topic, filter in subscriptions:
        hub.add_subscription(connection, Subscription(hub.new_subscription_id(), topic, filter))
    return connection


def messages(connection: Connection) -> list[dict]:
    return [json.loads(message) for message in connection.queue if message is not None]


@run_async
async def test_a_commit_only_queues_the_block_and_the_fan_out_delivers_it_later() -> None:
    chain = make_chain()
    hub = SubscriptionHub(chain.ledger)
    connection = subscribed(hub, ("blocks", None), ("tx", None))
    chain.submit(transfer(nonce=0))
    chain.commit_pending()
    assert list(connection.queue) == []   # nothing was built or queued on the commit path
    published = hub._backlog.popleft()
    await hub.fan_out(subscriptions.BlockPayloads(published.committed, published.accounts))
    delivered = messages(connection)
    assert [message["params"]["topic"] for message in delivered] == ["blocks", "tx"]
    assert delivered[0]["params"]["result"]["height"] == 1
    assert delivered[1]["params"]["result"]["transactions"][0]["status"] == "committed"


@run_async
async def test_each_receipt_is_rendered_once_however_many_subscribe(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = []
    original = views.receipt_json
    monkeypatch.setattr(views, "receipt_json", lambda receipt: rendered.append(receipt) or original(receipt))
    chain = make_chain()
    hub = SubscriptionHub(chain.ledger)
    connections = [subscribed(hub, *[("tx", None)] * limits.ws_subscriptions_per_connection_max) for _ in range(50)]
    chain.submit(transfer(nonce=0), transfer(nonce=1))
    chain.commit_pending()
    published = hub._backlog.popleft()
    await hub.fan_out(subscriptions.BlockPayloads(published.committed, published.accounts))
    assert len(rendered) == 2
    assert all(len(connection.queue) == limits.ws_subscriptions_per_connection_max for connection in connections)
    assert len({message for connection in connections for message in connection.queue}) == \
        limits.ws_subscriptions_per_connection_max * len(connections)   # each names its own subscription


@run_async
async def test_an_account_notification_shows_the_balance_right_after_its_block() -> None:
    chain = make_chain()
    hub = SubscriptionHub(chain.ledger)
    bob = keys("bob").address
    connection = subscribed(hub, ("account", bob))
    chain.submit(transfer(nonce=0, amount=5))
    chain.commit_pending()
    balance_then = chain.ledger.state().account(bob).balances
    chain.submit(transfer(nonce=1, amount=7))
    chain.commit_pending()   # the fan-out has not run yet: it must not show this later balance
    for published in list(hub._backlog):
        await hub.fan_out(subscriptions.BlockPayloads(published.committed, published.accounts))
    first, second = (message["params"]["result"] for message in messages(connection))
    assert first["height"] == 1 and first["balances"] == {b.asset: b.amount for b in balance_then}
    assert second["balances"] != first["balances"]


@run_async
async def test_a_subscriber_over_its_byte_budget_is_closed_not_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "ws_subscriber_buffer_bytes_max", 2_000)
    chain = make_chain()
    hub = SubscriptionHub(chain.ledger)
    connection = subscribed(hub, ("tx", None))
    closed = []
    connection.on_overflow = lambda: closed.append(True)
    for nonce in range(5):
        chain.submit(transfer(nonce=nonce))
        chain.commit_pending()
    for published in list(hub._backlog):
        await hub.fan_out(subscriptions.BlockPayloads(published.committed, published.accounts))
    assert connection.overflowed and closed == [True]
    assert list(connection.queue) == [None] and connection.queued_bytes == 0   # only the order to close
    assert await connection.next_message() is None


@run_async
async def test_a_fan_out_backlog_over_its_bound_drops_every_subscriber(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "ws_fanout_backlog_blocks_max", 3)
    chain = make_chain()
    hub = SubscriptionHub(chain.ledger)
    connections = [subscribed(hub, ("blocks", None)) for _ in range(3)]
    for _ in range(4):   # the fan-out task never runs: the fourth block finds the backlog full
        chain.commit_pending()
    assert all(connection.overflowed for connection in connections)
    assert hub.dropped_connections == 3 and len(hub._backlog) == 0


@run_async
async def test_the_bytes_queued_over_all_connections_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many slow clients, each under its own buffer bound, still cannot make the node hold more than the
    node-wide bound: the connection holding the most is closed, the others keep what they have."""
    chain = make_chain()
    hub = SubscriptionHub(chain.ledger)
    connections = [subscribed(hub, ("blocks", None)) for _ in range(4)]
    chain.submit(transfer(nonce=0))
    chain.commit_pending()
    published = hub._backlog.popleft()
    await hub.fan_out(subscriptions.BlockPayloads(published.committed, published.accounts))
    one_message = connections[0].queued_bytes
    bound = 7 * one_message + one_message // 2
    monkeypatch.setattr(limits, "ws_queued_bytes_total_max", bound)
    connections[0].queue.extend([connections[0].queue[0]] * 2)   # the first is behind by two more messages
    connections[0].queued_bytes += 2 * one_message
    hub.queued.bytes += 2 * one_message
    chain.submit(transfer(nonce=1))
    chain.commit_pending()
    published = hub._backlog.popleft()
    await hub.fan_out(subscriptions.BlockPayloads(published.committed, published.accounts))
    assert [connection.overflowed for connection in connections] == [True, False, False, False]
    assert hub.queued.bytes == sum(connection.queued_bytes for connection in connections) <= bound
    assert all(len(connection.queue) == 2 for connection in connections[1:])
