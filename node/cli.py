"""`paychain`: the operator's command line (keys, genesis, run, localnet, status).

Exit codes: 0 success, 1 failure (the message says why), 2 usage error, 3 node unreachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from node import crypto
from node.config import InvalidConfig, load_config, load_node_key, save_node_key
from node.genesis import InvalidGenesis, genesis_document, load_genesis, parse_genesis
from gateway.cli import gateway_group
from node.localnet_cli import localnet_group
from node.storage.kv import StoreError

EXIT_FAILURE = 1
EXIT_UNREACHABLE = 3


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


def _fail(message: str, code: int = EXIT_FAILURE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Paychain operator tools: keys, genesis, running a node, and a local network."""


# --- keys ------------------------------------------------------------------------------------

@main.group()
def keys() -> None:
    """Node (validator) keys."""


@keys.command("generate")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the key file (mode 0600).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_generate(out_path: Path, force: bool, as_json: bool) -> None:
    """Generate a new ed25519 node key."""
    if out_path.exists() and not force:
        _fail(f"{out_path} exists; pass --force to overwrite")
    pair = crypto.KeyPair.generate()
    save_node_key(out_path, pair)
    data = {"address": crypto.format_address(pair.address), "public_key": pair.public_key.hex(), "path": str(out_path)}
    _emit(as_json, data, f"wrote {out_path}\naddress    {data['address']}\npublic key {data['public_key']}")


