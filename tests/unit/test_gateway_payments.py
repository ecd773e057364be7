"""Payments (gateway/payments.py): creation with idempotency keys, state transitions, the on-chain order followed,
and the store indexes (open, submitted, expiry) that the follower's sweeps read."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hypothesis import given, strategies as st

from gateway import analytics, payments
from gateway.config import Merchant, hash_api_key
from gateway.payments import PaymentBook, PaymentError
from gateway.store import GatewayStore
from node.localnet import dev_keys

WEBHOOK_SECRET = b"a-webhook-secret-of-32-characters"
ORDER_ID = "0x" + "ab" * 32


def make_merchant(name: str = "merchant", webhook_url: str | None = "http://127.0.0.1:9/hook") -> Merchant:
    """A merchant as the config makes it; `webhook_url=None` for one that takes no notifications."""
    keys = dev_keys(f"test/{name}")
    return Merchant(name, keys.address, hash_api_key(f"{name}-api-key"), webhook_url,
                    WEBHOOK_SECRET if webhook_url is not None else None, None)


def new_payment(merchant: Merchant, now: float | None = None, *, ttl_s: float = 900, product_id: str = "tea",
                currency: str = "CNY", unit_price: int = 250, quantity: int = 2) -> dict[str, Any]:
    """A payment record as the merchant API creates it (gateway/api.py)."""
    now = time.time() if now is None else now
    option = {"product_id": product_id, "name": product_id.title(), "currency": currency, "unit_price": unit_price,
              "quantity": quantity, "total": unit_price * quantity}
    return {"id": payments.new_payment_id(), "merchant": merchant.address_text, "merchant_name": merchant.name,
            "region": "cn", "chain_id": "paychain-test", "state": payments.AWAITING_PAYMENT, "product_id": product_id,
            "quantity": quantity, "options": [option], "chosen": None, "currency": currency, "unit_price": unit_price,
            "total": unit_price * quantity, "buyer": None, "metadata": {}, "created_at": now, "updated_at": now,
            "expires_at": now + ttl_s, "tx_hash": None, "order_id": None, "height": None, "error": None,
            "history": [{"state": payments.AWAITING_PAYMENT, "at": now, "height": None}]}


def make_book(store: GatewayStore, *merchants: Merchant) -> PaymentBook:
    return PaymentBook(store, {merchant.address_text: merchant for merchant in merchants})


def create(book: PaymentBook, payment: dict[str, Any], idempotency: tuple[str, str] | None = None) -> None:
    """Save a new payment as the API does (outside an event loop); returns once it is on disk."""
    asyncio.run(book.create(payment, idempotency))


def submit(book: PaymentBook, payment: dict[str, Any], tx_hash: str = "0x" + "cd" * 32) -> dict[str, Any]:
    """The shopper's signed transaction was sent: the payment is submitted."""
    return book.record_submitted(payment, tx_hash, "00", payment["options"][0], "pay1buyer")


def deliveries(store: GatewayStore, merchant: Merchant) -> list[dict[str, Any]]:
    """The merchant's webhook delivery log, oldest first."""
    return [record for _, record in store.merchant_deliveries(merchant.address_text, None)][::-1]


@pytest.fixture(params=["memory", "leveldb"])
def store(request, tmp_path):
    opened = GatewayStore.in_memory() if request.param == "memory" else GatewayStore.open(tmp_path / "db")
    yield opened
    opened.close()


@pytest.fixture
def merchant():
    return make_merchant()


@pytest.fixture
def book(store, merchant):
    return make_book(store, merchant)


@pytest.fixture
def created(book, merchant):
    payment = new_payment(merchant)
    create(book, payment)
    return payment


# --- create and idempotency ------------------------------------------------------------------------

def test_create_saves_the_payment_and_counts_it(store, book, merchant):
    payment = new_payment(merchant)
    create(book, payment)
    assert store.payment(payment["id"]) == payment
    assert [record["id"] for _, record in store.merchant_payments(merchant.address_text, None)] == [payment["id"]]
    assert analytics.report(store, merchant.address_text, 1)["totals"]["created"] == 1


