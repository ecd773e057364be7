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
"""Submitted payments and recharges looked at per sweep (the rest wait for the next one)."""
EXPIRIES_MAX = 5_000
"""Checkouts expired per sweep, in one write (more than the gateway can create in a second)."""
RECONCILE_PAGE_ITEMS = 500
"""Live orders read from the store at a time while reconciling (all of them are read back)."""
RESEND_AFTER_S = 10.0
"""A submitted transaction (or a recharge post) the node does not know after this long is sent again."""
RECHARGE_GIVE_UP_S = 600.0
"""A recharge request not in a block after this long is given up (the user may ask again)."""
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
        """Keep a feed open; any failure (a node gone, a malformed answer) is logged and the next node tried."""
        while True:
            endpoint = self.client.ordered()[0]
            try:
                await self._subscribe(endpoint.ws_url)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, NodeUnavailable) as error:
                log.warning("region %s: orders feed from %s lost (%s)", self.region, endpoint.url, error)
                endpoint.healthy = False
            except Exception:
                log.exception("region %s: orders feed from %s failed", self.region, endpoint.url)
            self.connected_to = None
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _subscribe(self, ws_url: str) -> None:
        async with self.client.session.ws_connect(ws_url, heartbeat=10, max_msg_size=WS_MESSAGE_BYTES_MAX,
                                                  headers=self.client.auth_headers,
                                                  timeout=aiohttp.ClientWSTimeout(ws_close=2)) as socket:
            await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["orders"]})
            self.connected_to = ws_url
            reconciled_to = await self.reconcile()
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                notification = json.loads(message.data)
                if notification.get("method") == "subscription":
                    result = notification["params"]["result"]
                    if result["height"] > reconciled_to:  # older blocks are already in the reconciled states
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

    async def reconcile(self) -> int:
        """Read back the order of every payment of this region with a live order (after (re)connecting the
        feed, so nothing that happened while it was down is missed); returns the height read at."""
        height = (await self.client.call("node_status"))["height"]
        after = None
        while page := self.store.live_order_payment_ids(after, RECONCILE_PAGE_ITEMS):
            after = page[-1]
            for payment_id in page:
                payment = self.store.payment(payment_id)
                if payment is None or payment["region"] != self.region:
                    continue
                try:
                    order = await self.client.call("order_get", payment["order_id"])
                except ChainError:
                    continue
                self.book.follow_order(payment, order["state"], payment["order_id"], height)
        return height

    # --- sweep ---------------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except NodeUnavailable as error:
                log.warning("region %s: sweep skipped: %s", self.region, error)
            except Exception:
                log.exception("region %s: sweep failed; trying again", self.region)
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
                await self._settle_submitted(payment, answer)

    async def _settle_submitted(self, payment: dict[str, Any], answer: dict[str, Any]) -> None:
        status = answer["status"]
        if status == "committed":
            receipt = answer["receipt"]
            order_id = order_created_id(receipt) if receipt["success"] else None
            if order_id is not None:
                self.book.follow_order(payment, "created", order_id, answer["height"])
            else:
                self.book.transition(payment, payments.FAILED, height=answer["height"],
                                     error=receipt["message"] or "the transaction made no order")
        elif status == "rejected":
            self.book.transition(payment, payments.FAILED, error=answer.get("message") or "rejected")
        elif status == "unknown" and time.time() - payment["updated_at"] > RESEND_AFTER_S:
            await self._resend(payment)

    async def _resend(self, payment: dict[str, Any]) -> None:
        """The node does not know the shopper's transaction (lost before it was forwarded, or a lagging node):
        send the same bytes again. Only a definite refusal (e.g. the nonce was used by another transaction)
        fails the payment; the shopper may then pay again."""
        try:
            await self.client.send_transaction(bytes.fromhex(payment["signed"]), resend=True)
        except ChainError as error:
            current = self.store.payment(payment["id"])
            if current["state"] == payments.SUBMITTED:
                self.book.transition(current, payments.FAILED, error=f"the network dropped it: {error.message}")
            return
        current = self.store.payment(payment["id"])
        if current["state"] == payments.SUBMITTED:
            self.book.touch(current)  # resent now: wait again before the next resend

    def _expire(self) -> None:
        due = [self.store.payment(payment_id) for payment_id in self.store.expired_payment_ids(time.time(),
                                                                                               EXPIRIES_MAX)]
        self.book.transition_many([payment for payment in due if payment is not None
                                   and payment["region"] == self.region
                                   and payment["state"] in payments.PAYABLE_STATES], payments.EXPIRED)

    async def _post_recharges(self) -> None:
        for tx_hash in self.store.queued_recharges(SWEEP_ITEMS_MAX):
            record = self.store.get(recharge_key(tx_hash))
            if record is None or record["region"] != self.region:
                continue
            if record["state"] == "submitted":
                await self._post_when_committed(record)
            elif record["state"] == "posting":
                await self._check_posted(record)

    async def _post_when_committed(self, record: dict[str, Any]) -> None:
        tx_hash = record["tx_hash"]
        answer = await self.client.call("tx_get", tx_hash)
        if answer["status"] in ("pending", "unknown"):
            if time.time() - record["submitted_at"] > RECHARGE_GIVE_UP_S:
                self._finish_recharge(dict(record, state="failed", error="the request never reached a block"))
            return
        if answer["status"] == "rejected" or not answer["receipt"]["success"]:
            message = answer.get("message") or answer.get("receipt", {}).get("message") or "rejected"
            self._finish_recharge(dict(record, state="failed", error=message))
            return
        await self._post(record)

    async def _post(self, record: dict[str, Any]) -> None:
        reference = f"gateway auto-confirm {record['tx_hash'][2:18]}"
        try:
            post_hash = await self.gateway_signer.post_recharge(self.chain, bytes.fromhex(record["tx_hash"][2:]),
                                                                reference, record["asset"])
        except ChainError as error:
            self._finish_recharge(dict(record, state="failed", error=f"posting failed: {error.message}"))
            return
        self.store.write([(recharge_key(record["tx_hash"]),
                           dict(record, state="posting", post_tx_hash=post_hash, posted_at=time.time()))])

    async def _check_posted(self, record: dict[str, Any]) -> None:
        """Done when the chain shows the request posted; a post that got lost is sent again."""
        try:
            on_chain = await self.client.call("recharge_get", record["tx_hash"])
        except ChainError:
            return
        if on_chain["status"] != "pending":
            self._finish_recharge(dict(record, state=on_chain["status"]))
        elif time.time() - record["posted_at"] > RESEND_AFTER_S:
            await self._post(record)

    def _finish_recharge(self, record: dict[str, Any]) -> None:
        self.store.write([(recharge_key(record["tx_hash"]), record)], [recharge_queue_key(record["tx_hash"])])


def order_created_id(receipt: dict[str, Any]) -> str | None:
    for event in receipt.get("events", []):
        if event.get("name") == "order_created":
            return event["data"]["order_id"]["bytes"]
    return None
