"""Node configuration: `<home>/config.toml` plus command-line overrides, validated on load.

A node home looks like this (made by `paychain localnet up` or by hand):

    <home>/config.toml          this file
    <home>/genesis.json         the chain's genesis
    <home>/validator_key.json   the validator's ed25519 seed (mode 0600); absent on a full node
    <home>/data/                LevelDB
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from node import crypto, limits


class InvalidConfig(ValueError):
    """A configuration value that breaks a rule; the message names the setting."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    home: Path
    """Folder holding config, genesis, key and data."""
    genesis_path: Path
    data_path: Path
    validator_key_path: Path | None
    """None for a non-voting node."""
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 26657
    p2p_port: int = 26656
    p2p_host: str = "127.0.0.1"
    """Address the validator network listens on (0.0.0.0 or a host's own address across machines)."""
    view_timeout_ms: int = 1_000
    """PBFT view timeout at view 0 of a height; it doubles per failed view."""
    block_interval_ms_min: int = limits.block_interval_ms_min
    """Shortest time between the end of one commit and the next proposal (batching)."""
    log_level: str = "INFO"


def _check_port(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value <= 65535:
        raise InvalidConfig(f"{name} must be a port number 0..65535")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _check_integer(value: Any, name: str) -> int:
    if type(value) is not int:
        raise InvalidConfig(f"{name} must be an integer")
    return value


def _check_log_level(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise InvalidConfig(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    return value.upper()


def load_config(home: Path, overrides: dict[str, Any] | None = None) -> NodeConfig:
    home = Path(home).resolve()
    path = home / "config.toml"
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise InvalidConfig(f"{path}: {error}") from error
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {"rpc_host", "rpc_port", "p2p_port", "p2p_host", "view_timeout_ms", "block_interval_ms_min", "log_level",
             "genesis", "data", "validator_key"}
    unknown = set(values) - known
    if unknown:
        raise InvalidConfig(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    key_path = home / values.get("validator_key", "validator_key.json")
    config = NodeConfig(
        home=home,
        genesis_path=home / values.get("genesis", "genesis.json"),
        data_path=home / values.get("data", "data"),
        validator_key_path=key_path if key_path.exists() else None,
        rpc_host=str(values.get("rpc_host", "127.0.0.1")),
        rpc_port=_check_port(values.get("rpc_port", 26657), "rpc_port"),
        p2p_port=_check_port(values.get("p2p_port", 26656), "p2p_port"),
        p2p_host=str(values.get("p2p_host", "127.0.0.1")),
        view_timeout_ms=_check_integer(values.get("view_timeout_ms", 1_000), "view_timeout_ms"),
        block_interval_ms_min=_check_integer(values.get("block_interval_ms_min", limits.block_interval_ms_min),
                                             "block_interval_ms_min"),
        log_level=_check_log_level(values.get("log_level", "INFO")),
    )
    if not limits.block_interval_ms_min <= config.block_interval_ms_min <= limits.block_interval_ms_max:
        raise InvalidConfig(f"block_interval_ms_min must be in {limits.block_interval_ms_min}.."
                            f"{limits.block_interval_ms_max}")
    if not config.genesis_path.exists():
        raise InvalidConfig(f"no genesis at {config.genesis_path}")
    return config


def write_config(home: Path, rpc_port: int, p2p_port: int, rpc_host: str = "127.0.0.1",
                 p2p_host: str = "127.0.0.1") -> None:
    (Path(home) / "config.toml").write_text(
        "# Paychain node configuration (see node/config.py for every setting)\n"
        f'rpc_host = "{rpc_host}"\n'
        f"rpc_port = {rpc_port}\n"
        f'p2p_host = "{p2p_host}"\n'
        f"p2p_port = {p2p_port}\n"
        f"block_interval_ms_min = {limits.block_interval_ms_min}\n"
        'log_level = "INFO"\n'
    )


def save_node_key(path: Path, keys: crypto.KeyPair) -> None:
    """Write a node's key file readable by its owner only (like CometBFT's priv_validator_key.json)."""
    path = Path(path)
    document = {"address": crypto.format_address(keys.address), "public_key": keys.public_key.hex(),
                "seed": keys.seed.hex()}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)


def load_node_key(path: Path) -> crypto.KeyPair:
    try:
        document = json.loads(Path(path).read_text())
        keys = crypto.KeyPair.from_seed(bytes.fromhex(document["seed"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidConfig(f"cannot read the node key {path}: {error}") from error
    if keys.public_key.hex() != document.get("public_key"):
        raise InvalidConfig(f"{path}: public key does not match the seed")
    return keys


def with_overrides(config: NodeConfig, **changes: Any) -> NodeConfig:
    return replace(config, **changes)
