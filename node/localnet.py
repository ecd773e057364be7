"""A local network on 127.0.0.1: homes, genesis, dev keys, and the node processes.

Dev keys are derived from their names (`dev_keys("alice")`), so the default local
genesis is reproducible and is the `genesis.json` at the repository root. They are
public knowledge: never use them outside a local network. Every dev keystore is
encrypted with the password `DEV_PASSWORD`.

    <home>/genesis.json
    <home>/localnet.json        the processes `up` started (pid, rpc url), for `down`/`status`
    <home>/node<i>/             one node home per validator (config.toml, validator_key.json, data/, node.log)
    <home>/full<j>/             one home per non-voting full node (node_key.json instead of a validator key),
                                allowlisted in every other node's config.toml
    <home>/wallet/              dev keystores: gateway, merchant, alice, bob, carol, developer, and the
                                validator operators validator-0 … (governance)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node import crypto
from node.contracts import system
from node.config import NODE_KEY_FILE, FullNodePeer, save_node_key, write_config
from node.genesis import genesis_document

DEV_PASSWORD = "paychain-dev"
GATEWAY_TOKEN_FILE = "gateway_node_token"
"""In the network's home: the token every node lists in `gateway_tokens` and the local gateway presents."""
DEFAULT_CHAIN_ID = "paychain-local"
DEFAULT_GENESIS_TIME_MS = 1_790_000_000_000
VALIDATOR_ROLES = ("merchant", "gateway", "user")
DEV_ASSETS = [{"code": "CNY", "decimals": 2, "min_fee": 1}, {"code": "USD", "decimals": 2, "min_fee": 1}]
DEV_ACCOUNTS: list[tuple[str, str, dict[str, int]]] = [
    ("gateway", "gateway", {"CNY": 1_000_000, "USD": 1_000_000}),
    ("merchant", "merchant", {"CNY": 100_000}),
    ("alice", "user", {"CNY": 100_000_000, "USD": 1_000_000}),
    ("bob", "user", {"CNY": 100_000_000, "USD": 1_000_000}),
    ("carol", "user", {"CNY": 100_000_000, "USD": 1_000_000}),
    ("developer", "user", {"CNY": 1_000_000}),
]
"""(name, role, balances in minor units): users hold 1,000,000.00 CNY and 10,000.00 USD; the gateway and the
merchant hold enough to pay fees; `developer` may deploy contracts."""
CROSSBORDER_INIT_ARGS = [2, 100]
"""Cross-border payments on a local network: 2 of (payer, merchant, gateway) approve; a quote is valid for at
most 100 blocks."""
ORDERS_INIT_ARGS = [100, 30, 200]
"""The orders contract on a local network: a 1% fee (100 basis points), buyers have 30 blocks after shipping
to confirm or ask for a refund, merchants 200 blocks to ship."""


def write_secret(path: Path, text: str) -> None:
    """Write a one-line secret readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text + "\n")


def dev_keys(name: str) -> crypto.KeyPair:
    """The well-known dev key called `name` (public knowledge: local networks only)."""
    return crypto.KeyPair.from_seed(crypto.hash_bytes(b"paychain-dev-key/" + name.encode()))


def operator_accounts(validators: int) -> list[tuple[str, str, dict[str, int]]]:
    """Each validator's operator account (the validator key's address), funded to pay governance fees."""
    return [(f"validator-{index}", "user", {"CNY": 1_000_000}) for index in range(validators)] if validators > 1 else []


def rpc_port_of(base_port: int, index: int) -> int:
    return base_port + 2 * index


def p2p_port_of(base_port: int, index: int) -> int:
    return base_port + 2 * index + 1


def default_genesis(validators: int = 1, chain_id: str = DEFAULT_CHAIN_ID, base_port: int = 26657) -> dict[str, Any]:
    """The local network's genesis; validator i listens for peers on 127.0.0.1:p2p_port_of(base_port, i)."""
    validator_entries = []
    for index in range(validators):
        keys = dev_keys(f"validator-{index}")
        address = "" if validators == 1 else f"127.0.0.1:{p2p_port_of(base_port, index)}"
        validator_entries.append({"name": f"validator-{index}", "public_key": keys.public_key.hex(),
                                  "role": VALIDATOR_ROLES[min(index, len(VALIDATOR_ROLES) - 1)],
                                  "p2p_address": address})
    accounts = [{"address": crypto.format_address(dev_keys(name).address), "role": role, "balances": balances}
                for name, role, balances in DEV_ACCOUNTS + operator_accounts(validators)]
    contracts = [{"name": system.ORDERS, "source": system.source(system.ORDERS), "init_args": ORDERS_INIT_ARGS},
                 {"name": system.CROSSBORDER, "source": system.source(system.CROSSBORDER),
                  "init_args": CROSSBORDER_INIT_ARGS}]
    return genesis_document(chain_id, DEFAULT_GENESIS_TIME_MS, DEV_ASSETS, dev_keys("fees").address,
                            validator_entries, accounts, deployers=[dev_keys("developer").address], contracts=contracts)


