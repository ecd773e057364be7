"""`paywallet contract deploy | call | query | show | approve`: contracts from the command line.

Arguments are a JSON array of contract values; bytes, addresses, tuples and dicts with
non-string keys use the one-key forms {"bytes": "0x…"}, {"address": "pay1…"},
{"tuple": [...]} and {"dict": [[key, value], ...]} (see docs/CONTRACTS.md).

A contract moves only what is its own: `--value` attaches funds to a call (or a deploy's
`init`), and `approve` lets a contract pull up to an amount of one asset later.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from node import crypto, encoding, limits
from node.contracts.values_json import InvalidValue, value_from_json
from node.transactions import ApproveSpend, CallContract, DeployContract
from wallet_cli.main import (Context, WalletFailure, _emit, default_fee_asset, format_amount, main, parse_amount,
                             pass_ctx, resolve_address, run_command, send, send_options)


def parse_args(text: str) -> bytes:
    """The encoded argument tuple from a JSON array."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise WalletFailure(f"--args is not JSON: {error}") from error
    if not isinstance(values, list):
        raise WalletFailure("--args must be a JSON array, e.g. '[1, \"CNY\", {\"address\": \"pay1…\"}]'")
    try:
        encoded = encoding.encode_value(tuple(value_from_json(values, "args")))
    except (InvalidValue, encoding.EncodeError) as error:
        raise WalletFailure(f"--args: {error}") from error
    if len(encoded) > limits.contract_args_bytes_max:
        raise WalletFailure(f"--args are {len(encoded)} bytes encoded, more than {limits.contract_args_bytes_max}")
    return encoded


args_option = click.option("--args", "args_json", default="[]", show_default=True,
                           help="Arguments as a JSON array of contract values.")
gas_option = click.option("--gas", "gas_limit", type=click.IntRange(1, limits.contract_gas_max), default=200_000,
                          show_default=True, help="Gas limit; the fee covers one minor unit per "
                                                  f"{limits.gas_per_fee_unit} gas on top of the minimum.")


def value_options(function):
    """--value and --asset: funds to attach (they become the contract's once the call succeeds)."""
    function = click.option("--asset", "value_asset", help="Asset of --value, e.g. CNY.")(function)
    return click.option("--value", "value_text", help="Amount in major units to attach: the contract receives it "
                                                      "before it runs (nothing moves if the call fails).")(function)


def parse_value(ctx: Context, value_text: str | None, value_asset: str | None) -> tuple[str, int]:
    """(asset, minor units) to attach from --value and --asset; ("", 0) when --value is not given."""
    if value_text is None:
        if value_asset is not None:
            raise WalletFailure("--asset names the asset of --value: give --value too")
        return "", 0
    if value_asset is None:
        raise WalletFailure("--value needs --asset")
    return value_asset, parse_amount(ctx, value_text, value_asset)


def _is_zero(text: str) -> bool:
    try:
        return Decimal(text) == 0
    except InvalidOperation:
        return False  # parse_amount says what is wrong with it


def value_summary(ctx: Context, value: tuple[str, int]) -> str:
    return f", attaching {format_amount(ctx, value[1], value[0])}" if value[1] else ""


@main.group("contract")
def contract() -> None:
    """Deploy, call and read contracts."""


