"""WebSocket subscriptions: `blocks`, `tx`, `account` and `orders` topics, fanned out off the commit path.

The commit path only hands the committed block to the hub (`publish`: a bounded deque and, for the
`account` topic, a snapshot of the subscribed accounts the block touched). A task of its own (`run`)
then builds each block's notification payloads once, as JSON text shared by every subscription that
receives them, and queues a message per subscription. It yields to the event loop every
`ws_fanout_connections_per_yield` connections, so consensus and RPC keep running while it works.

A connection whose buffer fills (a client that does not read: more than
`ws_subscriber_buffer_messages_max` messages or `ws_subscriber_buffer_bytes_max` bytes queued) is
closed with a policy-violation code rather than letting memory grow or anyone wait for it: the
client reconnects and catches up with `chain_getBlock` / `account_getHistory`. If the fan-out task
itself falls `ws_fanout_backlog_blocks_max` blocks behind, every connection is closed the same way.
Topics that can match many transactions of one block (`tx` without a filter, `orders`) send one
notification per block with all of them, so a client that reads is never dropped because one block
was large.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from node import limits
from node.app import CommittedBlock, Ledger
from node.rpc import views

log = logging.getLogger("paychain.ws")

TOPICS = ("blocks", "tx", "account", "orders")


@dataclass
class Subscription:
    id: str
    topic: str
    filter: bytes | None
    """tx hash for `tx` (None = every transaction), address for `account`, buyer or merchant for `orders`
    (None = every order)."""


@dataclass(eq=False)  # identity equality: connections live in a set
class Connection:
    client: str = ""
    """The client's address (IP), for the per-client connection limit."""
    queue: collections.deque = field(default_factory=collections.deque)
    """Messages (JSON text) waiting for the writer; None asks the writer to close the socket."""
    queued_bytes: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the queue holds something for the writer."""
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    overflowed: bool = False
    on_overflow: Callable[[], None] | None = None
    """Called once when the buffer overflows (the transport drops a client that is not reading)."""
    total: QueuedBytes | None = None
    """The node-wide count of queued bytes this connection's queue adds to (set by the hub)."""

    async def next_message(self) -> str | None:
        """The next message to send, or None once the connection must be closed."""
        while not self.queue:
            self.ready.clear()
            await self.ready.wait()
        message = self.queue.popleft()
        if message is not None:
            self.queued_bytes -= len(message)
            if self.total is not None:
                self.total.bytes -= len(message)
        return message


@dataclass
class QueuedBytes:
    """Bytes of notifications queued over all connections (bounded by `ws_queued_bytes_total_max`)."""

    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Published:
    """A committed block waiting for the fan-out, with what must be read at commit time."""

    committed: CommittedBlock
    accounts: dict[bytes, dict[str, Any]]
    """address -> {"nonce", "balances"} right after this block, for the subscribed accounts it touched."""


class BlockPayloads:
    """One block's notification results as JSON text, each built once, on first use."""

    def __init__(self, committed: CommittedBlock, accounts: dict[bytes, dict[str, Any]]) -> None:
        self.committed = committed
        self.height = committed.block.header.height
        self.accounts = accounts
        self._cache: dict[tuple[str, bytes | None], str | None] = {}
        self._tx_items: list[dict[str, Any]] | None = None
        self._by_account: dict[bytes, list[int]] | None = None

    def result(self, topic: str, filter: bytes | None) -> list[str]:
        """The results (JSON text) one subscription gets for this block: none, one, or one per item."""
        key = (topic, filter)
        if key not in self._cache:
            self._cache[key] = getattr(self, "_" + topic)(filter)
        cached = self._cache[key]
        if cached is None:
            return []
        return cached if isinstance(cached, list) else [cached]

    def _blocks(self, filter: bytes | None) -> str:
        return _json(views.header_json(self.committed.block.header, self.committed.block_hash))

    def _tx(self, filter: bytes | None) -> str | list[str] | None:
        if self._tx_items is None:
            self._tx_items = [{"hash": views.hex0x(envelope.hash), "status": "committed", "height": self.height,
                               "index": index, "receipt": views.receipt_json(self.committed.receipts[index])}
                              for index, envelope in enumerate(self.committed.envelopes)]
        if filter is None:
            return _json({"height": self.height, "transactions": self._tx_items}) if self._tx_items else None
        return [_json(item) for item, envelope in zip(self._tx_items, self.committed.envelopes)
                if envelope.hash == filter] or None

    def _account(self, filter: bytes | None) -> list[str] | None:
        if self._by_account is None:
            self._by_account = {}
            for index, accounts in enumerate(self.committed.touched):
                for address in accounts:
                    self._by_account.setdefault(address, []).append(index)
        indexes = self._by_account.get(filter, [])
        account = self.accounts.get(filter)
        if not indexes or account is None:
            return None
        return [_json({"address": views.address_text(filter), "height": self.height,
                       "tx_hash": views.hex0x(self.committed.envelopes[index].hash),
                       "success": self.committed.receipts[index].success, **account}) for index in indexes]

    def _orders(self, filter: bytes | None) -> str | None:
        orders = [{"order_id": views.hex0x(event.order_id), "event": event.name,
                   "state": event.data.get("state", "created"), "buyer": views.address_text(event.buyer),
                   "merchant": views.address_text(event.merchant),
                   "tx_hash": views.hex0x(self.committed.envelopes[event.tx_index].hash)}
                  for event in self.committed.order_events
                  if filter is None or filter in (event.buyer, event.merchant)]
        return _json({"height": self.height, "orders": orders}) if orders else None