@keys.command("show")
@click.argument("key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_show(key_file: Path, as_json: bool) -> None:
    """Show the address and public key of a node key file."""
    try:
        pair = load_node_key(key_file)
    except InvalidConfig as error:
        _fail(str(error))
    data = {"address": crypto.format_address(pair.address), "public_key": pair.public_key.hex()}
    _emit(as_json, data, f"address    {data['address']}\npublic key {data['public_key']}")


# --- genesis -----------------------------------------------------------------------------------

@main.group()
def genesis() -> None:
    """Create and check genesis files."""


def _parse_asset_option(text: str) -> dict[str, Any]:
    try:
        code, decimals, min_fee = text.split(":")
        return {"code": code, "decimals": int(decimals), "min_fee": int(min_fee)}
    except ValueError as error:
        raise click.BadParameter(f"{text!r}: expected CODE:DECIMALS:MIN_FEE, e.g. CNY:2:1") from error


def _parse_account_option(text: str) -> dict[str, Any]:
    # ADDRESS:ROLE[:ASSET=AMOUNT,...]
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise click.BadParameter(f"{text!r}: expected ADDRESS:ROLE[:ASSET=AMOUNT,...]")
    balances = {}
    if len(parts) == 3 and parts[2]:
        for item in parts[2].split(","):
            try:
                asset, amount = item.split("=")
                balances[asset] = int(amount)
            except ValueError as error:
                raise click.BadParameter(f"{item!r}: expected ASSET=AMOUNT in minor units") from error
    return {"address": parts[0], "role": parts[1], "balances": balances}


@genesis.command("init")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--chain-id", required=True, help="Network name, e.g. paychain-test.")
@click.option("--validator", "validators", multiple=True, required=True,
              help="NAME:ROLE:KEY_FILE for each validator (ROLE: merchant, gateway or user).")
@click.option("--asset", "assets", multiple=True, required=True, help="CODE:DECIMALS:MIN_FEE, e.g. CNY:2:1.")
@click.option("--fee-account", required=True, help="Address that receives every fee.")
@click.option("--account", "accounts", multiple=True, help="ADDRESS:ROLE[:ASSET=AMOUNT,...] to fund at genesis.")
@click.option("--genesis-time-ms", type=int, default=None, help="Defaults to now.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def genesis_init(out_path: Path, chain_id: str, validators: tuple[str, ...], assets: tuple[str, ...],
                 fee_account: str, accounts: tuple[str, ...], genesis_time_ms: int | None, as_json: bool) -> None:
    """Write a new genesis file (validated before it is written)."""
    import time
    validator_entries = []
    for item in validators:
        try:
            name, role, key_file = item.split(":", 2)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected NAME:ROLE:KEY_FILE", param_hint="--validator")
        try:
            pair = load_node_key(Path(key_file))
        except InvalidConfig as error:
            _fail(str(error))
        validator_entries.append({"name": name, "public_key": pair.public_key.hex(), "role": role,
                                  "p2p_address": ""})
    try:
        fee_address = crypto.parse_address(fee_account)
    except crypto.InvalidAddress as error:
        _fail(f"--fee-account: {error}")
    document = genesis_document(chain_id, genesis_time_ms or int(time.time() * 1000),
                                [_parse_asset_option(a) for a in assets], fee_address, validator_entries,
                                [_parse_account_option(a) for a in accounts])
    try:
        parsed = parse_genesis(document)
    except InvalidGenesis as error:
        _fail(f"genesis is invalid: {error}")
    out_path.write_text(json.dumps(document, indent=2) + "\n")
    data = {"path": str(out_path), "chain_id": chain_id, "genesis_hash": parsed.hash.hex()}
    _emit(as_json, data, f"wrote {out_path} (chain {chain_id}, genesis hash {parsed.hash.hex()[:16]}…)")


@genesis.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def genesis_check(path: Path, as_json: bool) -> None:
    """Validate a genesis file and print its hash."""
    try:
        parsed = load_genesis(path)
    except InvalidGenesis as error:
        _fail(str(error))
    data = {"chain_id": parsed.params.chain_id, "genesis_hash": parsed.hash.hex(),
            "validators": len(parsed.params.validators), "assets": [a.code for a in parsed.params.assets]}
    _emit(as_json, data, f"ok: chain {data['chain_id']}, {data['validators']} validator(s), assets "
                         f"{', '.join(data['assets'])}, genesis hash {data['genesis_hash']}")


# --- run ---------------------------------------------------------------------------------------

@main.command("run")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), required=True, help="Node home folder.")
@click.option("--rpc-port", type=int, default=None, help="Override the config's rpc_port.")
@click.option("--rpc-host", default=None, help="Override the config's rpc_host.")
def run(home: Path, rpc_port: int | None, rpc_host: str | None) -> None:
    """Run a node from an existing home (config.toml, genesis.json, validator_key.json)."""
    from node.consensus.record_file import LogCorrupted, StorageFailure
    from node.main import bootstrap, run_node
    try:
        config = load_config(home, {"rpc_port": rpc_port, "rpc_host": rpc_host})
    except InvalidConfig as error:
        _fail(str(error))
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        node = bootstrap(config)
    except (InvalidConfig, InvalidGenesis, StoreError, LogCorrupted, StorageFailure, ValueError) as error:
        _fail(str(error))
    profile_path = os.environ.get("PAYCHAIN_PROFILE")
    if profile_path:  # for benchmarks: where does the time go?
        import cProfile
        with cProfile.Profile() as profiler:
            asyncio.run(run_node(node))
        profiler.dump_stats(profile_path)
    else:
        asyncio.run(run_node(node))


# --- status ------------------------------------------------------------------------------------

@main.command("status")
@click.option("--rpc", "rpc_url", default=lambda: os.environ.get("PAYCHAIN_RPC", "http://127.0.0.1:26657/rpc"),
              show_default="$PAYCHAIN_RPC or http://127.0.0.1:26657/rpc", help="Node JSON-RPC URL.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(rpc_url: str, as_json: bool) -> None:
    """Show a node's chain, height, mempool and consensus state."""
    from wallet_cli.rpc_client import RpcClient, RpcUnavailable
    try:
        data = RpcClient(rpc_url, timeout_s=5).call("node_status")
    except RpcUnavailable as error:
        _fail(str(error), EXIT_UNREACHABLE)
    _emit(as_json, data, _status_text(data))


def _status_text(data: dict[str, Any]) -> str:
    return (f"chain      {data['chain_id']}\n"
            f"height     {data['height']}  ({data['block_hash'][:18]}…)\n"
            f"state root {data['state_root'][:18]}…\n"
            f"view       {data.get('view')}  primary {data.get('primary')}\n"
            f"peers      {len(data.get('peers', []))}\n"
            f"mempool    {data['mempool']['txs']} txs, {data['mempool']['bytes']} bytes")


main.add_command(localnet_group)
main.add_command(gateway_group)

if __name__ == "__main__":
    main()
