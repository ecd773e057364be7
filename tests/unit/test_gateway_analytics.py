"""Merchant analytics (gateway/analytics.py): daily figures kept as payments move, the report over several days,
rates, top products, volume per asset and the CSV export."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from gateway import analytics, payments
from gateway.store import GatewayStore, sales_key
from tests.unit.test_gateway_payments import make_merchant, new_payment

DAY_S = 86_400
DAY_0 = 1_800_000_000 - 1_800_000_000 % DAY_S + 3600
"""01:00 UTC on some day: `day(n, hour)` stays within day n for hours 0 to 22."""
MERCHANT = make_merchant()


def day(number: int, hour: int = 0) -> float:
    return DAY_0 + number * DAY_S + hour * 3600


class Shop:
    """A merchant's payments moved through their states at chosen times, their figures written as the book does."""

    def __init__(self, store: GatewayStore, merchant: str = MERCHANT.address_text) -> None:
        self.store = store
        self.merchant = merchant

    def create(self, at: float, **fields: Any) -> dict[str, Any]:
        payment = dict(new_payment(MERCHANT, at, **fields), merchant=self.merchant)
        pending: dict = {}
        analytics.record_created(self.store, payment, at, pending)
        self.store.write(list(pending.items()))
        return payment

    def move(self, payment: dict[str, Any], state: str, at: float) -> dict[str, Any]:
        changed = dict(payment, state=state)
        pending: dict = {}
        analytics.record_transition(self.store, changed, payment["state"], at, pending)
        self.store.write(list(pending.items()))
        return changed

    def sale(self, at: float, **fields: Any) -> dict[str, Any]:
        """A payment created and paid at `at`."""
        return self.move(self.move(self.create(at, **fields), payments.SUBMITTED, at), payments.PAID, at)

    def report(self, days: int, now: float) -> dict[str, Any]:
        return analytics.report(self.store, self.merchant, days, now=now)


@pytest.fixture(params=["memory", "leveldb"])
def shop(request, tmp_path):
    store = GatewayStore.in_memory() if request.param == "memory" else GatewayStore.open(tmp_path / "db")
    yield Shop(store)
    store.close()


@pytest.fixture
def three_days(shop):
    """Day 0: four checkouts, three paid (two CNY, one USD). Day 1: one paid order canceled, one unpaid checkout
    expires. Day 2: a shipped order refunded, a new sale."""
    tea = shop.sale(day(0, 1), product_id="tea", unit_price=250, quantity=2)
    coffee = shop.sale(day(0, 2), product_id="coffee", unit_price=400, quantity=1)
    shop.sale(day(0, 3), product_id="cake", currency="USD", unit_price=300, quantity=3)
    unpaid = shop.create(day(0, 4))
    shop.move(coffee, payments.CANCELED, day(1, 1))
    shop.move(unpaid, payments.EXPIRED, day(1, 2))
    shipped = shop.move(tea, payments.SHIPPED, day(1, 3))
    refund_requested = shop.move(shipped, payments.REFUND_REQUESTED, day(2, 1))
    shop.move(refund_requested, payments.REFUNDED, day(2, 2))
    shop.sale(day(2, 3), product_id="tea", unit_price=250, quantity=1)
    return shop


def test_report_over_several_days(three_days):
    report = three_days.report(3, now=day(2, 20))
    assert (report["from"], report["to"], report["days"]) == (analytics.utc_day(day(0)), analytics.utc_day(day(2)), 3)
    counts = [(d["day"], d["created"], d["paid"], d["canceled"], d["refunded"], d["expired"]) for d in report["daily"]]
    assert counts == [(analytics.utc_day(day(0)), 4, 3, 0, 0, 0), (analytics.utc_day(day(1)), 0, 0, 1, 0, 1),
                      (analytics.utc_day(day(2)), 1, 1, 0, 1, 0)]
    assert report["totals"] == {"created": 5, "paid": 4, "canceled": 1, "refunded": 1, "expired": 1}
    assert [d["volume"] for d in report["daily"]] == [{"CNY": 900, "USD": 900}, {}, {"CNY": 250}]
    assert [d["refunded_volume"] for d in report["daily"]] == [{}, {}, {"CNY": 500}]


def test_volume_per_asset(three_days):
    report = three_days.report(3, now=day(2, 20))
    assert report["volume"] == {"CNY": 1150, "USD": 900} and report["refunded_volume"] == {"CNY": 500}