def test_same_idempotency_key_and_body_finds_the_same_payment(store, book, merchant):
    body_hash = payments.request_hash({"product_id": "tea", "quantity": 2})
    assert book.find_idempotent(merchant.address_text, "order-42", body_hash) is None
    payment = new_payment(merchant)
    create(book, payment, ("order-42", body_hash))
    same_body_hash = payments.request_hash({"quantity": 2, "product_id": "tea"})  # key order does not matter
    assert book.find_idempotent(merchant.address_text, "order-42", same_body_hash) == payment


def test_idempotent_replay_returns_the_payment_as_it_is_now(store, book, merchant):
    payment = new_payment(merchant)
    create(book, payment, ("order-42", "hash"))
    submit(book, payment)
    assert book.find_idempotent(merchant.address_text, "order-42", "hash")["state"] == payments.SUBMITTED


def test_invalid_idempotency_key_reused_with_another_body(book, merchant):
    create(book, new_payment(merchant), ("order-42", payments.request_hash({"product_id": "tea"})))
    with pytest.raises(PaymentError) as raised:
        book.find_idempotent(merchant.address_text, "order-42", payments.request_hash({"product_id": "coffee"}))
    assert (raised.value.status, raised.value.code) == (422, "idempotency_key_reused")


def test_idempotency_keys_are_per_merchant(store, merchant):
    other = make_merchant("other-merchant")
    book = make_book(store, merchant, other)
    create(book, new_payment(merchant), ("order-42", "hash-a"))
    assert book.find_idempotent(other.address_text, "order-42", "hash-b") is None


def test_public_view_has_the_checkout_link(created):
    view = payments.public_view(created, "https://pay.example.com")
    assert view["checkout_url"] == f"https://pay.example.com/checkout/{created['id']}"
    assert view["state"] == payments.AWAITING_PAYMENT and "merchant_name" not in view


# --- transitions -----------------------------------------------------------------------------------

def test_transition_saves_state_fields_and_history(store, book, created):
    before = time.time()
    changed = book.transition(created, payments.FAILED, height=12, error="insufficient funds")
    assert store.payment(created["id"]) == changed
    assert (changed["state"], changed["height"], changed["error"]) == (payments.FAILED, 12, "insufficient funds")
    assert changed["updated_at"] >= before
    assert changed["history"][0] == created["history"][0]
    assert changed["history"][-1] == {"state": payments.FAILED, "at": changed["updated_at"], "height": 12}
    assert created["state"] == payments.AWAITING_PAYMENT  # the caller's record is not changed in place


def test_history_keeps_the_latest_entries(book, created):
    payment = created
    for attempt in range(payments.HISTORY_ENTRIES_MAX + 8):
        payment = book.transition(payment, payments.FAILED, error=f"attempt {attempt}")
    assert len(payment["history"]) == payments.HISTORY_ENTRIES_MAX
    assert payment["history"][-1]["at"] == payment["updated_at"]
    assert payment["history"][0]["state"] == payments.FAILED  # the oldest (awaiting_payment) fell off


def test_record_submitted_keeps_the_chosen_option_and_the_transaction(store, book, created):
    changed = submit(book, created, "0x" + "ee" * 32)
    assert (changed["state"], changed["chosen"], changed["buyer"], changed["error"]) == (
        payments.SUBMITTED, "tea", "pay1buyer", None)
    assert store.payment_by_tx("0x" + "ee" * 32) == changed


def test_state_change_queues_one_webhook_delivery(store, book, merchant, created):
    woken = []
    book.on_delivery_queued = lambda: woken.append(True)
    paid = book.follow_order(submit(book, created), "created", ORDER_ID, 7)
    by_event = {delivery["event"]: delivery for delivery in deliveries(store, merchant)}
    assert sorted(by_event) == ["payment.paid", "payment.submitted"] and woken == [True, True]
    delivery = by_event["payment.paid"]
    assert (delivery["state"], delivery["attempts"], delivery["payment_id"]) == ("pending", 0, created["id"])
    body = json.loads(delivery["body"])
    assert (body["id"], body["type"]) == (delivery["id"], "payment.paid")
    assert (body["data"]["state"], body["data"]["order_id"], body["data"]["height"]) == (payments.PAID, ORDER_ID, 7)
    assert body["data"]["total"] == paid["total"]
    due = store.due_deliveries(int(time.time() * 1e6), 10)
    assert sorted(delivery_id for _, delivery_id in due) == sorted(d["id"] for d in deliveries(store, merchant))


