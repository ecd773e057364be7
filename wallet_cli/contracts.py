"""`paywallet contract deploy | call | query | show`: contracts from the command line.

Arguments are a JSON array of contract values; bytes, addresses, tuples and dicts with
non-string keys use the one-key forms {"bytes": "0x…"}, {"address": "pay1…"},
{"tuple": [...]} and {"dict": [[key, value], ...]} (see docs/CONTRACTS.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from node import crypto, encoding, limits
from node.rpc.views import InvalidValue, value_from_json
from node.transactions import CallContract, DeployContract
from wallet_cli.main import (Context, WalletFailure, _emit, default_fee_asset, main, pass_ctx, resolve_address,
                             run_command, send, send_options)


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


@main.group("contract")
def contract() -> None:
    """Deploy, call and read contracts."""


@contract.command("deploy")
@click.argument("source_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@args_option
@gas_option
@send_options
@pass_ctx
@run_command
def deploy(ctx: Context, source_file: Path, args_json: str, gas_limit: int, sender: str, fee: str | None,
           fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Deploy the contract in SOURCE_FILE (needs the deployer permission); `init` gets --args."""
    source = source_file.read_text(encoding="utf-8")
    if len(source.encode()) > limits.contract_source_bytes_max:
        raise WalletFailure(f"{source_file} is larger than {limits.contract_source_bytes_max} bytes")
    body = DeployContract(source, parse_args(args_json), gas_limit)
    send(ctx, sender, body, default_fee_asset(ctx, fee_asset), fee, wait, timeout, password_file,
         f"deploy {source_file.name} (code hash {crypto.hash_bytes(source.encode()).hex()[:16]}…)",
         describe=lambda deployer, nonce, _: {"contract": crypto.format_address(crypto.contract_address(deployer,
                                                                                                       nonce))})


@contract.command("call")
@click.argument("address")
@click.argument("function")
@args_option
@gas_option
@send_options
@pass_ctx
@run_command
def call(ctx: Context, address: str, function: str, args_json: str, gas_limit: int, sender: str, fee: str | None,
         fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Call FUNCTION of the contract at ADDRESS in a transaction signed by --from."""
    body = CallContract(resolve_address(ctx, address), function, parse_args(args_json), gas_limit)
    send(ctx, sender, body, default_fee_asset(ctx, fee_asset), fee, wait, timeout, password_file,
         f"call {function} on {address}")


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
