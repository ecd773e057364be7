"""Talking to the chain's system contracts (orders, cross-border) from wallet commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from node import crypto, encoding
from node.contracts.values_json import value_json
from node.transactions import CallContract
from wallet_cli.main import Context, WalletFailure, send


def system_contract(ctx: Context, name: str) -> bytes:
    """The address of system contract `name` from chain_getParams."""
    for contract in ctx.params().get("contracts", []):
        if contract["name"] == name:
            return crypto.parse_address(contract["address"])
    raise WalletFailure(f"this chain has no {name} contract in its genesis")


def parse_id(text: str, what: str) -> bytes:
    """32 bytes (an order or proposal id, a public key) from hex, with or without 0x."""
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        value = b""
    if len(value) != 32:
        raise WalletFailure(f"{text!r} is not {what} (64 hex digits)")
    return value


def call_system(ctx: Context, name: str, gas_limit: int, sender: str, function: str, args: tuple, fee: str | None,
                fee_asset: str, wait: bool, timeout: float, password_file: Path | None, summary: str,
                describe: Callable[[bytes, int, dict[str, Any]], dict[str, Any]] | None = None,
                value: tuple[str, int] = ("", 0)) -> None:
    """Sign and send a call of `function` on system contract `name`, attaching `value` (asset, minor units)."""
    body = CallContract(system_contract(ctx, name), function, encoding.encode_value(args), gas_limit, *value)
    send(ctx, sender, body, fee_asset, fee, wait, timeout, password_file, summary, describe)


def query_system(ctx: Context, name: str, function: str, *args: Any) -> Any:
    """The JSON form of a read-only call's result (see node/rpc/views.py for the value forms)."""
    contract = crypto.format_address(system_contract(ctx, name))
    return ctx.rpc.call("contract_query", contract, function, [value_json(a) for a in args])["value"]
