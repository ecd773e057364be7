"""Payment-result notifications: webhooks signed with HMAC-SHA256, retried with backoff, logged for the merchant.

A delivery is recorded in the same write as the payment change it reports (see payments.py),
so a crash between the two cannot lose or invent a notification. The sender then POSTs it:

    POST <webhook_url>
    Content-Type: application/json
    Paychain-Event-Id: <delivery id>       (the same on every retry; also the body's signed "id", which
                                           is what receivers dedupe on: this header is not signed)
    Paychain-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

Any 2xx answer within 5 s is success. A redirect is not followed and counts as a failure, and a
target that is not a public address is refused (gateway/egress.py). The delivery log keeps the
status line of each answer, never its body (the merchant reads the log). Otherwise the attempt is logged and retried after
`retry_base_s * 2^(attempt-1)` (capped at an hour) until `ATTEMPTS_MAX` attempts, then the
delivery is marked failed. A receiver should reject a timestamp more than 5 minutes old.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any, Callable

import aiohttp

from gateway.config import Merchant
from gateway.egress import literal_refusal
from gateway.redaction import redacted_id
from gateway.store import GatewayStore, Record, delivery_key, due_key, merchant_delivery_key

log = logging.getLogger("paychain.gateway.webhooks")

ATTEMPTS_MAX = 8
ATTEMPT_TIMEOUT_S = 5.0
RETRY_DELAY_S_MAX = 3600.0
DELIVERIES_IN_FLIGHT_MAX = 32
"""Deliveries attempted at once."""
MERCHANT_IN_FLIGHT_MAX = 4
"""Deliveries to one merchant attempted at once (a receiver that hangs holds at most these)."""
DUE_SCAN_MAX = 256
"""Due deliveries looked at per pass (those of merchants at their limit are skipped, not waited for)."""
ATTEMPT_LOG_ENTRIES_MAX = ATTEMPTS_MAX
RESPONSE_EXCERPT_CHARS_MAX = 200
"""Longest error text kept per attempt in the delivery log."""
REASON_CHARS_MAX = 40
"""Longest reason phrase of a receiver's status line kept in the log."""
SIGNATURE_HEADER = "Paychain-Signature"
EVENT_ID_HEADER = "Paychain-Event-Id"
PAYLOAD_FIELDS = ("id", "merchant", "region", "state", "product_id", "quantity", "chosen", "currency", "unit_price",
                  "total", "buyer", "metadata", "tx_hash", "order_id", "height", "error", "created_at", "updated_at")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


FUTURE_SKEW_S_MAX = 30.0
"""How far ahead of the receiver's clock a signature's timestamp may be (clocks differ a little; a
timestamp far ahead would let a captured notification be replayed for longer)."""


def verify(secret: bytes, header: str, body: bytes, now: float, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: check the signature and that the timestamp is recent, and not ahead of its
    clock by more than FUTURE_SKEW_S_MAX. Then it dedupes on the signed body's `id` (the header's copy
    of it is not signed), remembering ids for as long as their timestamps would pass this check."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        expected = sign(secret, timestamp, body)
    except (KeyError, ValueError):
        return False
    fresh = -FUTURE_SKEW_S_MAX <= now - timestamp <= tolerance_s
    return fresh and hmac.compare_digest(expected.encode(), header.encode())


def new_delivery(payment: Record, event: str, now: float) -> list[tuple[bytes, Any]]:
    """The writes that queue a notification of `event` about `payment` (for its merchant's webhook)."""
    delivery_id = "wh_" + secrets.token_urlsafe(12)
    body = json.dumps({"id": delivery_id, "type": event, "created_at": now,
                       "data": {key: payment.get(key) for key in PAYLOAD_FIELDS}}, separators=(",", ":"))
    micros = int(now * 1e6)
    record = {"id": delivery_id, "merchant": payment["merchant"], "payment_id": payment["id"], "event": event,
              "body": body, "state": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now,
              "delivered_at": None, "log": []}
    return [(delivery_key(delivery_id), record),
            (merchant_delivery_key(payment["merchant"], micros, delivery_id), delivery_id),
            (due_key(micros, delivery_id), delivery_id)]


def public_view(delivery: Record) -> dict[str, Any]:
    return {key: delivery[key] for key in ("id", "payment_id", "event", "state", "attempts", "created_at",
                                           "next_attempt_at", "delivered_at", "log")}


