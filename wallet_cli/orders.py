"""`paywallet pay | orders | order | ship | confirm | cancel | refund … | settle | catalog …`.

All of these talk to the chain's system orders contract (its address comes from
`chain_getParams`): state changes are contract calls signed by `--from`, reads are
`order_get` / `order_list` / read-only contract queries. The contract checks every rule
and names it in the failed receipt; the wallet also checks what it can before sending.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from node import crypto
from node.contracts import system
from wallet_cli.main import (Context, WalletFailure, _emit, default_fee_asset, format_amount, main, parse_amount,
                             pass_ctx, resolve_address, run_command, send_options)
from wallet_cli.system import call_system, parse_id, query_system

ORDER_GAS = 50_000
"""Gas limit of an order-contract call: create_order uses about 13,000 (most of it the per-byte price of the
order it stores), so this leaves a wide margin (tests/unit/test_order_contract.py checks it stays under half of
this), and costs 50 minor units of fee on top of the minimum."""


def order_id_bytes(text: str) -> bytes:
    return parse_id(text, "an order id")


def call_orders(ctx: Context, sender: str, function: str, args: tuple, fee: str | None, fee_asset: str | None,
                wait: bool, timeout: float, password_file: Path | None, summary: str, describe=None,
                value: tuple[str, int] = ("", 0)) -> None:
    call_system(ctx, system.ORDERS, ORDER_GAS, sender, function, args, fee, default_fee_asset(ctx, fee_asset), wait,
                timeout, password_file, summary, describe, value)


def query_orders(ctx: Context, function: str, *args: Any) -> Any:
    return query_system(ctx, system.ORDERS, function, *args)


def new_order_id(_sender: bytes, _nonce: int, result: dict[str, Any]) -> dict[str, Any]:
    """The id of the order a committed `create_order` made (from its order_created event)."""
    for event in result.get("receipt", {}).get("events", []):
        if event.get("name") == "order_created":
            return {"order_id": event["data"]["order_id"]["bytes"]}
    return {}


# --- buying -------------------------------------------------------------------------------------

@main.command("pay")
@click.option("--merchant", required=True, help="The merchant's address or key name.")
@click.option("--product", "product_id", required=True, help="Product id in the merchant's catalog.")
@click.option("--quantity", type=click.IntRange(1), default=1, show_default=True)
@click.option("--price", help="Unit price you agree to, in major units (default: the catalog's current price).")
@send_options
@pass_ctx
@run_command
def pay(ctx: Context, merchant: str, product_id: str, quantity: int, price: str | None, sender: str,
        fee: str | None, fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Buy QUANTITY of a product: the total, attached to the order, waits in escrow until you confirm receipt."""
    merchant_address = resolve_address(ctx, merchant)
    product = query_orders(ctx, "catalog_get", merchant_address, product_id)
    if product is None:
        raise WalletFailure(f"merchant {crypto.format_address(merchant_address)} has no product {product_id!r}")
    currency = product["currency"]
    unit_price = product["price"] if price is None else parse_amount(ctx, price, currency)
    total = format_amount(ctx, unit_price * quantity, currency)
    call_orders(ctx, sender, "create_order", (merchant_address, product_id, quantity, unit_price, currency), fee,
                fee_asset or currency, wait, timeout, password_file,
                f"pay {total} for {quantity} x {product['name']} ({product_id}) into escrow", new_order_id,
                value=(currency, unit_price * quantity))


ORDER_ACTIONS = (
    (main, "confirm", "confirm", "confirm receipt of",
     "Buyer: confirm receipt of a shipped order; the merchant is paid from escrow."),
    (main, "cancel", "cancel", "cancel", "Buyer or merchant: cancel an order not yet shipped; the buyer gets the "
                                         "escrow back."),
    (main, "settle", "settle", "settle", "Anyone: complete a shipped order whose confirmation window passed, or "
                                         "expire one never shipped."),
)
"""(group, command, contract function, verb for the summary, help) of commands that take only an order id."""


