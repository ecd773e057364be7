"""The shopper's side: checkout and recharge pages, and the JSON API their scripts use (`/api/…`).

The shopper's key never reaches the gateway: `prepare` returns the canonical bytes of the
transaction for the shopper's public key and current nonce, the page decrypts the keystore
and signs them in the browser, and `submit` checks that what came back is a validly signed
transaction of the expected kind and content (for a checkout: `create_order` with this
payment's merchant, one of its options and quantity, the option's total attached as the
call's value, and the bound buyer if any) before sending it to a healthy node of the
payment's region.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import payments
from gateway.api import invalid, json_body, services_of
from gateway.chain import ChainParams, ChainView, is_prepared, prepared_payload
from gateway.nodes import ChainError, NodeUnavailable
from gateway.payments import PaymentError
from gateway.security import CSRF_COOKIE, csrf_token_of, is_secure, set_cookie
from gateway.services import Services
from gateway.store import recharge_key, recharge_queue_key
from node import crypto, encoding, limits
from node.rpc.views import signing_domain_json
from node.transactions import CallContract, InvalidTransaction, RechargeRequest, Transaction, open_transaction

WEB_FOLDER = Path(__file__).resolve().parent / "web"
CSRF_COOKIE_MAX_AGE_S = 12 * 3600
RECHARGE_AMOUNT_MAX = 10**12
"""Largest recharge accepted from the page, in minor units."""

routes = web.RouteTableDef()


# --- pages -------------------------------------------------------------------------------------

def render(name: str, values: dict[str, str]) -> str:
    """The page `name` of `web/` with each `{{key}}` replaced by its value, HTML-escaped."""
    text = (WEB_FOLDER / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return text


def page_with_csrf_cookie(request: web.Request, name: str, values: dict[str, str], status: int = 200) -> web.Response:
    """A page whose forms or scripts echo the CSRF cookie set with it (double submit)."""
    token = csrf_token_of(request)
    response = web.Response(text=render(name, {"csrf_token": token, **values}), content_type="text/html",
                            status=status)
    set_cookie(response, CSRF_COOKIE, token, is_secure(request), CSRF_COOKIE_MAX_AGE_S)
    return response


@routes.get("/checkout/{payment_id}")
async def checkout_page(request: web.Request) -> web.Response:
    payment_id = request.match_info["payment_id"]
    if services_of(request).store.payment(payment_id) is None:
        raise PaymentError(404, "not_found", "no such checkout")
    return page_with_csrf_cookie(request, "checkout.html", {"payment_id": payment_id})


@routes.get("/recharge")
async def recharge_page(request: web.Request) -> web.Response:
    return page_with_csrf_cookie(request, "recharge.html", {})


# --- checkout API ------------------------------------------------------------------------------

def _payment(services: Services, request: web.Request) -> dict[str, Any]:
    services.guard.check_public(request)
    payment = services.store.payment(request.match_info["payment_id"])
    if payment is None:
        raise PaymentError(404, "not_found", "no such checkout")
    return payment


def _checkout_view(services: Services, payment: dict[str, Any]) -> dict[str, Any]:
    explorer_url = None
    explorer = services.config.region(payment["region"]).explorer_url
    if payment["order_id"] and explorer:  # the order's page on the network's public dashboard
        explorer_url = f"{explorer}/#/order/{payment['order_id']}"
    return {"id": payment["id"], "state": payment["state"], "explorer_url": explorer_url,
            "merchant": {"address": payment["merchant"], "name": payment.get("merchant_name", "")},
            "options": payment["options"], "chosen": payment["chosen"], "expires_at": payment["expires_at"],
            "chain_id": payment["chain_id"], "region": payment["region"], "buyer": payment["buyer"],
            "order_id": payment["order_id"], "tx_hash": payment["tx_hash"], "error": payment["error"]}


@routes.get("/api/checkout/{payment_id}")
async def checkout_info(request: web.Request) -> web.Response:
    services = services_of(request)
    return web.json_response(_checkout_view(services, _payment(services, request)))


def _require_payable(payment: dict[str, Any]) -> None:
    if payment["state"] in payments.PAYABLE_STATES and payment["expires_at"] <= time.time():
        raise PaymentError(410, "checkout_expired", "this checkout has expired; nothing was charged")
    if payment["state"] == payments.EXPIRED:
        raise PaymentError(410, "checkout_expired", "this checkout has expired; nothing was charged")
    if payment["state"] not in payments.PAYABLE_STATES:
        raise PaymentError(409, "not_payable", f"this checkout is {payment['state']}; it cannot be paid now")


def _option(payment: dict[str, Any], product_id: Any) -> dict[str, Any]:
    for option in payment["options"]:
        if option["product_id"] == product_id:
            return option
    raise invalid("product_id: choose one of this checkout's options")


def _public_key(value: Any) -> bytes:
    try:
        key = encoding.parse_hex(value, "public_key", crypto.PUBLIC_KEY_BYTES)
    except encoding.DecodeError as error:
        raise invalid(f"public_key: 64 hex digits ({error})") from error
    if len(key) != crypto.PUBLIC_KEY_BYTES:
        raise invalid("public_key: 64 hex digits")
    return key


async def _chain_call(coroutine):
    try:
        return await coroutine
    except NodeUnavailable as error:
        raise PaymentError(503, "chain_unavailable", "no node of this network answers; try again shortly") from error
    except ChainError as error:
        raise PaymentError(422, "chain_rejected", error.message) from error


@routes.post("/api/checkout/{payment_id}/prepare")
async def checkout_prepare(request: web.Request) -> web.Response:
    services = services_of(request)
    payment = _payment(services, request)
    body = await json_body(request)
    _require_payable(payment)
    option = _option(payment, body.get("product_id"))
    public_key = _public_key(body.get("public_key"))
    buyer = crypto.address_from_public_key(public_key)
    if payment["buyer"] is not None and crypto.format_address(buyer) != payment["buyer"]:
        raise PaymentError(403, "wrong_buyer", "this checkout is for another buyer's wallet")
    chain = services.chain(payment["region"])
    account = await _chain_call(chain.account(buyer))
    balance = account["balances"].get(option["currency"], 0)
    params = await _chain_call(chain.params())
    transaction = await _chain_call(_order_transaction(chain, payment, option, public_key, account["pending_nonce"]))
    if balance < option["total"] + transaction.fee:  # the order attaches its total; the fee is in the same asset
        raise PaymentError(402, "insufficient_funds",
                           f"your wallet holds {balance} minor units of {option['currency']}, the total with the fee "
                           f"is more; recharge first. Nothing was charged.")
    return web.json_response({**_prepared(transaction, params),
                              "fee": transaction.fee, "fee_asset": transaction.fee_asset, "nonce": transaction.nonce,
                              "summary": f"pay {option['total']} {option['currency']} minor units for "
                                         f"{payment['quantity']} x {option['name']} into escrow"})


@routes.post("/api/checkout/{payment_id}/submit")
async def checkout_submit(request: web.Request) -> web.Response:
    services = services_of(request)
    payment = _payment(services, request)
    body = await json_body(request)
    _require_payable(payment)
    signed = _signed_bytes(body.get("signed"))
    chain = services.chain(payment["region"])
    params = await _chain_call(chain.params())
    envelope = _open(signed, params.domain)
    option = _check_order_call(payment, envelope, params.orders_contract)
    expected = await _order_transaction(chain, payment, option, envelope.transaction.sender_public_key,
                                        envelope.transaction.nonce)
    if not is_prepared(envelope, prepared_payload(expected)):
        raise PaymentError(422, "invalid_transaction", "the signed transaction is not the one this checkout prepared")
    tx_hash = "0x" + envelope.hash.hex()
    in_flight = request.app["checkout_in_flight"]
    if payment["id"] in in_flight:
        raise PaymentError(409, "payment_in_flight", "a payment for this checkout is being submitted")
    in_flight.add(payment["id"])
    try:
        changed = _record_before_sending(services, payment["id"], tx_hash, signed, option, envelope.sender)
        try:
            await chain.client.send_transaction(signed, resend=False)
        except ChainError as error:  # the chain refused it: nothing was charged, the shopper may try again
            if error.rule == "fee_too_low":
                chain.forget_params()  # the minimum fee changed: the next prepare reads it again
            services.book.transition(services.store.payment(payment["id"]), payments.FAILED, error=error.message)
            raise PaymentError(422, "chain_rejected", error.message) from error
        except NodeUnavailable as error:  # maybe sent: the follower's sweep finds out (and resends)
            raise PaymentError(503, "chain_unavailable", "no node of this network answers; the payment is "
                                                         "pending and will be checked again") from error
    finally:
        in_flight.discard(payment["id"])
    return web.json_response({"tx_hash": tx_hash, "state": changed["state"]})


def _record_before_sending(services: Services, payment_id: str, tx_hash: str, signed: bytes,
                           option: dict[str, Any], sender: bytes) -> dict[str, Any]:
    """Record the submission (and the transaction's hash) before anything is sent, so a crash or a lost
    answer can never leave an order on chain that the gateway does not know; one transaction pays one checkout."""
    if services.store.payment_by_tx(tx_hash) is not None:
        raise PaymentError(409, "transaction_already_used", "this signed transaction was already submitted for a "
                                                            "checkout; sign a new one")
    current = services.store.payment(payment_id)  # it may have changed while we talked to the chain
    _require_payable(current)
    return services.book.record_submitted(current, tx_hash, signed.hex(), option, crypto.format_address(sender))


def _signed_bytes(value: Any) -> bytes:
    try:
        return encoding.parse_hex(value, "signed", limits.payment_tx_bytes_max)
    except encoding.DecodeError as error:
        raise invalid(f"signed: the signed transaction as hex ({error})") from error


def _prepared(transaction: Transaction, params: ChainParams) -> dict[str, Any]:
    """What the page signs: the payload, and the network it is for (the genesis hash is part of the signature)."""
    return {"payload": prepared_payload(transaction).hex(), **signing_domain_json(params.domain)}


def _open(signed: bytes, domain: crypto.SigningDomain):
    try:
        return open_transaction(signed, domain)
    except InvalidTransaction as error:
        raise PaymentError(422, "invalid_transaction", error.message) from error


def _order_transaction(chain: ChainView, payment: dict[str, Any], option: dict[str, Any], public_key: bytes,
                       nonce: int):
    """The shopper's `create_order` for `option` of `payment`, the total attached (what prepare hands out and submit
    expects back)."""
    args = (crypto.parse_address(payment["merchant"]), option["product_id"], payment["quantity"],
            option["unit_price"], option["currency"])
    return chain.order_call(public_key, nonce, "create_order", args, option["currency"],
                            (option["currency"], option["total"]))


def _check_order_call(payment: dict[str, Any], envelope, orders_contract: bytes) -> dict[str, Any]:
    body = envelope.transaction.body
    if not isinstance(body, CallContract) or body.contract != orders_contract or body.function != "create_order":
        raise PaymentError(422, "invalid_transaction", "the signed transaction is not this checkout's order")
    if payment["buyer"] is not None and crypto.format_address(envelope.sender) != payment["buyer"]:
        raise PaymentError(403, "wrong_buyer", "this checkout is for another buyer's wallet")
    try:
        args = encoding.decode_value(body.args, limits.contract_args_bytes_max)
    except encoding.DecodeError as error:
        raise PaymentError(422, "invalid_transaction", f"the order's arguments are malformed: {error}") from error
    if not isinstance(args, tuple) or len(args) != 5:
        raise PaymentError(422, "invalid_transaction", "the signed transaction is not this checkout's order")
    return _option(payment, args[1])


# --- recharge ----------------------------------------------------------------------------------

@routes.get("/api/recharge/options")
async def recharge_options(request: web.Request) -> web.Response:
    services = services_of(request)
    services.guard.check_public(request)
    decimals = await services.asset_decimals()
    return web.json_response({"regions": [r.name for r in services.config.regions], "assets": sorted(decimals),
                              "decimals": decimals,
                              "gateway_address": crypto.format_address(services.config.keys.address),
                              "chain_ids": {r.name: r.chain_id for r in services.config.regions},
                              "auto_confirm": services.config.recharge_auto_confirm})


def _region_chain(services: Services, region: Any) -> ChainView:
    if not isinstance(region, str) or region not in services.chains:
        raise invalid(f"region: one of {', '.join(sorted(services.chains))}")
    return services.chain(region)


@routes.post("/api/recharge/prepare")
async def recharge_prepare(request: web.Request) -> web.Response:
    services = services_of(request)
    services.guard.check_public(request)
    body = await json_body(request)
    chain = _region_chain(services, body.get("region"))
    public_key = _public_key(body.get("public_key"))
    amount = body.get("amount")
    if type(amount) is not int or not 1 <= amount <= RECHARGE_AMOUNT_MAX:
        raise invalid(f"amount: a whole number of minor units from 1 to {RECHARGE_AMOUNT_MAX}")
    asset = body.get("asset")
    params = await _chain_call(chain.params())
    if asset not in params.min_fees:
        raise invalid(f"asset: one of {', '.join(sorted(params.min_fees))}")
    account = await _chain_call(chain.account(crypto.address_from_public_key(public_key)))
    if not account["registered"]:
        raise PaymentError(403, "not_registered", "this wallet is not registered (KYC) on this network yet")
    transaction = await _chain_call(chain.recharge_request(
        public_key, account["pending_nonce"], services.config.keys.address, asset, amount, "recharge page"))
    return web.json_response({**_prepared(transaction, params), "fee": transaction.fee,
                              "fee_asset": transaction.fee_asset,
                              "request_summary": f"recharge {amount} minor units of {asset} through the gateway"})


@routes.post("/api/recharge/submit")
async def recharge_submit(request: web.Request) -> web.Response:
    services = services_of(request)
    services.guard.check_public(request)
    body = await json_body(request)
    region = body.get("region")
    chain = _region_chain(services, region)
    signed = _signed_bytes(body.get("signed"))
    params = await _chain_call(chain.params())
    envelope = _open(signed, params.domain)
    request_body = envelope.transaction.body
    if not isinstance(request_body, RechargeRequest) or request_body.gateway != services.config.keys.address:
        raise PaymentError(422, "invalid_transaction", "the signed transaction is not a recharge request to this gateway")
    tx_hash = "0x" + envelope.hash.hex()
    if services.store.get(recharge_key(tx_hash)) is not None:
        raise PaymentError(409, "transaction_already_used", "this recharge request was already submitted")
    if not 1 <= request_body.amount <= RECHARGE_AMOUNT_MAX:
        raise invalid(f"amount: a whole number of minor units from 1 to {RECHARGE_AMOUNT_MAX}")
    await _chain_call(chain.client.send_transaction(signed, resend=False))
    record = {"tx_hash": tx_hash, "region": region, "user": crypto.format_address(envelope.sender),
              "asset": request_body.asset, "amount": request_body.amount, "state": "submitted",
              "submitted_at": time.time(), "error": None}
    puts = [(recharge_key(tx_hash), record)]
    if services.config.recharge_auto_confirm:
        puts.append((recharge_queue_key(tx_hash), tx_hash))
    services.store.write(puts)
    return web.json_response({"tx_hash": tx_hash, "state": "submitted"})


@routes.get("/api/recharge/{tx_hash}")
async def recharge_status(request: web.Request) -> web.Response:
    services = services_of(request)
    services.guard.check_public(request)
    record = services.store.get(recharge_key(request.match_info["tx_hash"]))
    if record is None:
        raise PaymentError(404, "not_found", "no recharge with this transaction hash went through this gateway")
    chain = services.chain(record["region"])
    state, error = record["state"], record["error"]
    if state != "failed":
        try:
            on_chain = await chain.client.call("recharge_get", record["tx_hash"])
            state = {"pending": "requested", "posted": "posted", "voided": "voided"}.get(on_chain["status"], state)
        except ChainError:
            pass  # not in a block yet
        except NodeUnavailable as error_unavailable:
            raise PaymentError(503, "chain_unavailable", "no node of this network answers; try again shortly") \
                from error_unavailable
    account = await _chain_call(chain.account(crypto.parse_address(record["user"])))
    return web.json_response({"tx_hash": record["tx_hash"], "state": state, "asset": record["asset"],
                              "amount": record["amount"], "balance": account["balances"].get(record["asset"], 0),
                              "error": error})