def test_cancel_and_refund_rates(three_days):
    report = three_days.report(3, now=day(2, 20))
    assert (report["cancel_rate"], report["refund_rate"]) == (0.25, 0.25)


def test_rates_are_zero_without_sales(shop):
    shop.create(day(0))
    report = shop.report(7, now=day(0))
    assert (report["cancel_rate"], report["refund_rate"], report["totals"]["paid"]) == (0.0, 0.0, 0)


def test_rates_are_rounded(shop):
    sales = [shop.sale(day(0, hour)) for hour in range(3)]
    shop.move(sales[0], payments.CANCELED, day(0, 5))
    assert shop.report(1, now=day(0, 6))["cancel_rate"] == 0.3333


def test_cancel_rate_counts_only_canceled_sales(shop):
    paid = shop.sale(day(0, 1))
    shop.move(shop.create(day(0, 2)), payments.CANCELED, day(0, 3))  # the merchant withdrew an unpaid checkout
    shop.move(shop.create(day(0, 4)), payments.CANCELED, day(0, 5))
    shop.move(paid, payments.CANCELED, day(0, 6))
    assert shop.report(1, now=day(0, 7))["cancel_rate"] == 1.0  # actual: 3.0


def test_report_window_ends_today_and_leaves_older_days_out(three_days):
    report = three_days.report(1, now=day(2, 20))
    assert report["from"] == report["to"] == analytics.utc_day(day(2))
    assert report["totals"] == {"created": 1, "paid": 1, "canceled": 0, "refunded": 1, "expired": 0}
    later = three_days.report(2, now=day(4))
    assert later["totals"]["paid"] == 0 and [d["day"] for d in later["daily"]] == [analytics.utc_day(day(3)),
                                                                                  analytics.utc_day(day(4))]


def test_days_without_activity_are_zero_rows(shop):
    shop.sale(day(0))
    report = shop.report(30, now=day(10))
    assert len(report["daily"]) == 30 and report["daily"][-1]["day"] == analytics.utc_day(day(10))
    assert sum(d["paid"] for d in report["daily"]) == 1
    assert all(d["volume"] == {} for d in report["daily"] if d["paid"] == 0)


def test_other_merchants_figures_are_not_mixed_in(three_days):
    other = Shop(three_days.store, make_merchant("other-merchant").address_text)
    other.sale(day(2), product_id="tea", unit_price=99_999)
    assert three_days.report(3, now=day(2, 20))["volume"] == {"CNY": 1150, "USD": 900}
    assert other.report(3, now=day(2, 20))["volume"] == {"CNY": 99_999 * 2}


def test_a_sale_counts_once(shop):
    """Later moves of a paid order (shipped, completed, refund rejected, a repeated paid) add no sale."""
    payment = shop.sale(day(0))
    payment = shop.move(payment, payments.PAID, day(0, 1))
    payment = shop.move(payment, payments.SHIPPED, day(0, 2))
    payment = shop.move(payment, payments.REFUND_REQUESTED, day(0, 3))
    shop.move(payment, payments.REFUND_REJECTED, day(0, 4))
    report = shop.report(1, now=day(0, 5))
    assert report["totals"] == {"created": 1, "paid": 1, "canceled": 0, "refunded": 0, "expired": 0}
    assert report["volume"] == {"CNY": 500}


def test_sale_counts_on_the_day_it_was_paid(shop):
    created = shop.create(day(0, 22))
    shop.move(shop.move(created, payments.SUBMITTED, day(0, 22)), payments.PAID, day(1, 1))
    daily = shop.report(2, now=day(1, 2))["daily"]
    assert [(d["created"], d["paid"]) for d in daily] == [(1, 0), (0, 1)]


def test_failed_then_paid_is_a_sale(shop):
    created = shop.create(day(0))
    shop.move(shop.move(created, payments.FAILED, day(0)), payments.PAID, day(0, 1))
    assert shop.report(1, now=day(0, 2))["totals"]["paid"] == 1


# --- top products ----------------------------------------------------------------------------------

def test_top_products_by_quantity_then_name(shop):
    for product_id, quantity in [("tea", 2), ("cake", 5), ("coffee", 2), ("bun", 2), ("tea", 1)]:
        shop.sale(day(0), product_id=product_id, quantity=quantity, unit_price=100)
    shop.sale(day(1), product_id="coffee", quantity=1, unit_price=100, currency="USD")
    top = shop.report(2, now=day(1))["top_products"]
    assert [(entry["product_id"], entry["quantity"]) for entry in top] == [
        ("cake", 5), ("coffee", 3), ("tea", 3), ("bun", 2)]
    assert top[1]["volume"] == {"CNY": 200, "USD": 100}