def _order_command(group: click.Group, name: str, function: str, verb: str, help_text: str) -> None:
    @group.command(name, help=help_text)
    @click.argument("order_id")
    @send_options
    @pass_ctx
    @run_command
    def command(ctx: Context, order_id: str, sender: str, fee: str | None, fee_asset: str | None, wait: bool,
                timeout: float, password_file: Path | None) -> None:
        call_orders(ctx, sender, function, (order_id_bytes(order_id),), fee, fee_asset, wait, timeout,
                    password_file, f"{verb} order {order_id}")


@main.group("refund")
def refund() -> None:
    """Ask for, approve, reject or give a refund of a shipped order."""


def _order_command_with_reason(group: click.Group, name: str, function: str, verb: str, help_text: str) -> None:
    @group.command(name, help=help_text)
    @click.argument("order_id")
    @click.option("--reason", required=True, help="Why (up to 128 characters, kept on chain).")
    @send_options
    @pass_ctx
    @run_command
    def command(ctx: Context, order_id: str, reason: str, sender: str, fee: str | None, fee_asset: str | None,
                wait: bool, timeout: float, password_file: Path | None) -> None:
        call_orders(ctx, sender, function, (order_id_bytes(order_id), reason), fee, fee_asset, wait, timeout,
                    password_file, f"{verb} order {order_id}")


REFUND_ACTIONS_WITH_REASON = (
    ("request", "request_refund", "ask for a refund of",
     "Buyer: ask the merchant to refund a shipped order (the funds stay in escrow meanwhile)."),
    ("reject", "reject_refund", "reject the refund of", "Merchant: reject a refund request; the merchant is paid "
                                                        "from escrow."),
    ("give", "refund", "refund", "Merchant: refund a shipped order (or one whose refund was asked for) of your own "
                                 "accord; the buyer gets the escrow back."),
)
for _name, _function, _verb, _help in REFUND_ACTIONS_WITH_REASON:
    _order_command_with_reason(refund, _name, _function, _verb, _help)


for _group, _name, _function, _verb, _help in ORDER_ACTIONS + (
        (refund, "approve", "approve_refund", "approve the refund of",
         "Merchant: approve a refund request; the buyer gets the escrow back."),):
    _order_command(_group, _name, _function, _verb, _help)


# --- selling ------------------------------------------------------------------------------------

@main.command("ship")
@click.argument("order_id")
@click.option("--tracking", required=True, help="Carrier tracking reference (up to 128 characters).")
@send_options
@pass_ctx
@run_command
def ship(ctx: Context, order_id: str, tracking: str, sender: str, fee: str | None, fee_asset: str | None,
         wait: bool, timeout: float, password_file: Path | None) -> None:
    """Merchant: mark an order shipped; the buyer's confirmation window starts."""
    call_orders(ctx, sender, "ship", (order_id_bytes(order_id), tracking), fee, fee_asset, wait, timeout,
                password_file, f"ship order {order_id}")


@main.group("catalog")
def catalog() -> None:
    """A merchant's products on chain: what orders are checked against."""


@catalog.command("add")
@click.option("--product", "product_id", required=True, help="Product id (up to 32 characters).")
@click.option("--name", required=True, help="Product name (up to 128 characters).")
@click.option("--price", required=True, help="Unit price in major units, e.g. 12.50.")
@click.option("--currency", required=True, help="Asset the price is in, e.g. CNY.")
@click.option("--stock", type=click.IntRange(0), required=True)
@click.option("--limit", "per_order_limit", type=click.IntRange(1), default=10, show_default=True,
              help="Most units one order may buy.")
@send_options
@pass_ctx
@run_command
def catalog_add(ctx: Context, product_id: str, name: str, price: str, currency: str, stock: int,
                per_order_limit: int, sender: str, fee: str | None, fee_asset: str | None, wait: bool,
                timeout: float, password_file: Path | None) -> None:
    """Merchant: add a product to your catalog."""
    minor = parse_amount(ctx, price, currency)
    call_orders(ctx, sender, "catalog_add", (product_id, name, minor, currency, stock, per_order_limit), fee,
                fee_asset or currency, wait, timeout, password_file,
                f"add {product_id} ({name}) at {format_amount(ctx, minor, currency)}, {stock} in stock")