class SubscriptionHub:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self.dropped_connections = 0
        self._backlog: collections.deque[Published] = collections.deque()
        self._backlog_ready = asyncio.Event()
        self._account_subscribers: collections.Counter[bytes] = collections.Counter()
        self._subscriptions_by_client: collections.Counter[str] = collections.Counter()
        self.queued = QueuedBytes()
        ledger.listeners.append(self.publish)

    def add_connection(self, connection: Connection) -> None:
        connection.total = self.queued
        self.connections.add(connection)

    def new_subscription_id(self) -> str:
        return f"0x{next(self._ids):x}"

    def connections_of(self, client: str) -> int:
        return sum(1 for connection in self.connections if connection.client == client)

    def subscriptions_of(self, client: str) -> int:
        return self._subscriptions_by_client[client]

    @property
    def subscriptions(self) -> int:
        return sum(self._subscriptions_by_client.values())

    def add_subscription(self, connection: Connection, subscription: Subscription) -> None:
        connection.subscriptions[subscription.id] = subscription
        self._subscriptions_by_client[connection.client] += 1
        if subscription.topic == "account":
            self._account_subscribers[subscription.filter] += 1

    def remove_subscription(self, connection: Connection, subscription_id: str) -> bool:
        subscription = connection.subscriptions.pop(subscription_id, None)
        if subscription is not None:
            self._subscriptions_by_client[connection.client] -= 1
            if self._subscriptions_by_client[connection.client] <= 0:
                del self._subscriptions_by_client[connection.client]
        if subscription is not None and subscription.topic == "account":
            self._account_subscribers[subscription.filter] -= 1
            if self._account_subscribers[subscription.filter] <= 0:
                del self._account_subscribers[subscription.filter]
        return subscription is not None

    def remove_connection(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self._forget_queue(connection)
        for subscription_id in list(connection.subscriptions):
            self.remove_subscription(connection, subscription_id)

    def publish(self, committed: CommittedBlock) -> None:
        """Called on the commit path after every commit: queue the block for the fan-out task, no more.
        The subscribed accounts the block touched are read now, while the state is this block's."""
        if not self.connections:
            return
        if len(self._backlog) >= limits.ws_fanout_backlog_blocks_max:
            log.warning("the WebSocket fan-out fell %d blocks behind: closing every subscriber connection",
                        len(self._backlog))
            self._backlog.clear()
            for connection in list(self.connections):
                self._overflow(connection)
            return
        accounts: dict[bytes, dict[str, Any]] = {}
        if self._account_subscribers:
            state = self.ledger.state()
            for touched in committed.touched:
                for address in touched:
                    if address in self._account_subscribers and address not in accounts:
                        account = state.account(address)
                        accounts[address] = {"nonce": account.nonce,
                                             "balances": {b.asset: b.amount for b in account.balances}}
        self._backlog.append(Published(committed, accounts))
        self._backlog_ready.set()

    async def run(self) -> None:
        """The fan-out task: builds each queued block's payloads once and queues them to subscribers."""
        while True:
            while not self._backlog:
                self._backlog_ready.clear()
                await self._backlog_ready.wait()
            published = self._backlog.popleft()
            await self.fan_out(BlockPayloads(published.committed, published.accounts))

    async def fan_out(self, payloads: BlockPayloads) -> None:
        for count, connection in enumerate(list(self.connections), start=1):
            if count % limits.ws_fanout_connections_per_yield == 0:
                await asyncio.sleep(0)   # let consensus and RPC run between slices of the fan-out
            if connection.overflowed or connection not in self.connections:
                continue
            for subscription in list(connection.subscriptions.values()):
                for result in payloads.result(subscription.topic, subscription.filter):
                    self._push(connection, subscription, result)

    def _push(self, connection: Connection, subscription: Subscription, result: str) -> None:
        if connection.overflowed:
            return
        message = ('{"jsonrpc":"2.0","method":"subscription","params":{"subscription":'
                   f'{_json(subscription.id)},"topic":{_json(subscription.topic)},"result":{result}}}}}')
        if (len(connection.queue) >= limits.ws_subscriber_buffer_messages_max
                or connection.queued_bytes + len(message) > limits.ws_subscriber_buffer_bytes_max):
            self._overflow(connection)
            return
        connection.queue.append(message)
        connection.queued_bytes += len(message)
        self.queued.bytes += len(message)
        connection.ready.set()
        if self.queued.bytes > limits.ws_queued_bytes_total_max:
            fullest = max(self.connections, key=lambda c: c.queued_bytes)
            log.warning("WebSocket notifications queued over all connections exceed %d bytes: closing the one "
                        "with the most (%d bytes)", limits.ws_queued_bytes_total_max, fullest.queued_bytes)
            self._overflow(fullest)

    def _overflow(self, connection: Connection) -> None:
        if connection.overflowed:
            return
        connection.overflowed = True
        self.dropped_connections += 1
        self._forget_queue(connection)
        connection.queue.append(None)  # wakes the writer, which closes the socket
        connection.ready.set()
        if connection.on_overflow is not None:
            connection.on_overflow()
        log.warning("closing a WebSocket whose client fell behind (more than %d notifications or %d bytes queued)",
                    limits.ws_subscriber_buffer_messages_max, limits.ws_subscriber_buffer_bytes_max)

    def _forget_queue(self, connection: Connection) -> None:
        """Drop what a connection has queued (it is closing) and take it off the node-wide count."""
        self.queued.bytes -= connection.queued_bytes
        connection.queued_bytes = 0
        connection.queue.clear()
        assert self.queued.bytes >= 0, self.queued.bytes


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
