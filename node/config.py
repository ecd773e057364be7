"""Node configuration: `<home>/config.toml` plus command-line overrides, validated on load.

A node home looks like this (made by `paychain localnet up` or by hand):

    <home>/config.toml          this file
    <home>/genesis.json         the chain's genesis
    <home>/validator_key.json   the validator's ed25519 seed (mode 0600)
    <home>/node_key.json        on a non-voting full node instead: its own key, the identity its
                                peers allowlist (made on first start if absent)
    <home>/data/                LevelDB

Validators admit a full node only if their config lists it:

    [[full_nodes]]
    public_key = "<64 hex digits>"
    p2p_address = "10.0.0.9:26656"
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from node import crypto, limits


class InvalidConfig(ValueError):
    """A configuration value that breaks a rule; the message names the setting."""


@dataclass(frozen=True, slots=True)
class FullNodePeer:
    """A non-voting node this node exchanges blocks and transactions with."""

    public_key: bytes
    p2p_address: str
    """host:port (or a libp2p multiaddress) it listens on."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    home: Path
    """Folder holding config, genesis, key and data."""
    genesis_path: Path
    data_path: Path
    validator_key_path: Path | None
    """The node's key: validator_key.json, else node_key.json; None if neither exists yet. A key that is
    not a genesis validator's makes a non-voting full node."""
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
    full_nodes: tuple[FullNodePeer, ...] = ()
    """Allowlisted non-voting peers; anyone outside the validators and this list is refused."""
    admin_token: str | None = None
    """Bearer token for the admin_* RPC methods over HTTP (at least 32 characters); None turns them off."""
    gateway_tokens: tuple[str, ...] = ()
    rpc_hostnames: tuple[str, ...] = ()
    """DNS names clients use to reach this node's RPC (e.g. behind a load balancer); IP addresses and
    localhost always work. Requests naming any other Host are refused (DNS-rebinding defence)."""
    """Bearer tokens of the payment gateways this node serves (at least 32 characters each): a WebSocket
    client presenting one may use the slots `limits.ws_connections_reserved_for_gateways` keeps free, and
    is not held to the per-address limit."""


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


NODE_KEY_FILE = "node_key.json"


def _check_full_nodes(value: Any) -> tuple[FullNodePeer, ...]:
    if not isinstance(value, list) or len(value) > limits.full_nodes_max:
        raise InvalidConfig(f"full_nodes must be a list of at most {limits.full_nodes_max} [[full_nodes]] tables")
    peers = []
    for number, entry in enumerate(value, 1):
        if not isinstance(entry, dict) or set(entry) != {"public_key", "p2p_address"}:
            raise InvalidConfig(f"full_nodes entry {number} must have exactly public_key and p2p_address")
        try:
            public_key = bytes.fromhex(entry["public_key"]) if isinstance(entry["public_key"], str) else b""
        except ValueError:
            public_key = b""
        if len(public_key) != 32:
            raise InvalidConfig(f"full_nodes entry {number}: public_key must be 64 hex digits")
        if not isinstance(entry["p2p_address"], str) or not entry["p2p_address"]:
            raise InvalidConfig(f"full_nodes entry {number}: p2p_address must be host:port or a multiaddress")
        peers.append(FullNodePeer(public_key, entry["p2p_address"]))
    if len({peer.public_key for peer in peers}) != len(peers):
        raise InvalidConfig("full_nodes lists a public key twice")
    return tuple(peers)


def _check_admin_token(value: Any, name: str = "admin_token") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) < 32 or not value.isascii() or not value.isprintable():
        raise InvalidConfig(f"{name} must be at least 32 printable ASCII characters (e.g. `openssl rand -hex 32`)")
    return value


def _check_hostnames(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > 64 or not all(
            isinstance(name, str) and 0 < len(name) <= 253 and name.isascii() and name.isprintable()
            and ":" not in name and " " not in name for name in value):
        raise InvalidConfig("rpc_hostnames must be a list of at most 64 DNS names (no ports)")
    return tuple(value)


def _check_gateway_tokens(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limits.gateway_tokens_max:
        raise InvalidConfig(f"gateway_tokens must be a list of at most {limits.gateway_tokens_max} tokens")
    return tuple(_check_admin_token(token, "each of gateway_tokens") for token in value)


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
             "genesis", "data", "validator_key", "full_nodes", "admin_token", "gateway_tokens", "rpc_hostnames"}
    unknown = set(values) - known
    if unknown:
        raise InvalidConfig(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    key_path = home / values.get("validator_key", "validator_key.json")
    if "validator_key" not in values and not key_path.exists():
        key_path = home / NODE_KEY_FILE
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
        full_nodes=_check_full_nodes(values.get("full_nodes", [])),
        admin_token=_check_admin_token(values.get("admin_token")),
        gateway_tokens=_check_gateway_tokens(values.get("gateway_tokens", [])),
        rpc_hostnames=_check_hostnames(values.get("rpc_hostnames", [])),
    )
    if not limits.block_interval_ms_min <= config.block_interval_ms_min <= limits.block_interval_ms_max:
        raise InvalidConfig(f"block_interval_ms_min must be in {limits.block_interval_ms_min}.."
                            f"{limits.block_interval_ms_max}")
    if not config.genesis_path.exists():
        raise InvalidConfig(f"no genesis at {config.genesis_path}")
    return config


def write_config(home: Path, rpc_port: int, p2p_port: int, rpc_host: str = "127.0.0.1",
                 p2p_host: str = "127.0.0.1", full_nodes: Sequence[FullNodePeer] = (),
                 admin_token: str | None = None, gateway_tokens: Sequence[str] = ()) -> None:
    """Write `<home>/config.toml` (readable by its owner only: it may hold the admin and gateway tokens)."""
    allowlist = "".join(f'\n[[full_nodes]]\npublic_key = "{peer.public_key.hex()}"\n'
                        f'p2p_address = "{peer.p2p_address}"\n' for peer in full_nodes)
    token = "" if admin_token is None else f'admin_token = "{admin_token}"\n'
    if gateway_tokens:
        token += "gateway_tokens = [" + ", ".join(f'"{gateway}"' for gateway in gateway_tokens) + "]\n"
    path = Path(home) / "config.toml"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(
        "# Paychain node configuration (see node/config.py for every setting)\n"
        f'rpc_host = "{rpc_host}"\n'
        f"rpc_port = {rpc_port}\n"
        f'p2p_host = "{p2p_host}"\n'
        f"p2p_port = {p2p_port}\n"
        f"block_interval_ms_min = {limits.block_interval_ms_min}\n"
        'log_level = "INFO"\n'
        + token
        + allowlist
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
