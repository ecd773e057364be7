"""Payments: the gateway's record of one checkout, and the states it passes through as the on-chain order moves.

    awaiting_payment --shopper signs and submits--> submitted --order committed--> paid
    submitted --transaction rejected--> failed (the shopper may try again until the checkout expires)
    awaiting_payment / failed --merchant cancels--> canceled;   --ttl passes--> expired
    paid --ship--> shipped --buyer confirms / window passes--> completed
    paid --cancel (buyer or merchant) / not shipped in time--> canceled (buyer refunded on chain)
    shipped --buyer asks--> refund_requested --merchant approves--> refunded;  --rejects--> refund_rejected
    shipped / refund_requested --merchant refunds--> refunded

From `paid` on, the state is the on-chain order's state (the orders contract decides; the gateway
follows its events). Every change is written in one batch with its webhook deliveries and the
merchant's sales figures, so nothing is notified that was not recorded, or recorded and not notified.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any, Callable

from gateway import analytics, webhooks
from gateway.config import Merchant
from gateway.store import (GatewayStore, Record, expiry_key, idempotency_key, live_order_key, merchant_payment_key,
                           open_key, order_key, payment_key, submitted_key, tx_key)

AWAITING_PAYMENT = "awaiting_payment"
SUBMITTED = "submitted"
PAID = "paid"
SHIPPED = "shipped"
COMPLETED = "completed"
CANCELED = "canceled"
REFUND_REQUESTED = "refund_requested"
REFUNDED = "refunded"
REFUND_REJECTED = "refund_rejected"
EXPIRED = "expired"
FAILED = "failed"

STATES = (AWAITING_PAYMENT, SUBMITTED, FAILED, PAID, SHIPPED, COMPLETED, CANCELED, REFUND_REQUESTED, REFUNDED,
          REFUND_REJECTED, EXPIRED)
FINAL_STATES = frozenset({COMPLETED, CANCELED, REFUNDED, REFUND_REJECTED, EXPIRED})
PAYABLE_STATES = frozenset({AWAITING_PAYMENT, FAILED})
"""States in which the shopper may (still) pay."""
ORDER_STATES = {"created": PAID, "shipped": SHIPPED, "completed": COMPLETED, "canceled": CANCELED,
                "refund_requested": REFUND_REQUESTED, "refunded": REFUNDED, "refund_rejected": REFUND_REJECTED}
"""The orders contract's order state -> the payment state."""
STATE_DESCRIPTIONS = {
    AWAITING_PAYMENT: "created by the merchant; the shopper has not paid yet",
    SUBMITTED: "the shopper signed and the gateway sent the transaction; waiting for the block",
    FAILED: "the chain rejected the shopper's transaction (see error); the shopper may try again until expiry",
    PAID: "the order is on chain and the total is held in escrow",
    SHIPPED: "the merchant shipped; the buyer confirms or the confirmation window passes",
    COMPLETED: "the merchant was paid from escrow (final)",
    CANCELED: "canceled before shipping; any escrow went back to the buyer (final)",
    REFUND_REQUESTED: "the buyer asked for a refund of a shipped order",
    REFUNDED: "the escrow went back to the buyer (final)",
    REFUND_REJECTED: "the merchant rejected the refund request and was paid (final)",
    EXPIRED: "the checkout link expired before the shopper paid (final)",
}
assert set(STATE_DESCRIPTIONS) == set(STATES)

ALTERNATIVES_MAX = 4
METADATA_ITEMS_MAX = 16
METADATA_TEXT_MAX = 200
IDEMPOTENCY_KEY_CHARS_MAX = 128
HISTORY_ENTRIES_MAX = 32