def test_top_products_are_limited(shop):
    for index in range(analytics.TOP_PRODUCTS + 5):
        shop.sale(day(0), product_id=f"p{index:02d}", quantity=index + 1)
    top = shop.report(1, now=day(0))["top_products"]
    assert len(top) == analytics.TOP_PRODUCTS
    assert top[0]["product_id"] == f"p{analytics.TOP_PRODUCTS + 4:02d}" and top[-1]["product_id"] == "p05"


def test_chosen_option_is_the_product_sold(shop):
    payment = dict(shop.create(day(0), product_id="tea"), chosen="tea-usd", currency="USD", total=700)
    shop.move(payment, payments.PAID, day(0))
    [entry] = shop.report(1, now=day(0))["top_products"]
    assert (entry["product_id"], entry["volume"]) == ("tea-usd", {"USD": 700})


def test_products_over_the_daily_limit_count_as_other(shop):
    full_day = {"created": 0, "paid": 0, "canceled": 0, "refunded": 0, "expired": 0, "volume": {},
                "refunded_volume": {}, "products": {f"p{index}": {"quantity": 1, "volume": {"CNY": 1}}
                                                    for index in range(analytics.PRODUCTS_PER_DAY_MAX)}}
    shop.store.write([(sales_key(shop.merchant, analytics.utc_day(day(0))), full_day)])
    shop.sale(day(0), product_id="new-one", quantity=7, unit_price=10)
    shop.sale(day(0), product_id="new-two", quantity=1, unit_price=10)
    shop.sale(day(0), product_id="p3", quantity=2, unit_price=10)
    products = shop.store.get(sales_key(shop.merchant, analytics.utc_day(day(0))))["products"]
    assert len(products) == analytics.PRODUCTS_PER_DAY_MAX + 1 and "new-one" not in products
    assert products["(other)"] == {"quantity": 8, "volume": {"CNY": 80}}
    assert products["p3"] == {"quantity": 3, "volume": {"CNY": 21}}
    assert shop.report(1, now=day(0))["top_products"][0]["product_id"] == "(other)"


# --- CSV -------------------------------------------------------------------------------------------

def test_csv_has_a_row_per_day_and_columns_per_asset(three_days):
    report = three_days.report(3, now=day(2, 20))
    rows = list(csv.reader(io.StringIO(analytics.report_csv(report))))
    assert rows[0] == ["day", "created", "paid", "canceled", "refunded", "expired", "volume_CNY", "volume_USD",
                       "refunded_CNY", "refunded_USD"]
    assert rows[1:] == [[analytics.utc_day(day(0)), "4", "3", "0", "0", "0", "900", "900", "0", "0"],
                        [analytics.utc_day(day(1)), "0", "0", "1", "0", "1", "0", "0", "0", "0"],
                        [analytics.utc_day(day(2)), "1", "1", "0", "1", "0", "250", "0", "500", "0"]]


def test_csv_without_sales_has_no_asset_columns(shop):
    rows = list(csv.reader(io.StringIO(analytics.report_csv(shop.report(2, now=day(0))))))
    assert rows == [["day", "created", "paid", "canceled", "refunded", "expired"],
                    [analytics.utc_day(day(-1)), "0", "0", "0", "0", "0"],
                    [analytics.utc_day(day(0)), "0", "0", "0", "0", "0"]]


# --- the days parameter ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, days", [(None, 30), ("1", 1), ("7", 7), ("366", 366), ("030", 30)])
def test_days_param(value, days):
    assert analytics.days_param(value) == days


@pytest.mark.parametrize("value", ["0", "367", "-1", "", "abc", "1.5", " 7", "7 ", "+7", "1e2", "99999999999999"])
def test_invalid_days_param(value):
    with pytest.raises(ValueError, match="days must be a whole number from 1 to 366"):
        analytics.days_param(value)


@pytest.mark.parametrize("value", ["²", "٣", "٣٠"])
def test_invalid_days_param_of_non_ascii_digits(value):
    with pytest.raises(ValueError, match="days must be a whole number from 1 to 366"):
        analytics.days_param(value)