def test_no_delivery_for_a_merchant_without_webhook(store):
    merchant = make_merchant(webhook_url=None)
    book = make_book(store, merchant)
    woken = []
    book.on_delivery_queued = lambda: woken.append(True)
    payment = new_payment(merchant)
    create(book, payment)
    book.transition(payment, payments.CANCELED)
    assert deliveries(store, merchant) == [] and woken == []
    assert store.due_deliveries(int(time.time() * 1e6), 10) == []


def test_no_delivery_for_a_merchant_not_in_the_config(store, merchant):
    book = make_book(store)
    payment = new_payment(merchant)
    create(book, payment)
    book.transition(payment, payments.CANCELED)
    assert deliveries(store, merchant) == []


def test_no_delivery_when_the_state_does_not_change(store, book, merchant, created):
    failed = book.transition(created, payments.FAILED, error="first")
    woken = []
    book.on_delivery_queued = lambda: woken.append(True)
    again = book.transition(failed, payments.FAILED, error="second")
    assert again["error"] == "second" and woken == []
    assert [delivery["event"] for delivery in deliveries(store, merchant)] == ["payment.failed"]


# --- following the on-chain order ------------------------------------------------------------------

@pytest.mark.parametrize("order_state, state", sorted(payments.ORDER_STATES.items()))
def test_follow_order_maps_the_order_state(store, book, created, order_state, state):
    changed = book.follow_order(submit(book, created), order_state, ORDER_ID, 9)
    assert (changed["state"], changed["order_id"], changed["height"], changed["error"]) == (state, ORDER_ID, 9, None)
    assert store.payment_by_order(ORDER_ID) == changed == store.payment(created["id"])


def test_order_states_cover_the_contract():
    assert sorted(payments.ORDER_STATES) == sorted(["created", "shipped", "completed", "canceled", "refund_requested",
                                                    "refunded", "refund_rejected"])
    assert set(payments.ORDER_STATES.values()) <= set(payments.STATES)


def test_follow_order_ignores_an_unknown_order_state(store, book, created):
    assert book.follow_order(created, "exploded", ORDER_ID, 9) is None
    assert store.payment(created["id"]) == created


def test_duplicate_notification_changes_nothing(store, book, merchant, created):
    paid = book.follow_order(submit(book, created), "created", ORDER_ID, 7)
    assert book.follow_order(paid, "created", ORDER_ID, 8) is None
    assert store.payment(created["id"]) == paid
    assert sorted(delivery["event"] for delivery in deliveries(store, merchant)) == ["payment.paid",
                                                                                    "payment.submitted"]
    assert analytics.report(store, merchant.address_text, 1)["totals"]["paid"] == 1


def test_order_moves_through_its_life(book, created):
    payment = book.follow_order(submit(book, created), "created", ORDER_ID, 7)
    for order_state, state in [("shipped", payments.SHIPPED), ("refund_requested", payments.REFUND_REQUESTED),
                               ("refunded", payments.REFUNDED)]:
        payment = book.follow_order(payment, order_state, ORDER_ID, payment["height"] + 1)
        assert payment["state"] == state
    assert [entry["state"] for entry in payment["history"]] == [
        payments.AWAITING_PAYMENT, payments.SUBMITTED, payments.PAID, payments.SHIPPED, payments.REFUND_REQUESTED,
        payments.REFUNDED]
    assert payments.is_final(payment)


@pytest.mark.parametrize("final_order_state", ["completed", "canceled", "refunded", "refund_rejected"])
def test_final_payment_ignores_late_notifications_of_its_order(store, book, created, final_order_state):
    final = book.follow_order(submit(book, created), final_order_state, ORDER_ID, 7)
    assert payments.is_final(final)
    for order_state in payments.ORDER_STATES:
        assert book.follow_order(final, order_state, ORDER_ID, 8) is None
    assert store.payment(created["id"]) == final