@contract.command("deploy")
@click.argument("source_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@args_option
@gas_option
@value_options
@send_options
@pass_ctx
@run_command
def deploy(ctx: Context, source_file: Path, args_json: str, gas_limit: int, value_text: str | None,
           value_asset: str | None, sender: str, fee: str | None, fee_asset: str | None, wait: bool, timeout: float,
           password_file: Path | None) -> None:
    """Deploy the contract in SOURCE_FILE (needs the deployer permission); `init` gets --args and --value."""
    source = source_file.read_text(encoding="utf-8")
    if len(source.encode()) > limits.contract_source_bytes_max:
        raise WalletFailure(f"{source_file} is larger than {limits.contract_source_bytes_max} bytes")
    value = parse_value(ctx, value_text, value_asset)
    body = DeployContract(source, parse_args(args_json), gas_limit, *value)
    send(ctx, sender, body, default_fee_asset(ctx, fee_asset), fee, wait, timeout, password_file,
         f"deploy {source_file.name} (code hash {crypto.hash_bytes(source.encode()).hex()[:16]}…)"
         + value_summary(ctx, value),
         describe=lambda deployer, nonce, _: {"contract": crypto.format_address(crypto.contract_address(deployer,
                                                                                                       nonce))})


@contract.command("call")
@click.argument("address")
@click.argument("function")
@args_option
@gas_option
@value_options
@send_options
@pass_ctx
@run_command
def call(ctx: Context, address: str, function: str, args_json: str, gas_limit: int, value_text: str | None,
         value_asset: str | None, sender: str, fee: str | None, fee_asset: str | None, wait: bool, timeout: float,
         password_file: Path | None) -> None:
    """Call FUNCTION of the contract at ADDRESS in a transaction signed by --from.

    The contract can move only the --value you attach, never the rest of your balance (unless you approved it:
    `paywallet contract approve`)."""
    value = parse_value(ctx, value_text, value_asset)
    body = CallContract(resolve_address(ctx, address), function, parse_args(args_json), gas_limit, *value)
    send(ctx, sender, body, default_fee_asset(ctx, fee_asset, value[0] or None), fee, wait, timeout, password_file,
         f"call {function} on {address}" + value_summary(ctx, value))


@contract.command("approve")
@click.argument("address")
@click.argument("asset")
@click.argument("amount")
@send_options
@pass_ctx
@run_command
def approve(ctx: Context, address: str, asset: str, amount: str, sender: str, fee: str | None, fee_asset: str | None,
            wait: bool, timeout: float, password_file: Path | None) -> None:
    """Let the contract at ADDRESS pull up to AMOUNT (major units) of your ASSET; 0 revokes.

    It replaces any earlier allowance of that contract for that asset, and each pull lowers it."""
    contract_address = resolve_address(ctx, address)
    ctx.asset(asset)  # an unknown asset fails here, with the wallet's message
    minor = 0 if _is_zero(amount) else parse_amount(ctx, amount, asset)
    summary = (f"allow {crypto.format_address(contract_address)} to pull up to {format_amount(ctx, minor, asset)}"
               if minor else f"revoke what {crypto.format_address(contract_address)} may pull of your {asset}")
    send(ctx, sender, ApproveSpend(contract_address, asset, minor), default_fee_asset(ctx, fee_asset, asset), fee, wait,
         timeout, password_file, summary)


@contract.command("query")
@click.argument("address")
@click.argument("function")
@args_option
@click.option("--caller", help="Address or key name to run as (default: the zero address).")
@pass_ctx
@run_command
def query(ctx: Context, address: str, function: str, args_json: str, caller: str | None) -> None:
    """Run FUNCTION read-only on the latest committed state and print its result (nothing is sent)."""
    parse_args(args_json)  # fail early, with the wallet's message, on bad arguments
    params: list[Any] = [crypto.format_address(resolve_address(ctx, address)), function, json.loads(args_json)]
    if caller is not None:
        params.append(crypto.format_address(resolve_address(ctx, caller)))
    result = ctx.rpc.call("contract_query", *params)
    _emit(ctx, result, json.dumps(result["value"]) + f"\n(gas used {result['gas_used']})")


@contract.command("show")
@click.argument("address")
@click.option("--source", "with_source", is_flag=True, help="Print the contract's source too.")
@pass_ctx
@run_command
def show(ctx: Context, address: str, with_source: bool) -> None:
    """The contract at ADDRESS: deployer, code hash, public functions (and source)."""
    result = ctx.rpc.call("contract_get", crypto.format_address(resolve_address(ctx, address)))
    text = (f"contract  {result['address']}\ndeployer  {result['deployer']}\ncode hash {result['code_hash']}\n"
            f"deployed  at height {result['height']}\nfunctions {', '.join(result['functions'])}")
    if with_source:
        text += "\n\n" + result["source"]
    _emit(ctx, result, text)
