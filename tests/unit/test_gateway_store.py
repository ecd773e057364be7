"""The gateway's records (gateway/store.py) on both adapters: a merchant's payments newest first in pages, the
webhook queue in due order, sales figures by day range, and records that survive a reopen."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gateway import analytics, payments, webhooks
from gateway.store import GatewayStore, sales_key
from tests.unit.test_gateway_payments import create, make_book, make_merchant, new_payment

MERCHANT = make_merchant()
OTHER = make_merchant("other-merchant")
T0 = 1_800_000_000.0


@pytest.fixture(params=["memory", "leveldb"])
def store(request, tmp_path):
    opened = GatewayStore.in_memory() if request.param == "memory" else GatewayStore.open(tmp_path / "db")
    yield opened
    opened.close()


def create_payments(store: GatewayStore, count: int, merchant=MERCHANT, start: float = T0) -> list[str]:
    """`count` payments created one second apart; their ids, oldest first."""
    book = make_book(store, MERCHANT, OTHER)
    ids = []
    for index in range(count):
        payment = new_payment(merchant, start + index)
        create(book, payment)
        ids.append(payment["id"])
    return ids


def pages(store: GatewayStore, merchant: str, size: int) -> list[list[str]]:
    """Page through the merchant's payments as the API does: `size` a page, the last cursor starts the next."""
    found, cursor = [], None
    while True:
        page = list(itertools.islice(store.merchant_payments(merchant, cursor), size))
        if not page:
            return found
        found.append([payment["id"] for _, payment in page])
        cursor = page[-1][0]


# --- a merchant's payments -------------------------------------------------------------------------

def test_merchant_payments_newest_first(store):
    ids = create_payments(store, 5)
    create_payments(store, 3, OTHER)
    assert [payment["id"] for _, payment in store.merchant_payments(MERCHANT.address_text, None)] == ids[::-1]


@pytest.mark.parametrize("size", [1, 3, 4, 10, 11])
def test_pages_neither_overlap_nor_skip(store, size):
    ids = create_payments(store, 10)
    create_payments(store, 4, OTHER, start=T0 + 0.5)
    found = pages(store, MERCHANT.address_text, size)
    assert list(itertools.chain(*found)) == ids[::-1]
    assert [len(page) for page in found[:-1]] == [size] * (len(found) - 1)


def test_pages_of_payments_created_in_the_same_microsecond(store):
    book = make_book(store, MERCHANT)
    ids = []
    for _ in range(6):
        payment = new_payment(MERCHANT, T0)
        create(book, payment)
        ids.append(payment["id"])
    found = list(itertools.chain(*pages(store, MERCHANT.address_text, 4)))
    assert sorted(found) == sorted(ids) and len(found) == 6


def test_page_after_the_last_payment_is_empty(store):
    create_payments(store, 2)
    [*_, (last_cursor, _)] = store.merchant_payments(MERCHANT.address_text, None)
    assert list(store.merchant_payments(MERCHANT.address_text, last_cursor)) == []
    assert list(store.merchant_payments(OTHER.address_text, None)) == []


def test_payment_lookups(store):
    [payment_id] = create_payments(store, 1)
    assert store.payment(payment_id)["id"] == payment_id
    assert store.payment("pm_unknown") is None
    assert store.payment_by_tx("0x00") is None and store.payment_by_order("0x00") is None


# --- the sweeps' indexes ---------------------------------------------------------------------------

def test_expired_payment_ids_in_expiry_order_up_to_now(store):
    book = make_book(store, MERCHANT)
    ttls = [300, 100, 200, 900]
    created = []
    for ttl in ttls:
        payment = new_payment(MERCHANT, T0, ttl_s=ttl)
        create(book, payment)
        created.append(payment)
    by_ttl = {ttl: payment["id"] for ttl, payment in zip(ttls, created)}
    assert store.expired_payment_ids(T0 + 99, 10) == []
    assert store.expired_payment_ids(T0 + 100, 10) == [by_ttl[100]]
    assert store.expired_payment_ids(T0 + 300, 10) == [by_ttl[100], by_ttl[200], by_ttl[300]]
    assert store.expired_payment_ids(T0 + 10_000, 2) == [by_ttl[100], by_ttl[200]]


def test_submitted_payment_ids_are_limited(store):
    book = make_book(store, MERCHANT)
    for index, payment_id in enumerate(create_payments(store, 5)):
        payment = store.payment(payment_id)
        book.record_submitted(payment, f"0x{index:064x}", "00", payment["options"][0], "pay1buyer")
    assert len(store.submitted_payment_ids(3)) == 3 and len(store.submitted_payment_ids(100)) == 5


# --- webhook deliveries ----------------------------------------------------------------------------

def queue(store: GatewayStore, at: float) -> str:
    """A delivery queued at `at`; its id."""
    puts = webhooks.new_delivery(new_payment(MERCHANT, at), "payment.paid", at)
    store.write(puts)
    return puts[0][1]["id"]


def test_due_deliveries_earliest_first_up_to_now(store):
    later, earliest, middle = queue(store, T0 + 20), queue(store, T0), queue(store, T0 + 10)
    assert store.due_deliveries(int(T0 * 1e6) - 1, 10) == []
    assert [delivery_id for _, delivery_id in store.due_deliveries(int(T0 * 1e6), 10)] == [earliest]
    assert [delivery_id for _, delivery_id in store.due_deliveries(int((T0 + 20) * 1e6), 10)] == [
        earliest, middle, later]