class PaymentError(Exception):
    """A request the gateway refuses; `status` is the HTTP status, `code` a stable machine name."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def new_payment_id() -> str:
    """Random and unguessable: the id is also the secret part of the public checkout link."""
    return "pm_" + secrets.token_urlsafe(18)


def request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_final(payment: Record) -> bool:
    return payment["state"] in FINAL_STATES


class PaymentBook:
    """Creates payments and moves them between states, writing each change in one batch."""

    def __init__(self, store: GatewayStore, merchants: dict[str, Merchant]) -> None:
        self.store = store
        self.merchants = merchants
        """By address text: whose webhooks to deliver."""
        self.on_delivery_queued: Callable[[], None] | None = None
        """Called after a change queued a webhook delivery (wakes the sender)."""

    def find_idempotent(self, merchant: str, key: str, body_hash: str) -> Record | None:
        """The payment an earlier request with this key made, or None; the same key with another body is an error."""
        earlier = self.store.get(idempotency_key(merchant, key))
        if earlier is None:
            return None
        if earlier["request_hash"] != body_hash:
            raise PaymentError(422, "idempotency_key_reused",
                               "this Idempotency-Key was used with a different request body")
        payment = self.store.payment(earlier["payment_id"])
        assert payment is not None
        return payment

    async def create(self, payment: Record, idempotency: tuple[str, str] | None) -> None:
        """Save a new payment (and the idempotency key that made it); returns once it is on disk."""
        now = payment["created_at"]
        puts: list[tuple[bytes, Any]] = [
            (payment_key(payment["id"]), payment),
            (merchant_payment_key(payment["merchant"], int(now * 1e6), payment["id"]), payment["id"]),
            (open_key(payment["id"]), payment["id"]),
            (expiry_key(payment["expires_at"], payment["id"]), payment["id"]),
        ]
        if idempotency is not None:
            key, body_hash = idempotency
            puts.append((idempotency_key(payment["merchant"], key),
                         {"request_hash": body_hash, "payment_id": payment["id"]}))
        sales: dict[bytes, Record] = {}
        analytics.record_created(self.store, payment, now, sales)
        await self.store.commit([*puts, *sales.items()])

    def record_submitted(self, payment: Record, tx_hash: str, signed_hex: str, chosen: dict[str, Any],
                         buyer: str) -> Record:
        """The shopper's transaction is about to be sent; `signed_hex` is kept to resend it if a node forgets it."""
        changed = dict(payment, tx_hash=tx_hash, signed=signed_hex, chosen=chosen["product_id"],
                       currency=chosen["currency"], unit_price=chosen["unit_price"], total=chosen["total"],
                       buyer=buyer, error=None)
        return self.transition(changed, SUBMITTED, extra=[(tx_key(tx_hash), payment["id"])])

    def transition(self, payment: Record, state: str, *, height: int | None = None,
                   extra: list[tuple[bytes, Any]] = (), **fields: Any) -> Record:
        """Move `payment` to `state` (with `fields` changed) and write it, its deliveries and sales figures."""
        sales: dict[bytes, Record] = {}
        changed, puts, deletes, notify = self._changes(payment, state, height, fields, sales)
        self.store.write([*puts, *extra, *sales.items()], deletes)
        if notify and self.on_delivery_queued is not None:
            self.on_delivery_queued()
        return changed

    def transition_many(self, batch: list[Record], state: str) -> None:
        """Move every payment of `batch` to `state` in one write (the expiry sweep)."""
        if not batch:
            return
        puts: list[tuple[bytes, Any]] = []
        deletes: list[bytes] = []
        sales: dict[bytes, Record] = {}
        notified = False
        for payment in batch:
            _, changed_puts, changed_deletes, notify = self._changes(payment, state, None, {}, sales)
            puts += changed_puts
            deletes += changed_deletes
            notified = notified or notify
        self.store.write(puts + list(sales.items()), deletes)
        if notified and self.on_delivery_queued is not None:
            self.on_delivery_queued()

    def touch(self, payment: Record) -> None:
        """Note that the gateway acted on `payment` now (e.g. resent its transaction), without a state change."""
        self.store.write([(payment_key(payment["id"]), dict(payment, updated_at=time.time()))])

    def _changes(self, payment: Record, state: str, height: int | None, fields: dict[str, Any],
                 sales: dict[bytes, Record]) -> tuple[Record, list, list, bool]:
        """The changed payment and the writes that record it (indexes, a webhook delivery); its sales figures go
        into `sales`, which the caller writes (shared by a batch, so the figures of one day add up within it)."""
        assert state in STATES
        now = time.time()
        previous = payment["state"]
        changed = dict(payment, **fields, state=state, updated_at=now)
        if height is not None:
            changed["height"] = height
        history = list(payment.get("history", []))[-(HISTORY_ENTRIES_MAX - 1):]
        changed["history"] = history + [{"state": state, "at": now, "height": height}]
        puts: list[tuple[bytes, Any]] = [(payment_key(changed["id"]), changed)]
        deletes = self._index_changes(payment, changed, previous, state, puts)
        analytics.record_transition(self.store, changed, previous, now, sales)
        merchant = self.merchants.get(changed["merchant"])
        notify = previous != state and merchant is not None and merchant.webhook_url is not None
        if notify:
            puts.extend(webhooks.new_delivery(changed, "payment." + state, now))
        return changed, puts, deletes, notify

    @staticmethod
    def _index_changes(payment: Record, changed: Record, previous: str, state: str,
                       puts: list[tuple[bytes, Any]]) -> list[bytes]:
        """Keep the open, submitted, expiry, order and live-order indexes in step; returns the deletes."""
        payment_id = changed["id"]
        deletes = [open_key(payment_id)] if state in FINAL_STATES else []
        if previous in FINAL_STATES and state not in FINAL_STATES:  # e.g. expired, then the sent payment landed
            puts.append((open_key(payment_id), payment_id))
        if state == SUBMITTED:
            puts.append((submitted_key(payment_id), payment_id))
        elif previous == SUBMITTED:
            deletes.append(submitted_key(payment_id))
        if state not in PAYABLE_STATES and state != SUBMITTED:
            deletes.append(expiry_key(changed["expires_at"], payment_id))
        if changed.get("order_id") and not payment.get("order_id"):
            puts.append((order_key(changed["order_id"]), payment_id))
        if changed.get("order_id"):
            if state in FINAL_STATES:
                deletes.append(live_order_key(payment_id))
            else:
                puts.append((live_order_key(payment_id), payment_id))
        return deletes

    def follow_order(self, payment: Record, order_state: str, order_id: str, height: int | None) -> Record | None:
        """Apply the on-chain order's state; returns the changed payment, or None if nothing changed.

        Reads the payment again first: a caller's copy may be stale (it waited for a node meanwhile)."""
        payment = self.store.payment(payment["id"])
        state = ORDER_STATES.get(order_state)
        if state is None or (state == payment["state"] and payment.get("order_id") == order_id):
            return None
        if payment.get("order_id") not in (None, order_id):
            return None  # another order than the one this payment follows
        linked = self.store.payment_by_order(order_id)
        if linked is not None and linked["id"] != payment["id"]:
            return None  # one order pays one checkout
        if is_final(payment) and payment.get("order_id") == order_id:
            return None  # a late duplicate notification
        if height is not None and payment.get("height") is not None and height < payment["height"]:
            return None  # older than what the payment already reflects (replayed after a reconnect)
        return self.transition(payment, state, height=height, order_id=order_id, error=None)


def public_view(payment: Record, public_url: str) -> dict[str, Any]:
    """The payment as the merchant API returns it."""
    keys = ("id", "merchant", "region", "chain_id", "state", "product_id", "quantity", "options", "chosen",
            "currency", "unit_price", "total", "buyer", "metadata", "created_at", "updated_at", "expires_at",
            "tx_hash", "order_id", "height", "error", "history")
    view = {key: payment.get(key) for key in keys}
    view["checkout_url"] = f"{public_url}/checkout/{payment['id']}"
    return view
