"""WebSocket subscriptions: `blocks`, `tx`, `account` and `orders` topics, with a bounded buffer per connection.

A connection whose buffer fills (a client that does not read) is closed with a
policy-violation code rather than letting memory grow: the client reconnects and
catches up with `chain_getBlock` / `account_getHistory`. Topics that can match many
transactions of one block (`tx` without a filter, `orders`) send one notification per block
with all of them, so the buffer counts blocks and a client that reads is never dropped
because one block was large.
"""

from __future__ import annotations

import asyncio
import itertools
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
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(limits.ws_subscriber_buffer_messages_max))
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    overflowed: bool = False
    on_overflow: Callable[[], None] | None = None
    """Called once when the buffer overflows (the transport drops a client that is not reading)."""


class SubscriptionHub:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self.dropped_connections = 0
        ledger.listeners.append(self.publish)

    def new_subscription_id(self) -> str:
        return f"0x{next(self._ids):x}"

    def publish(self, committed: CommittedBlock) -> None:
        """Called after every commit: queue notifications for every matching subscription."""
        if not self.connections:
            return
        block_summary: dict[str, Any] | None = None
        by_account: dict[bytes, list[int]] | None = None
        for connection in list(self.connections):
            for subscription in list(connection.subscriptions.values()):
                if subscription.topic == "blocks":
                    if block_summary is None:
                        block_summary = views.header_json(committed.block.header, committed.block_hash)
                    self._push(connection, subscription, block_summary)
                elif subscription.topic == "tx":
                    self._publish_tx(connection, subscription, committed)
                elif subscription.topic == "account":
                    if by_account is None:
                        by_account = {}
                        for index, accounts in enumerate(committed.touched):
                            for address in accounts:
                                by_account.setdefault(address, []).append(index)
                    self._publish_account(connection, subscription, committed, by_account)
                elif subscription.topic == "orders":
                    self._publish_orders(connection, subscription, committed)

    def _publish_tx(self, connection: Connection, subscription: Subscription, committed: CommittedBlock) -> None:
        items = [{"hash": views.hex0x(envelope.hash), "status": "committed", "height": committed.block.header.height,
                  "index": index, "receipt": views.receipt_json(committed.receipts[index])}
                 for index, envelope in enumerate(committed.envelopes)
                 if subscription.filter is None or subscription.filter == envelope.hash]
        if subscription.filter is not None:
            for item in items:
                self._push(connection, subscription, item)
        elif items:
            self._push(connection, subscription, {"height": committed.block.header.height, "transactions": items})

    def _publish_account(self, connection: Connection, subscription: Subscription, committed: CommittedBlock,
                         by_account: dict[bytes, list[int]]) -> None:
        indexes = by_account.get(subscription.filter, [])
        if not indexes:
            return
        account = self.ledger.state().account(subscription.filter)
        for index in indexes:
            self._push(connection, subscription, {
                "address": views.address_text(subscription.filter), "height": committed.block.header.height,
                "tx_hash": views.hex0x(committed.envelopes[index].hash),
                "success": committed.receipts[index].success,
                "nonce": account.nonce, "balances": {b.asset: b.amount for b in account.balances}})

    def _publish_orders(self, connection: Connection, subscription: Subscription, committed: CommittedBlock) -> None:
        orders = [{"order_id": views.hex0x(event.order_id), "event": event.name,
                   "state": event.data.get("state", "created"), "buyer": views.address_text(event.buyer),
                   "merchant": views.address_text(event.merchant),
                   "tx_hash": views.hex0x(committed.envelopes[event.tx_index].hash)}
                  for event in committed.order_events
                  if subscription.filter is None or subscription.filter in (event.buyer, event.merchant)]
        if orders:
            self._push(connection, subscription, {"height": committed.block.header.height, "orders": orders})

    def _push(self, connection: Connection, subscription: Subscription, result: Any) -> None:
        if connection.overflowed:
            return
        message = {"jsonrpc": "2.0", "method": "subscription",
                   "params": {"subscription": subscription.id, "topic": subscription.topic, "result": result}}
        try:
            connection.queue.put_nowait(message)
        except asyncio.QueueFull:
            connection.overflowed = True
            self.dropped_connections += 1
            connection.queue = asyncio.Queue(1)
            connection.queue.put_nowait(None)  # wakes the writer, which closes the socket
            if connection.on_overflow is not None:
                connection.on_overflow()
            log.warning("closing a WebSocket whose client fell %d notifications behind",
                        limits.ws_subscriber_buffer_messages_max)