@dataclass(frozen=True, slots=True)
class NodeProcess:
    name: str
    home: Path
    pid: int
    rpc_url: str


def full_node_peers(validators: int, full_nodes: int, base_port: int) -> list[FullNodePeer]:
    """The local full nodes: dev keys `full-node-<j>`, ports after the validators'."""
    return [FullNodePeer(dev_keys(f"full-node-{j}").public_key, f"127.0.0.1:{p2p_port_of(base_port, validators + j)}")
            for j in range(full_nodes)]


def create_homes(home: Path, validators: int, base_port: int, genesis: dict[str, Any] | None = None,
                 write_wallets: bool = True, full_nodes: int = 0) -> list[Path]:
    """Write genesis, node homes and dev keystores under `home`; returns the node homes (validators first)."""
    from wallet_cli.keystore import FLOOR_KDF, Keystore  # the wallet package owns the keystore format

    home.mkdir(parents=True, exist_ok=True)
    genesis = genesis or default_genesis(validators, base_port=base_port)
    genesis_text = json.dumps(genesis, indent=2) + "\n"
    (home / "genesis.json").write_text(genesis_text)
    allowlist = full_node_peers(validators, full_nodes, base_port)
    gateway_token = secrets.token_hex(32)   # the local gateway's: nodes keep WebSocket slots for it
    write_secret(home / GATEWAY_TOKEN_FILE, gateway_token)
    node_homes = []
    for index in range(validators + full_nodes):
        voting = index < validators
        node_home = home / (f"node{index}" if voting else f"full{index - validators}")
        node_home.mkdir(exist_ok=True)
        (node_home / "genesis.json").write_text(genesis_text)
        keys = dev_keys(f"validator-{index}") if voting else dev_keys(f"full-node-{index - validators}")
        write_config(node_home, rpc_port=rpc_port_of(base_port, index), p2p_port=p2p_port_of(base_port, index),
                     full_nodes=[peer for peer in allowlist if peer.public_key != keys.public_key],
                     admin_token=secrets.token_hex(32), gateway_tokens=[gateway_token])
        save_node_key(node_home / ("validator_key.json" if voting else NODE_KEY_FILE), keys)
        node_homes.append(node_home)
    if write_wallets:
        keystore = Keystore(home / "wallet")
        for name, _, _ in DEV_ACCOUNTS + operator_accounts(validators):
            if not keystore.path_of(name).exists():
                keystore.save(name, dev_keys(name), DEV_PASSWORD, **FLOOR_KDF)   # dev keys: the cheapest accepted
    return node_homes


def start_node(node_home: Path, name: str, rpc_port: int) -> NodeProcess:
    """Start `paychain run` for one home as a detached process logging to node.log."""
    log = open(node_home / "node.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--home", str(node_home)],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    log.close()
    return NodeProcess(name, node_home, process.pid, f"http://127.0.0.1:{rpc_port}/rpc")


def wait_healthy(rpc_url: str, pid: int, timeout_s: float = 30.0) -> None:
    health_url = rpc_url.rsplit("/", 1)[0] + "/healthz"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(pid):
            raise RuntimeError(f"process {pid} exited during start-up (see its log: node.log, or gateway.log / "
                               f"receiver.log for the gateway)")
        try:
            with urllib.request.urlopen(health_url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"node at {rpc_url} did not become healthy within {timeout_s:.0f} s")


def process_alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass  # not our child (started by an earlier `up`): fall back to a signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def save_processes(home: Path, processes: list[NodeProcess]) -> None:
    document = {"nodes": [{"name": p.name, "home": str(p.home), "pid": p.pid, "rpc_url": p.rpc_url}
                          for p in processes]}
    (home / "localnet.json").write_text(json.dumps(document, indent=2) + "\n")


def load_processes(home: Path) -> list[NodeProcess]:
    path = home / "localnet.json"
    if not path.exists():
        return []
    document = json.loads(path.read_text())
    return [NodeProcess(n["name"], Path(n["home"]), int(n["pid"]), n["rpc_url"]) for n in document["nodes"]]


def is_our_node(process: NodeProcess) -> bool:
    """True if `pid` is still the node we started (not a recycled pid of something else)."""
    try:
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"node.cli" in command and str(process.home).encode() in command


def stop_node(process: NodeProcess, timeout_s: float = 10.0) -> bool:
    """SIGTERM the node we started, then SIGKILL if it lingers; returns True if it was running."""
    if not is_our_node(process):
        return False
    os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(process.pid) or not is_our_node(process):
            return True
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    return True
