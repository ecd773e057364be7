"""Four validators on four "hosts": network namespaces joined by veth pairs and a bridge.

The test makes its own namespaces, bridge and addresses (10.77.<n>.0/24), cuts one validator
off with `ip link set … down`, heals it, and deletes everything it created at the end.
Nothing here touches a real interface; it needs root and iproute2 (both present in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.config import save_node_key, write_config
from node.localnet import default_genesis, dev_keys
from tests.support import dev_transfer, network_of
from wallet_cli.rpc_client import RpcClient, RpcUnavailable

pytestmark = pytest.mark.slow

VALIDATORS = 4
RPC_PORT = 26657
P2P_PORT = 26656


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


class Hosts:
    """Namespaces ns0..ns3 with 10.77.N.(i+1), a bridge with 10.77.N.254 in the test's namespace."""

    def __init__(self) -> None:
        suffix = os.getpid() % 10_000
        self.subnet = f"10.77.{os.getpid() % 250}"
        self.bridge = f"pcbr{suffix}"
        self.namespaces = [f"pcns{suffix}x{i}" for i in range(VALIDATORS)]
        self.links = [f"pcv{suffix}x{i}" for i in range(VALIDATORS)]
        self.created: list[tuple[str, str]] = []

    def address(self, index: int) -> str:
        return f"{self.subnet}.{index + 1}"

    def create(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.created.append(("link", self.bridge))
        sh("ip", "addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for index, (namespace, link) in enumerate(zip(self.namespaces, self.links)):
            sh("ip", "netns", "add", namespace)
            self.created.append(("netns", namespace))
            sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            self.created.append(("link", link))
            sh("ip", "link", "set", link, "master", self.bridge)
            sh("ip", "link", "set", link, "up")
            sh("ip", "netns", "exec", namespace, "ip", "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
            sh("ip", "netns", "exec", namespace, "ip", "link", "set", "eth0", "up")
            sh("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")

    def cut(self, index: int, up: bool) -> None:
        sh("ip", "link", "set", self.links[index], "up" if up else "down")

    def delete(self) -> None:
        for kind, name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name] if kind == "netns" else ["ip", "link", "del", name],
                           capture_output=True, timeout=20)


@pytest.fixture
def hosts():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the multi-host test needs root and iproute2 (`ip`), which CI machines have")
    hosts = Hosts()
    try:
        hosts.create()
        yield hosts
    finally:
        hosts.delete()
    remaining = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in remaining for ns in hosts.namespaces), "namespaces were left behind"


def make_homes(root: Path, hosts: Hosts) -> list[Path]:
    genesis = default_genesis(VALIDATORS)
    for index, validator in enumerate(genesis["validators"]):
        validator["p2p_address"] = f"{hosts.address(index)}:{P2P_PORT}"
    homes = []
    for index in range(VALIDATORS):
        home = root / f"node{index}"
        home.mkdir(parents=True)
        (home / "genesis.json").write_text(json.dumps(genesis))
        write_config(home, rpc_port=RPC_PORT, p2p_port=P2P_PORT, rpc_host=hosts.address(index),
                     p2p_host=hosts.address(index))
        save_node_key(home / "validator_key.json", dev_keys(f"validator-{index}"))
        homes.append(home)
    return homes


def height(client: RpcClient) -> int:
    return client.call("node_status")["height"]


def wait_until(condition, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


def send_transfer(client: RpcClient, nonce: int) -> None:
    raw = dev_transfer(network_of(client), "alice", nonce, "bob", 1)
    client.call("tx_send", "0x" + raw.hex())


def test_a_cut_off_host_rejoins_without_a_fork(hosts, tmp_path) -> None:
    homes = make_homes(tmp_path, hosts)
    processes = []
    try:
        for index, home in enumerate(homes):
            log = open(home / "node.log", "wb")
            processes.append(subprocess.Popen(
                ["ip", "netns", "exec", hosts.namespaces[index], sys.executable, "-m", "node.cli", "run", "--home",
                 str(home)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        clients = [RpcClient(f"http://{hosts.address(i)}:{RPC_PORT}/rpc", timeout_s=3) for i in range(VALIDATORS)]

        def all_up() -> bool:
            try:
                return all(c.call("node_status") for c in clients)
            except RpcUnavailable:
                return False

        wait_until(all_up, 30, "validators did not start in their namespaces")
        nonce = 0
        for _ in range(3):
            send_transfer(clients[0], nonce)
            nonce += 1
        wait_until(lambda: min(height(c) for c in clients) >= 2, 30, "no blocks across namespaces")

        isolated_at = height(clients[3])
        hosts.cut(3, up=False)  # host 3 is cut off from the others (and from this test: no RPC to it meanwhile)
        majority = clients[:3]
        start = min(height(c) for c in majority)
        for _ in range(6):
            send_transfer(clients[0], nonce)
            nonce += 1
            time.sleep(0.3)
        wait_until(lambda: min(height(c) for c in majority) >= start + 3, 60, "the majority stopped committing")

        hosts.cut(3, up=True)  # heal: it catches up by block sync
        target = min(height(c) for c in majority)
        assert target >= isolated_at + 3, "blocks were committed while host 3 was cut off"

        def caught_up() -> bool:
            try:
                return height(clients[3]) >= target
            except RpcUnavailable:
                return False

        wait_until(caught_up, 60, "the healed host did not catch up")
        for h in range(1, target + 1):
            hashes = {c.call("chain_getBlock", h)["header"]["hash"] for c in clients}
            assert len(hashes) == 1, f"fork at height {h}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