def test_due_deliveries_are_limited(store):
    ids = [queue(store, T0 + index) for index in range(5)]
    assert [delivery_id for _, delivery_id in store.due_deliveries(int((T0 + 100) * 1e6), 2)] == ids[:2]


def test_due_key_removes_the_entry(store):
    delivery_id = queue(store, T0)
    [(key, found)] = store.due_deliveries(int(T0 * 1e6), 10)
    store.write([], [key])
    assert found == delivery_id and store.due_deliveries(int(T0 * 1e6), 10) == []
    assert store.delivery(delivery_id)["state"] == "pending"


def test_merchant_deliveries_newest_first(store):
    ids = [queue(store, T0 + index) for index in range(3)]
    assert [record["id"] for _, record in store.merchant_deliveries(MERCHANT.address_text, None)] == ids[::-1]
    [(cursor, _), *_] = store.merchant_deliveries(MERCHANT.address_text, None)
    assert [record["id"] for _, record in store.merchant_deliveries(MERCHANT.address_text, cursor)] == ids[1::-1]


# --- sales figures ---------------------------------------------------------------------------------

def test_sales_days_range_is_inclusive(store):
    days = ["2027-01-30", "2027-01-31", "2027-02-01", "2027-02-02"]
    store.write([(sales_key(MERCHANT.address_text, day), {"created": index}) for index, day in enumerate(days)]
                + [(sales_key(OTHER.address_text, "2027-01-31"), {"created": 99})])
    found = list(store.sales_days(MERCHANT.address_text, "2027-01-31", "2027-02-01"))
    assert found == [("2027-01-31", {"created": 1}), ("2027-02-01", {"created": 2})]
    assert [day for day, _ in store.sales_days(MERCHANT.address_text, "2027-01-01", "2027-12-31")] == days
    assert list(store.sales_days(MERCHANT.address_text, "2027-02-03", "2027-03-01")) == []
    assert list(store.sales_days(MERCHANT.address_text, "2027-02-02", "2027-02-02")) == [("2027-02-02",
                                                                                         {"created": 3})]


# --- durability ------------------------------------------------------------------------------------

def test_records_survive_a_reopen(tmp_path):
    store = GatewayStore.open(tmp_path / "db")
    book = make_book(store, MERCHANT)
    payment = new_payment(MERCHANT, T0)
    create(book, payment, ("order-1", "hash"))
    paid = book.follow_order(payment, "created", "0x01", 5)
    store.close()
    reopened = GatewayStore.open(tmp_path / "db")
    try:
        assert reopened.payment(payment["id"]) == paid == reopened.payment_by_order("0x01")
        assert paid["state"] == payments.PAID and list(reopened.open_payment_ids()) == [payment["id"]]
        assert make_book(reopened, MERCHANT).find_idempotent(MERCHANT.address_text, "order-1", "hash") == paid
    finally:
        reopened.close()


# --- group commit ----------------------------------------------------------------------------------

class BrokenDisk:
    """A key-value store whose writes fail (a full or failing disk)."""

    def get(self, key: bytes) -> bytes | None:
        return None

    def write(self, puts, deletes=()) -> None:
        raise OSError("No space left on device")

    def iterate(self, prefix: bytes, reverse: bool = False, stop: bytes | None = None):
        return iter(())

    def close(self) -> None:
        pass


def test_payments_created_at_once_share_one_synced_batch(store):
    book = make_book(store, MERCHANT)
    created = [new_payment(MERCHANT, T0 + index) for index in range(5)]

    async def create_all():
        await asyncio.gather(*(book.create(payment, (f"key-{index}", "hash")) for index, payment in enumerate(created)))

    asyncio.run(create_all())
    assert (store.group_commits, store.committed_writes) == (1, 5)
    assert [payment["id"] for _, payment in store.merchant_payments(MERCHANT.address_text, None)] == [
        payment["id"] for payment in created[::-1]]
    assert analytics.report(store, MERCHANT.address_text, 1, now=T0)["totals"]["created"] == 5  # none lost


def test_waiting_writes_are_read_before_they_reach_the_disk(store):
    async def scenario():
        waiting = asyncio.ensure_future(store.commit([(b"p/pm_1", {"state": "awaiting_payment"})]))
        await asyncio.sleep(0)  # the commit has queued its writes and waits for the batch
        assert store.payment("pm_1") == {"state": "awaiting_payment"} and store.kv.get(b"p/pm_1") is None
        await waiting
        assert store.kv.get(b"p/pm_1") is not None

    asyncio.run(scenario())


def test_a_direct_write_lands_after_the_waiting_batch(store):
    async def scenario():
        waiting = asyncio.ensure_future(store.commit([(b"p/pm_1", {"state": "awaiting_payment"})]))
        await asyncio.sleep(0)
        store.write([(b"p/pm_1", {"state": "canceled"})])
        await waiting

    asyncio.run(scenario())
    assert store.payment("pm_1") == {"state": "canceled"}


def test_a_failed_batch_fails_every_request_in_it():
    store = GatewayStore(BrokenDisk())

    async def scenario():
        return await asyncio.gather(store.commit([(b"p/pm_1", "a")]), store.commit([(b"p/pm_2", "b")]),
                                    return_exceptions=True)

    assert [type(outcome) for outcome in asyncio.run(scenario())] == [OSError, OSError]
    assert store.group_commits == 0 and store.get(b"p/pm_1") is None  # nothing reads as written
