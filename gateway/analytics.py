"""Merchant analytics: sales per day, volume per asset, refund and cancel rates, top products, CSV export.

Figures are kept per merchant and UTC day, updated in the same write as the payment change
(payments.py), so a report reads at most one record per day instead of scanning payments:

    {"created": n, "paid": n, "canceled": n, "refunded": n, "expired": n,
     "volume": {asset: paid minor units}, "refunded_volume": {asset: minor units},
     "products": {product_id: {"quantity": n, "volume": {asset: minor units}}}}

A payment counts as a sale on the day it was paid; a cancel or refund counts on the day it happened.
Cancel and refund rates are over sales: a checkout withdrawn before anyone paid is not counted.
"""

from __future__ import annotations

import csv
import io
import re
import time
from typing import Any

from gateway.store import GatewayStore, Record, sales_key

REPORT_DAYS_MAX = 366
UNPAID_STATES = ("awaiting_payment", "submitted", "failed", "expired", "canceled")
"""States a payment can become paid from: the shopper's transaction may land after the checkout expired or was
withdrawn (it was already sent), and then the sale is real."""
TOP_PRODUCTS = 10
PRODUCTS_PER_DAY_MAX = 1000
"""Distinct products counted per merchant and day; sales of more products are counted under "(other)"."""


def utc_day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def _empty_day() -> Record:
    return {"created": 0, "paid": 0, "canceled": 0, "refunded": 0, "expired": 0, "volume": {},
            "refunded_volume": {}, "products": {}}


def _day(store: GatewayStore, merchant: str, day: str, pending: dict[bytes, Record]) -> Record:
    """The day's figures to update: from `pending` (changed earlier in the same write) or the store."""
    key = sales_key(merchant, day)
    if key not in pending:
        pending[key] = store.get(key) or _empty_day()
    return pending[key]


def record_created(store: GatewayStore, payment: Record, now: float, pending: dict[bytes, Record]) -> None:
    """Count a new checkout into `pending` (sales key -> figures, written by the caller)."""
    _day(store, payment["merchant"], utc_day(now), pending)["created"] += 1


def record_transition(store: GatewayStore, payment: Record, previous: str, now: float,
                      pending: dict[bytes, Record]) -> None:
    """Count `payment`'s move from `previous` to its state into `pending` (most moves count nothing)."""
    state = payment["state"]
    if state == previous or state not in ("paid", "canceled", "refunded", "expired"):
        return
    if state == "paid" and previous not in UNPAID_STATES:
        return
    if state == "canceled" and previous in UNPAID_STATES:
        return  # a checkout withdrawn before anyone paid is not a canceled sale
    figures = _day(store, payment["merchant"], utc_day(now), pending)
    figures[state] += 1
    asset, total = payment["currency"], payment["total"]
    if state == "paid":
        _add(figures["volume"], asset, total)
        products = figures["products"]
        product_id = payment["chosen"] or payment["product_id"]
        if product_id not in products and len(products) >= PRODUCTS_PER_DAY_MAX:
            product_id = "(other)"
        entry = products.setdefault(product_id, {"quantity": 0, "volume": {}})
        entry["quantity"] += payment["quantity"]
        _add(entry["volume"], asset, total)
    elif state == "refunded":
        _add(figures["refunded_volume"], asset, total)


def _add(amounts: dict[str, int], asset: str, amount: int) -> None:
    amounts[asset] = amounts.get(asset, 0) + amount


def report(store: GatewayStore, merchant: str, days: int, now: float | None = None) -> dict[str, Any]:
    """The figures of the last `days` days (today included)."""
    now = time.time() if now is None else now
    first = utc_day(now - (days - 1) * 86400)
    by_day = dict(store.sales_days(merchant, first, utc_day(now)))
    daily = []
    totals = _empty_day()
    for offset in range(days - 1, -1, -1):
        day = utc_day(now - offset * 86400)
        figures = by_day.get(day, _empty_day())
        daily.append({"day": day, **{k: figures[k] for k in ("created", "paid", "canceled", "refunded", "expired")},
                      "volume": figures["volume"], "refunded_volume": figures["refunded_volume"]})
        _merge(totals, figures)
    paid = totals["paid"]
    top = sorted(totals["products"].items(), key=lambda item: (-item[1]["quantity"], item[0]))[:TOP_PRODUCTS]
    return {"merchant": merchant, "days": days, "from": first, "to": utc_day(now), "daily": daily,
            "totals": {k: totals[k] for k in ("created", "paid", "canceled", "refunded", "expired")},
            "volume": totals["volume"], "refunded_volume": totals["refunded_volume"],
            "cancel_rate": round(totals["canceled"] / paid, 4) if paid else 0.0,
            "refund_rate": round(totals["refunded"] / paid, 4) if paid else 0.0,
            "top_products": [{"product_id": pid, **entry} for pid, entry in top]}


def _merge(totals: Record, figures: Record) -> None:
    for key in ("created", "paid", "canceled", "refunded", "expired"):
        totals[key] += figures[key]
    for key in ("volume", "refunded_volume"):
        for asset, amount in figures[key].items():
            _add(totals[key], asset, amount)
    for product_id, entry in figures["products"].items():
        target = totals["products"].setdefault(product_id, {"quantity": 0, "volume": {}})
        target["quantity"] += entry["quantity"]
        for asset, amount in entry["volume"].items():
            _add(target["volume"], asset, amount)


def report_csv(report_data: dict[str, Any]) -> str:
    """One row per day; one volume and one refunded-volume column per asset seen in the period (minor units)."""
    assets = sorted(set(report_data["volume"]) | set(report_data["refunded_volume"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["day", "created", "paid", "canceled", "refunded", "expired"]
                    + [f"volume_{asset}" for asset in assets] + [f"refunded_{asset}" for asset in assets])
    for day in report_data["daily"]:
        writer.writerow([day["day"], day["created"], day["paid"], day["canceled"], day["refunded"], day["expired"]]
                        + [day["volume"].get(asset, 0) for asset in assets]
                        + [day["refunded_volume"].get(asset, 0) for asset in assets])
    return out.getvalue()


def days_param(value: str | None) -> int:
    if value is None:
        return 30
    if not re.fullmatch(r"[0-9]{1,3}", value) or not 1 <= int(value) <= REPORT_DAYS_MAX:
        raise ValueError(f"days must be a whole number from 1 to {REPORT_DAYS_MAX}")
    return int(value)
