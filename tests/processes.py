"""Helpers for tests that run real node processes and the real CLIs on 127.0.0.1."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.localnet import DEV_PASSWORD, load_processes, wait_healthy
from wallet_cli.rpc_client import RpcClient

BIN = Path(sys.executable).parent
CLI_TIMEOUT_S = 60


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class LocalNetwork:
    """A local network started by `paychain localnet up` in a temporary home."""

    home: Path
    rpc_url: str
    pid: int

    @property
    def rpc(self) -> RpcClient:
        return RpcClient(self.rpc_url, timeout_s=10)

    def wallet(self, *args: str, password: str | None = DEV_PASSWORD, env: dict[str, str] | None = None) -> CliResult:
        """Run `paywallet` against this network's dev wallet folder."""
        environment = dict(os.environ, PAYWALLET_DIR=str(self.home / "wallet"), PAYCHAIN_RPC=self.rpc_url)
        environment.pop("PAYWALLET_PASSWORD", None)
        if password is not None:
            environment["PAYWALLET_PASSWORD"] = password
        environment.update(env or {})
        completed = subprocess.run([str(BIN / "paywallet"), *args], env=environment, capture_output=True,
                                   text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    def wait_height(self, height: int, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.rpc.call("node_status")
            if status["height"] >= height:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"height {status['height']} < {height} after {timeout_s} s")
            time.sleep(0.05)


def paychain(*args: str) -> CliResult:
    completed = subprocess.run([str(BIN / "paychain"), *args], capture_output=True, text=True,
                               timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def localnet_up(home: Path) -> LocalNetwork:
    base_port = free_port_range(2)
    result = paychain("localnet", "up", "--home", str(home), "--validators", "1", "--base-port", str(base_port),
                      "--no-gateway", "--json")
    assert result.code == 0, result.stderr
    node = result.json()["nodes"][0]
    return LocalNetwork(home, node["rpc_url"], node["pid"])


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port_range(count: int) -> int:
    """A base port with `count` consecutive free ports after it (best effort, loopback only).

    Chosen below the kernel's ephemeral range: ports there are handed out to outgoing connections
    (the nodes' own dials among them), which could take one between this check and a node's listen.
    """
    ephemeral_low, _ = _ephemeral_port_range()
    for _ in range(50):
        base = random.randrange(10_000, max(10_001, ephemeral_low - count))
        try:
            sockets = []
            for port in range(base, base + count):
                probe = socket.socket()
                sockets.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
    raise RuntimeError("no free port range")


def validator_network_up(home: Path, validators: int = 4, full_nodes: int = 0,
                         gateway: bool = False) -> list[LocalNetwork]:
    """`paychain localnet up --validators N --full-nodes K`: one LocalNetwork view per node, validators first.

    With `gateway`, the payment gateway and the demo webhook receiver run too (see `gateway_of`)."""
    base_port = free_port_range(2 * (validators + full_nodes) + (2 if gateway else 0))
    result = paychain("localnet", "up", "--home", str(home), "--validators", str(validators),
                      "--full-nodes", str(full_nodes), "--base-port", str(base_port),
                      "--gateway" if gateway else "--no-gateway", "--json")
    assert result.code == 0, result.stderr
    return [LocalNetwork(home, node["rpc_url"], node["pid"]) for node in result.json()["nodes"]]


def gateway_of(home: Path) -> dict[str, Any]:
    """The running local gateway: url, the demo merchant's API key, the webhook receiver's events URL."""
    by_name = {p.name: p for p in load_processes(home)}
    gateway, receiver = by_name["gateway"], by_name["webhook-receiver"]
    return {"url": gateway.rpc_url.rstrip("/"), "pid": gateway.pid, "receiver_url": receiver.rpc_url.rstrip("/"),
            "receiver_pid": receiver.pid, "api_key": (home / "gateway" / "merchant_api_key").read_text().strip(),
            "webhook_secret": (home / "gateway" / "webhook_secret").read_text().strip()}


def localnet_down(home: Path) -> None:
    result = paychain("localnet", "down", "--home", str(home))
    assert result.code == 0, result.stderr
    for process in load_processes(home):  # verify: nothing we started is left behind
        assert not Path(f"/proc/{process.pid}").exists() or _is_zombie(process.pid), process


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def kill_hard(pid: int) -> None:
    """SIGKILL a process we started and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} survived SIGKILL")
        time.sleep(0.02)


def start_node(home: Path, rpc_url: str) -> subprocess.Popen:
    """Run `paychain run` for an existing node home (e.g. after a kill)."""
    log = open(home / "node.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--home", str(home)], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    wait_healthy(rpc_url, process.pid, timeout_s=30)
    return process


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (e.g. a node's signature-verification workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def wait_gone(pids: list[int], timeout_s: float = 10) -> list[int]:
    """Wait for processes to end; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
        time.sleep(0.05)
    return alive
