"""Keeps payments in step with the chain: a live `orders` subscription per region, plus a one-second sweep.

The subscription (WebSocket `subscribe orders` on a healthy node of the region) turns each
order event into a payment change as soon as its block commits, so webhooks go out without
polling. When the node goes away the follower moves to the next healthy one and reconciles:
it reads back every open payment's order, so nothing that happened in between is missed.
The sweep handles what the subscription cannot see: transactions rejected before a block
(tx_get), checkouts that expired unpaid, and recharge requests waiting to be posted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp

from gateway import payments
from gateway.chain import ChainView, Signer
from gateway.nodes import ChainError, NodeUnavailable, RegionClient
from gateway.payments import PaymentBook
from gateway.store import GatewayStore, recharge_key, recharge_queue_key

log = logging.getLogger("paychain.gateway.follower")

SWEEP_INTERVAL_S = 1.0
SWEEP_ITEMS_MAX = 500
"""Submitted payments, expiries and recharges looked at per sweep (the rest wait for the next one)."""
RECONCILE_ITEMS_MAX = 10_000
UNKNOWN_TX_GRACE_S = 60.0
"""A submitted transaction no node knows of for this long was dropped: the payment fails (the shopper may retry)."""
RECONNECT_DELAY_S = 0.5
WS_MESSAGE_BYTES_MAX = 16 * 1024 * 1024


class Follower:
    def __init__(self, client: RegionClient, chain: ChainView, book: PaymentBook, store: GatewayStore,
                 gateway_signer: Signer, recharge_auto_confirm: bool) -> None:
        self.client = client
        self.chain = chain
        self.book = book
        self.store = store
        self.gateway_signer = gateway_signer
        self.recharge_auto_confirm = recharge_auto_confirm
        self.region = client.region.name
        self.connected_to: str | None = None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow())
            group.create_task(self._sweep_forever())

    # --- live subscription ---------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            endpoint = self.client.ordered()[0]
            try:
                await self._subscribe(endpoint.ws_url)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as error:
                log.warning("region %s: orders feed from %s lost (%s)", self.region, endpoint.url, error)
                endpoint.healthy = False
            self.connected_to = None
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _subscribe(self, ws_url: str) -> None:
        async with self.client.session.ws_connect(ws_url, heartbeat=10, max_msg_size=WS_MESSAGE_BYTES_MAX,
                                                  timeout=aiohttp.ClientWSTimeout(ws_close=2)) as socket:
            await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["orders"]})
            self.connected_to = ws_url
            await self.reconcile()
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                notification = json.loads(message.data)
                if notification.get("method") == "subscription":
                    result = notification["params"]["result"]
                    self.apply_orders(result["orders"], result["height"])

    def apply_orders(self, orders: list[dict[str, Any]], height: int) -> None:
        for order in orders:
            payment = None
            if order["event"] == "order_created":
                payment = self.store.payment_by_tx(order["tx_hash"])
            if payment is None:
                payment = self.store.payment_by_order(order["order_id"])
            if payment is None or payment["region"] != self.region:
                continue  # an order not made through this gateway
            self.book.follow_order(payment, order["state"], order["order_id"], height)

    async def reconcile(self) -> None:
        """Read back the order of every open payment of this region (after (re)connecting the feed)."""
        for count, payment_id in enumerate(self.store.open_payment_ids()):
            if count >= RECONCILE_ITEMS_MAX:
                break
            payment = self.store.payment(payment_id)
            if payment is None or payment["region"] != self.region or not payment.get("order_id"):
                continue
            try:
                order = await self.client.call("order_get", payment["order_id"])
            except ChainError:
                continue
            self.book.follow_order(payment, order["state"], payment["order_id"], None)

    # --- sweep ---------------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except NodeUnavailable as error:
                log.warning("region %s: sweep skipped: %s", self.region, error)
            await asyncio.sleep(SWEEP_INTERVAL_S)

    async def sweep(self) -> None:
        await self._check_submitted()
        self._expire()
        await self._post_recharges()

    async def _check_submitted(self) -> None:
        for payment_id in self.store.submitted_payment_ids(SWEEP_ITEMS_MAX):
            payment = self.store.payment(payment_id)
            if payment is None or payment["region"] != self.region or payment["state"] != payments.SUBMITTED:
                continue
            answer = await self.client.call("tx_get", payment["tx_hash"])
            payment = self.store.payment(payment_id)  # the live feed may have moved it while we waited
            if payment["state"] == payments.SUBMITTED:
                self._settle_submitted(payment, answer)

    def _settle_submitted(self, payment: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any] | None:
        status = answer["status"]
        if status == "committed":
            receipt = answer["receipt"]
            if not receipt["success"]:
                return self.book.transition(payment, payments.FAILED, height=answer["height"],
                                            error=receipt["message"] or "the transaction failed")
            order_id = order_created_id(receipt)
            if order_id is None:
                return self.book.transition(payment, payments.FAILED, height=answer["height"],
                                            error="the transaction made no order")
            return self.book.follow_order(payment, "created", order_id, answer["height"])
        if status == "rejected":
            return self.book.transition(payment, payments.FAILED, error=answer.get("message") or "rejected")
        if status == "unknown" and time.time() - payment["updated_at"] > UNKNOWN_TX_GRACE_S:
            return self.book.transition(payment, payments.FAILED, error="the network dropped the transaction")
        return None

    def _expire(self) -> None:
        for payment_id in self.store.expired_payment_ids(time.time(), SWEEP_ITEMS_MAX):
            payment = self.store.payment(payment_id)
            if payment is not None and payment["region"] == self.region and payment["state"] in payments.PAYABLE_STATES:
                self.book.transition(payment, payments.EXPIRED)

    async def _post_recharges(self) -> None:
        for tx_hash in self.store.queued_recharges(SWEEP_ITEMS_MAX):
            record = self.store.get(recharge_key(tx_hash))
            if record is None or record["region"] != self.region:
                continue
            answer = await self.client.call("tx_get", tx_hash)
            if answer["status"] in ("pending", "unknown") and time.time() - record["submitted_at"] < UNKNOWN_TX_GRACE_S:
                continue
            done = dict(record, state="failed", error=answer.get("message") or "the request was not committed")
            if answer["status"] == "committed" and answer["receipt"]["success"]:
                reference = f"gateway auto-confirm {tx_hash[2:18]}"
                try:
                    post_hash = await self.gateway_signer.post_recharge(self.chain, bytes.fromhex(tx_hash[2:]),
                                                                        reference, record["asset"])
                except ChainError as error:
                    done = dict(record, state="failed", error=f"posting failed: {error.message}")
                else:
                    done = dict(record, state="posting", post_tx_hash=post_hash)
            elif answer["status"] == "committed":
                done = dict(record, state="failed", error=answer["receipt"]["message"])
            self.store.write([(recharge_key(tx_hash), done)], [recharge_queue_key(tx_hash)])


def order_created_id(receipt: dict[str, Any]) -> str | None:
    for event in receipt.get("events", []):
        if event.get("name") == "order_created":
            return event["data"]["order_id"]["bytes"]
    return None