class WebhookSender:
    """Attempts due deliveries; `wake()` after queueing one so it goes out at once."""

    def __init__(self, store: GatewayStore, merchants: dict[str, Merchant], session: aiohttp.ClientSession,
                 retry_base_s: float, on_delivered: Callable[[Record], None] | None = None,
                 private_allowed: bool = False) -> None:
        """`session` should come from `egress.webhook_session` (it refuses private addresses after resolving);
        `private_allowed` turns off the check of IP literals too (a local network)."""
        self.store = store
        self.private_allowed = private_allowed
        self.merchants = merchants
        self.session = session
        self.retry_base_s = retry_base_s
        self.on_delivered = on_delivered
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Attempt due deliveries as they come due, at most `DELIVERIES_IN_FLIGHT_MAX` at once and
        `MERCHANT_IN_FLIGHT_MAX` per merchant, so one slow receiver does not hold up every other merchant's."""
        in_flight: dict[str, str] = {}
        """delivery id -> merchant, of attempts running now."""
        async with asyncio.TaskGroup() as group:
            while True:
                started = 0
                for key, delivery_id in self.store.due_deliveries(int(time.time() * 1e6), DUE_SCAN_MAX):
                    if len(in_flight) >= DELIVERIES_IN_FLIGHT_MAX:
                        break
                    if delivery_id in in_flight:
                        continue
                    merchant = self._merchant_of(delivery_id)
                    if sum(1 for m in in_flight.values() if m == merchant) >= MERCHANT_IN_FLIGHT_MAX:
                        continue
                    in_flight[delivery_id] = merchant
                    group.create_task(self._attempt_and_release(key, delivery_id, in_flight))
                    started += 1
                if started == 0:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=0.25)
                    except asyncio.TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0)

    def _merchant_of(self, delivery_id: str) -> str:
        delivery = self.store.delivery(delivery_id)
        return delivery["merchant"] if delivery else ""

    async def _attempt_and_release(self, queued_key: bytes, delivery_id: str, in_flight: dict[str, str]) -> None:
        try:
            await self.attempt(queued_key, delivery_id)
        except Exception:
            log.exception("webhook %s: attempt failed", delivery_id)
        finally:
            del in_flight[delivery_id]
            self.wake()

    async def attempt(self, queued_key: bytes, delivery_id: str) -> None:
        delivery = self.store.delivery(delivery_id)
        merchant = self.merchants.get(delivery["merchant"]) if delivery else None
        if delivery is None or delivery["state"] != "pending" or merchant is None or merchant.webhook_url is None:
            self.store.write([], [queued_key])  # nothing to send any more (merchant removed from the config)
            return
        started = time.time()
        status, error = await self._post(merchant, delivery)
        entry = {"at": started, "status": status, "error": error, "duration_ms": round((time.time() - started) * 1000)}
        delivery = dict(delivery, attempts=delivery["attempts"] + 1,
                        log=(delivery["log"] + [entry])[-ATTEMPT_LOG_ENTRIES_MAX:])
        puts: list[tuple[bytes, Any]] = []
        if status is not None and 200 <= status < 300:
            delivery.update(state="delivered", delivered_at=time.time(), next_attempt_at=None)
        elif delivery["attempts"] >= ATTEMPTS_MAX:
            delivery.update(state="failed", next_attempt_at=None)
            log.warning("webhook %s for %s failed after %d attempts", delivery_id, redacted_id(delivery["payment_id"]),
                        delivery["attempts"])
        else:
            delay_s = min(self.retry_base_s * 2 ** (delivery["attempts"] - 1), RETRY_DELAY_S_MAX)
            delivery["next_attempt_at"] = time.time() + delay_s
            puts.append((due_key(int(delivery["next_attempt_at"] * 1e6), delivery_id), delivery_id))
        puts.append((delivery_key(delivery_id), delivery))
        self.store.write(puts, [queued_key])
        if delivery["state"] == "delivered" and self.on_delivered is not None:
            self.on_delivered(delivery)

    async def _post(self, merchant: Merchant, delivery: Record) -> tuple[int | None, str | None]:
        body = delivery["body"].encode()
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: delivery["id"],
                   SIGNATURE_HEADER: sign(merchant.webhook_secret, int(time.time()), body),
                   "User-Agent": "paychain-gateway"}
        refusal = None if self.private_allowed else literal_refusal(merchant.webhook_url)
        if refusal is not None:
            return None, f"refused: {refusal}"[:RESPONSE_EXCERPT_CHARS_MAX]
        try:
            async with self.session.post(merchant.webhook_url, data=body, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S)) as response:
                if 200 <= response.status < 300:
                    return response.status, None
                status_line = f"HTTP {response.status} {_printable(response.reason or '')[:REASON_CHARS_MAX]}".strip()
                if 300 <= response.status < 400:
                    return response.status, f"{status_line}: redirects are not followed"
                return response.status, status_line
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            return None, f"{type(error).__name__}: {error}"[:RESPONSE_EXCERPT_CHARS_MAX]


def _printable(text: str) -> str:
    return "".join(character if character.isprintable() else "?" for character in text)