@catalog.command("update")
@click.option("--product", "product_id", required=True)
@click.option("--price", help="New unit price in major units.")
@click.option("--stock", type=click.IntRange(0))
@click.option("--limit", "per_order_limit", type=click.IntRange(1))
@click.option("--active/--inactive", default=None, help="Offer the product, or stop selling it.")
@send_options
@pass_ctx
@run_command
def catalog_update(ctx: Context, product_id: str, price: str | None, stock: int | None, per_order_limit: int | None,
                   active: bool | None, sender: str, fee: str | None, fee_asset: str | None, wait: bool,
                   timeout: float, password_file: Path | None) -> None:
    """Merchant: change a product's price, stock, per-order limit or availability (others stay)."""
    merchant = resolve_address(ctx, sender)
    product = query_orders(ctx, "catalog_get", merchant, product_id)
    if product is None:
        raise WalletFailure(f"your catalog has no product {product_id!r}")
    minor = product["price"] if price is None else parse_amount(ctx, price, product["currency"])
    args = (product_id, minor, product["stock"] if stock is None else stock,
            product["per_order_limit"] if per_order_limit is None else per_order_limit,
            product["active"] if active is None else active)
    call_orders(ctx, sender, "catalog_update", args, fee, fee_asset or product["currency"], wait, timeout,
                password_file, f"update {product_id}")


@catalog.command("list")
@click.argument("merchant")
@pass_ctx
@run_command
def catalog_list(ctx: Context, merchant: str) -> None:
    """The products of MERCHANT (address or key name)."""
    products = query_orders(ctx, "catalog_list", resolve_address(ctx, merchant))
    lines = [f"{p['product_id']:<16} {format_amount(ctx, p['price'], p['currency']):>16} "
             f"stock {p['stock']:<6} limit {p['per_order_limit']:<4} {'' if p['active'] else '(inactive) '}{p['name']}"
             for p in products]
    _emit(ctx, products, "\n".join(lines) or "no products")


# --- reading ------------------------------------------------------------------------------------

def _order_line(ctx: Context, order: dict[str, Any]) -> str:
    return (f"{order['order_id']}  {order['state']:<16} {order['quantity']} x {order['product_id']:<12} "
            f"{format_amount(ctx, order['total'], order['currency'])}  "
            f"buyer {order['buyer']}  merchant {order['merchant']}")


@main.command("orders")
@click.argument("who")
@click.option("--role", type=click.Choice(["buyer", "merchant"]), help="Only orders WHO bought, or sold.")
@click.option("--state", help="Only orders in this state (created, shipped, completed, canceled, …).")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--before", help="Cursor HEIGHT:INDEX from a previous page.")
@pass_ctx
@run_command
def orders(ctx: Context, who: str, role: str | None, state: str | None, limit: int, before: str | None) -> None:
    """Orders of WHO (address or key name), newest first."""
    cursor = None
    if before is not None:
        try:
            cursor = [int(part) for part in before.split(":")]
        except ValueError as error:
            raise WalletFailure("--before is HEIGHT:INDEX") from error
    page = ctx.rpc.call("order_list", crypto.format_address(resolve_address(ctx, who)), role, state, limit, cursor)
    text = "\n".join(_order_line(ctx, order) for order in page["orders"]) or "no orders"
    if page["next"]:
        text += f"\nmore: --before {page['next'][0]}:{page['next'][1]}"
    _emit(ctx, page, text)


@main.command("order")
@click.argument("order_id")
@pass_ctx
@run_command
def order(ctx: Context, order_id: str) -> None:
    """One order: its state, amounts, parties and deadlines."""
    result = ctx.rpc.call("order_get", "0x" + order_id_bytes(order_id).hex())
    _emit(ctx, result, _order_line(ctx, result) + "\n" + json.dumps(
        {k: v for k, v in result.items() if k not in ("order_id", "state", "buyer", "merchant")}, indent=2))
