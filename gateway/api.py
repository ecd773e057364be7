"""The merchant REST API (`/v1/…`, documented in `/openapi.json`): create, read, list, cancel, refund, ship.

A payment is created off chain (the shopper pays later, on the checkout page), so creating one
is fast: checks, a catalog lookup (cached for a few seconds) and one write. With an
`Idempotency-Key` header, the same key and body return the first result again (status 200 and
`Idempotent-Replayed: true`); the same key with another body is refused (422); the same key
while the first request is still running is refused (409). Cancel, refund and ship of a paid
payment are transactions the gateway signs with the merchant's delegated key; they answer 202
with the transaction hash, and the payment changes when the block commits.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from aiohttp import web

from gateway import analytics, payments, webhooks
from gateway.chain import ChainView
from gateway.config import Merchant
from gateway.nodes import ChainError, NodeUnavailable
from gateway.payments import PaymentError
from gateway.services import Services
from node import crypto

PRODUCT_ID_CHARS_MAX = 32
QUANTITY_MAX = 1_000_000
EXPIRES_IN_S_MIN = 5
PAGE_ITEMS_MAX = 100
STATE_FILTER_SCAN_MAX = 1_000
"""Payments looked at for one filtered page; a page may come back short (with a cursor) past this."""
TEXT_CHARS_MAX = 128
IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,128}$")
CREATE_FIELDS = frozenset({"product_id", "quantity", "alternatives", "buyer", "region", "expires_in_s", "metadata"})

routes = web.RouteTableDef()


def services_of(request: web.Request) -> Services:
    return request.app["services"]


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise PaymentError(415, "unsupported_media_type", "send the request body as application/json")
    try:
        body = await request.json()
    except ValueError as error:
        raise PaymentError(400, "invalid_json", f"the body is not valid JSON: {error}") from error
    except RecursionError as error:
        raise PaymentError(400, "invalid_json", "the body is nested too deeply") from error
    if not isinstance(body, dict):
        raise PaymentError(400, "invalid_json", "the body must be a JSON object")
    return body


def invalid(message: str) -> PaymentError:
    return PaymentError(400, "invalid_request", message)


# --- create ------------------------------------------------------------------------------------

@routes.post("/v1/payments")
async def create_payment(request: web.Request) -> web.Response:
    services = services_of(request)
    merchant = services.guard.merchant_for(request)
    body = await json_body(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY_PATTERN.match(key):
        raise invalid("Idempotency-Key must be 1 to 128 printable ASCII characters")
    if key is None:
        payment = await _new_payment(services, merchant, body, None)
        return web.json_response(payments.public_view(payment, services.config.public_url), status=201)
    body_hash = payments.request_hash(body)
    earlier = services.book.find_idempotent(merchant.address_text, key, body_hash)
    if earlier is not None:
        return web.json_response(payments.public_view(earlier, services.config.public_url),
                                 headers={"Idempotent-Replayed": "true"})
    in_flight = request.app["idempotency_in_flight"]
    if (merchant.address, key) in in_flight:
        raise PaymentError(409, "idempotency_key_in_use", "a request with this Idempotency-Key is still running")
    in_flight.add((merchant.address, key))
    try:
        payment = await _new_payment(services, merchant, body, (key, body_hash))
    finally:
        in_flight.discard((merchant.address, key))
    return web.json_response(payments.public_view(payment, services.config.public_url), status=201)


async def _new_payment(services: Services, merchant: Merchant, body: dict[str, Any],
                       idempotency: tuple[str, str] | None) -> dict[str, Any]:
    unknown = set(body) - CREATE_FIELDS
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    product_ids = [_product_id(body.get("product_id"), "product_id")]
    alternatives = body.get("alternatives", [])
    if not isinstance(alternatives, list) or len(alternatives) > payments.ALTERNATIVES_MAX:
        raise invalid(f"alternatives: a list of at most {payments.ALTERNATIVES_MAX} product ids")
    product_ids += [_product_id(item, "alternatives[]") for item in alternatives]
    quantity = body.get("quantity", 1)
    if type(quantity) is not int or not 1 <= quantity <= QUANTITY_MAX:
        raise invalid(f"quantity: a whole number from 1 to {QUANTITY_MAX}")
    region = body.get("region", services.config.default_region)
    if not isinstance(region, str) or region not in services.chains:
        raise invalid(f"region: one of {', '.join(sorted(services.chains))}")
    buyer = body.get("buyer")
    if buyer is not None:
        try:
            buyer = crypto.format_address(crypto.parse_address(buyer))
        except (crypto.InvalidAddress, TypeError) as error:
            raise invalid(f"buyer: {error}") from error
    ttl_s = body.get("expires_in_s", services.config.checkout_ttl_s)
    if type(ttl_s) is not int or not EXPIRES_IN_S_MIN <= ttl_s <= services.config.checkout_ttl_s:
        raise invalid(f"expires_in_s: a whole number from {EXPIRES_IN_S_MIN} to {services.config.checkout_ttl_s}")
    metadata = _metadata(body.get("metadata", {}))
    options = await _options(services.chain(region), merchant, product_ids, quantity)
    now = time.time()
    first = options[0]
    payment = {"id": payments.new_payment_id(), "merchant": merchant.address_text, "merchant_name": merchant.name,
               "region": region, "chain_id": services.config.region(region).chain_id,
               "state": payments.AWAITING_PAYMENT, "product_id": product_ids[0], "quantity": quantity,
               "options": options, "chosen": None, "currency": first["currency"], "unit_price": first["unit_price"],
               "total": first["total"], "buyer": buyer, "metadata": metadata, "created_at": now, "updated_at": now,
               "expires_at": now + ttl_s, "tx_hash": None, "order_id": None, "height": None, "error": None,
               "history": [{"state": payments.AWAITING_PAYMENT, "at": now, "height": None}]}
    if idempotency is not None:
        # a concurrent request with this key may have finished while we read the catalog
        earlier = services.book.find_idempotent(merchant.address_text, idempotency[0], idempotency[1])
        if earlier is not None:
            return earlier
    await services.book.create(payment, idempotency)
    return payment


def _product_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= PRODUCT_ID_CHARS_MAX:
        raise invalid(f"{where}: a product id of 1 to {PRODUCT_ID_CHARS_MAX} characters")
    return value


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > payments.METADATA_ITEMS_MAX:
        raise invalid(f"metadata: an object of at most {payments.METADATA_ITEMS_MAX} text values")
    for name, item in value.items():
        if not isinstance(item, str) or len(name) > 40 or len(item) > payments.METADATA_TEXT_MAX:
            raise invalid(f"metadata.{name[:40]}: text of at most {payments.METADATA_TEXT_MAX} characters")
    return value


async def _options(chain: ChainView, merchant: Merchant, product_ids: list[str], quantity: int) -> list[dict]:
    """One checkout option per product id (the same item priced in different assets)."""
    options = []
    for product_id in product_ids:
        try:
            entry = await chain.catalog_entry(merchant.address_text, product_id)
        except NodeUnavailable as error:
            raise PaymentError(503, "chain_unavailable", "no node of this network answers; try again shortly") \
                from error
        if entry is None or not entry.get("active"):
            raise PaymentError(422, "unknown_product", f"product {product_id!r} is not in your on-chain catalog")
        if quantity > entry["per_order_limit"]:
            raise PaymentError(422, "quantity_over_limit",
                               f"at most {entry['per_order_limit']} of {product_id!r} per order")
        if any(option["currency"] == entry["currency"] for option in options):
            raise invalid(f"alternatives: two options are priced in {entry['currency']}; one per asset")
        decimals = (await chain.params()).decimals.get(entry["currency"], 0)
        options.append({"product_id": product_id, "name": entry["name"], "currency": entry["currency"],
                        "decimals": decimals, "unit_price": entry["price"], "quantity": quantity,
                        "total": entry["price"] * quantity})
    return options


# --- read and list -----------------------------------------------------------------------------

def _own_payment(services: Services, merchant: Merchant, payment_id: str) -> dict[str, Any]:
    payment = services.store.payment(payment_id)
    if payment is None or payment["merchant"] != merchant.address_text:
        raise PaymentError(404, "not_found", f"no payment {payment_id}")
    return payment


@routes.get("/v1/payments/{payment_id}")
async def get_payment(request: web.Request) -> web.Response:
    services = services_of(request)
    merchant = services.guard.merchant_for(request)
    payment = _own_payment(services, merchant, request.match_info["payment_id"])
    return web.json_response(payments.public_view(payment, services.config.public_url))


def page_params(request: web.Request) -> tuple[int, str | None]:
    limit_text = request.query.get("limit", "20")
    if not re.fullmatch(r"[0-9]{1,3}", limit_text) or not 1 <= int(limit_text) <= PAGE_ITEMS_MAX:
        raise invalid(f"limit: a whole number from 1 to {PAGE_ITEMS_MAX}")
    cursor = request.query.get("cursor")
    if cursor is not None and not re.fullmatch(r"\d{20}/[A-Za-z0-9_-]{1,64}", cursor):
        raise invalid("cursor: use the next_cursor of the previous page")
    return int(limit_text), cursor


@routes.get("/v1/payments")
async def list_payments(request: web.Request) -> web.Response:
    services = services_of(request)
    merchant = services.guard.merchant_for(request)
    limit, cursor = page_params(request)
    state = request.query.get("state")
    if state is not None and state not in payments.STATES:
        raise invalid(f"state: one of {', '.join(payments.STATES)}")
    return _page_response(services.store.merchant_payments(merchant.address_text, cursor), limit,
                          lambda payment: state is None or payment["state"] == state,
                          lambda payment: payments.public_view(payment, services.config.public_url))


def _page_response(records, limit: int, keep: Callable[[dict], bool], view: Callable[[dict], Any]) -> web.Response:
    """One page of `records` ((cursor, record) pairs, newest first) that `keep` selects, with the next cursor;
    at most STATE_FILTER_SCAN_MAX records are looked at for one page."""
    items, next_cursor = [], None
    for scanned, (position, record) in enumerate(records):
        if keep(record):
            items.append(view(record))
        if len(items) == limit or scanned + 1 >= STATE_FILTER_SCAN_MAX:
            next_cursor = position
            break
    return web.json_response({"items": items, "next_cursor": next_cursor})


# --- changes -----------------------------------------------------------------------------------

def _signer(services: Services, merchant: Merchant):
    signer = services.merchant_signers.get(merchant.address_text)
    if signer is None:
        raise PaymentError(409, "merchant_key_not_delegated",
                           "this merchant did not give the gateway its signing key (signing_key_file); "
                           "send the order transaction with `paywallet` instead")
    return signer


async def _send_order_call(services: Services, merchant: Merchant, payment: dict[str, Any], function: str,
                           args: tuple) -> web.Response:
    signer = _signer(services, merchant)
    try:
        tx_hash = await signer.call_orders(services.chain(payment["region"]), function, args, payment["currency"])
    except ChainError as error:
        raise PaymentError(422, "chain_rejected", f"the chain refused the {function} transaction: {error.message}") \
            from error
    except NodeUnavailable as error:
        raise PaymentError(503, "chain_unavailable", "no node of this network answers; try again shortly") \
            from error
    return web.json_response({"payment": payments.public_view(payment, services.config.public_url),
                              "tx_hash": tx_hash, "action": function}, status=202)


def _order_id_bytes(payment: dict[str, Any]) -> bytes:
    return bytes.fromhex(payment["order_id"].removeprefix("0x"))


async def _optional_json(request: web.Request) -> dict[str, Any]:
    """The JSON body if the request has one (body_exists: the connection guard has already read the body,
    so `can_read_body` would say False)."""
    return await json_body(request) if request.body_exists else {}


def _reason(body: dict[str, Any], name: str, default: str) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not 1 <= len(value) <= TEXT_CHARS_MAX:
        raise invalid(f"{name}: text of 1 to {TEXT_CHARS_MAX} characters")
    return value


@routes.post("/v1/payments/{payment_id}/cancel")
async def cancel_payment(request: web.Request) -> web.Response:
    services = services_of(request)
    merchant = services.guard.merchant_for(request)
    payment = _own_payment(services, merchant, request.match_info["payment_id"])
    if payment["state"] in payments.PAYABLE_STATES:
        changed = services.book.transition(payment, payments.CANCELED)
        return web.json_response(payments.public_view(changed, services.config.public_url))
    if payment["state"] == payments.PAID:
        return await _send_order_call(services, merchant, payment, "cancel", (_order_id_bytes(payment),))
    if payment["state"] == payments.SUBMITTED:
        raise PaymentError(409, "payment_in_flight", "the shopper's payment is being committed; try again shortly")
    raise PaymentError(409, "invalid_state", f"a {payment['state']} payment cannot be canceled")


@routes.post("/v1/payments/{payment_id}/refund")
async def refund_payment(request: web.Request) -> web.Response:
    services = services_of(request)
    merchant = services.guard.merchant_for(request)
    body = await _optional_json(request)
    payment = _own_payment(services, merchant, request.match_info["payment_id"])
    reason = _reason(body, "reason", "refunded by the merchant")
    if payment["state"] == payments.PAID:
        return await _send_order_call(services, merchant, payment, "cancel", (_order_id_bytes(payment),))
    if payment["state"] in (payments.SHIPPED, payments.REFUND_REQUESTED):
        return await _send_order_call(services, merchant, payment, "refund", (_order_id_bytes(payment), reason))
    raise PaymentError(409, "invalid_state", f"a {payment['state']} payment cannot be refunded "
                                             "(only paid, shipped or refund_requested ones)")


@routes.post("/v1/payments/{payment_id}/ship")
async def ship_payment(request: web.Request) -> web.Response:
    services = services_of(request)
    merchant = services.guard.merchant_for(request)
    body = await _optional_json(request)
    payment = _own_payment(services, merchant, request.match_info["payment_id"])
    tracking = _reason(body, "tracking", "shipped")
    if payment["state"] != payments.PAID:
        raise PaymentError(409, "invalid_state", f"a {payment['state']} payment cannot be shipped (only paid ones)")
    return await _send_order_call(services, merchant, payment, "ship", (_order_id_bytes(payment), tracking))


# --- webhook log and analytics -----------------------------------------------------------------

@routes.get("/v1/webhooks/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    services = services_of(request)
    merchant = services.guard.merchant_for(request)
    limit, cursor = page_params(request)
    payment_id = request.query.get("payment_id")
    return _page_response(services.store.merchant_deliveries(merchant.address_text, cursor), limit,
                          lambda delivery: payment_id is None or delivery["payment_id"] == payment_id,
                          webhooks.public_view)


def _report(request: web.Request) -> dict[str, Any]:
    services = services_of(request)
    merchant = services.guard.merchant_for(request)
    try:
        days = analytics.days_param(request.query.get("days"))
    except ValueError as error:
        raise invalid(str(error)) from error
    return analytics.report(services.store, merchant.address_text, days)


@routes.get("/v1/analytics")
async def get_analytics(request: web.Request) -> web.Response:
    report = _report(request)
    return web.json_response({**report, "decimals": await services_of(request).asset_decimals()})


@routes.get("/v1/analytics.csv")
async def get_analytics_csv(request: web.Request) -> web.Response:
    report = _report(request)
    return web.Response(text=analytics.report_csv(report), content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="sales-{report["to"]}.csv"'})