def test_final_states():
    assert payments.FINAL_STATES == {payments.COMPLETED, payments.CANCELED, payments.REFUNDED,
                                     payments.REFUND_REJECTED, payments.EXPIRED}
    assert payments.PAYABLE_STATES == {payments.AWAITING_PAYMENT, payments.FAILED}


# --- the indexes the follower sweeps ---------------------------------------------------------------

def indexes(store: GatewayStore, payment: dict[str, Any]) -> tuple[bool, bool, bool]:
    """Is the payment (open, waiting for its block, in the expiry sweep once its time is up)?"""
    return (payment["id"] in store.open_payment_ids(), payment["id"] in store.submitted_payment_ids(100),
            payment["id"] in store.expired_payment_ids(payment["expires_at"], 100))


def test_new_payment_is_open_and_expires_at_its_time(store, created):
    assert indexes(store, created) == (True, False, True)
    assert created["id"] not in store.expired_payment_ids(created["expires_at"] - 0.001, 100)


def test_submitted_payment_waits_for_its_block(store, book, created):
    submitted = submit(book, created)
    assert indexes(store, submitted) == (True, True, True)  # kept in the sweep: it is payable again if it fails


def test_paid_payment_leaves_the_submitted_and_expiry_indexes(store, book, created):
    paid = book.follow_order(submit(book, created), "created", ORDER_ID, 7)
    assert indexes(store, paid) == (True, False, False)


def test_failed_payment_can_still_expire(store, book, created):
    failed = book.transition(submit(book, created), payments.FAILED, error="rejected")
    assert indexes(store, failed) == (True, False, True)
    expired = book.transition(failed, payments.EXPIRED)
    assert indexes(store, expired) == (False, False, False)


def test_canceled_before_payment_leaves_every_index(store, book, created):
    assert indexes(store, book.transition(created, payments.CANCELED)) == (False, False, False)


def test_completed_order_is_no_longer_open(store, book, created):
    payment = book.follow_order(submit(book, created), "created", ORDER_ID, 7)
    payment = book.follow_order(payment, "shipped", ORDER_ID, 8)
    assert indexes(store, payment) == (True, False, False)
    assert indexes(store, book.follow_order(payment, "completed", ORDER_ID, 9)) == (False, False, False)


def test_expired_payment_paid_late_is_open_again(store, book, created):
    dropped = book.transition(submit(book, created), payments.FAILED, error="the network dropped the transaction")
    expired = book.transition(dropped, payments.EXPIRED)
    paid = book.follow_order(expired, "created", ORDER_ID, 7)  # the dropped transaction was committed after all
    assert paid["state"] == payments.PAID
    assert paid["id"] in store.open_payment_ids()


# --- property: following any order history ---------------------------------------------------------

PROPERTY_MERCHANT = make_merchant()


@given(start=st.sampled_from([payments.AWAITING_PAYMENT, payments.SUBMITTED, payments.FAILED]),
       order_states=st.lists(st.sampled_from(sorted(payments.ORDER_STATES)), max_size=12))
def test_following_any_order_history_keeps_a_valid_state(start, order_states):
    store = GatewayStore.in_memory()
    book = make_book(store, PROPERTY_MERCHANT)
    payment = new_payment(PROPERTY_MERCHANT)
    create(book, payment)
    if start == payments.SUBMITTED:
        payment = submit(book, payment)
    elif start == payments.FAILED:
        payment = book.transition(payment, payments.FAILED, error="rejected")
    for height, order_state in enumerate(order_states):
        was_final = payments.is_final(payment)
        changed = book.follow_order(payment, order_state, ORDER_ID, height)
        if was_final:
            assert changed is None  # a final payment never changes for the same order
        payment = changed or payment
        assert store.payment(payment["id"]) == payment
        assert payment["state"] in payments.STATES
        assert (payment["id"] in store.open_payment_ids()) == (not payments.is_final(payment))
        assert payment["id"] not in store.submitted_payment_ids(100) or payment["state"] == payments.SUBMITTED
