"""A non-voting full node beside four validator processes, over real libp2p on 127.0.0.1.

It follows the chain by block sync with the same blocks and state roots, forwards the
transactions sent to it, catches up after `kill -9` and a restart, and a node that no
validator allowlisted is refused at the Noise handshake and learns nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
import urllib.request

import pytest

from node.config import write_config
from tests.e2e.test_validator_network import committed_hashes, status
from tests.processes import LocalNetwork, free_port_range, kill_hard, localnet_down, start_node, validator_network_up
from tests.support import dev_transfer, network_of

pytestmark = pytest.mark.slow

CATCH_UP_TIMEOUT_S = 30


def transfer(node: LocalNetwork, nonce: int) -> bytes:
    """A transfer from alice, signed for the network `node` serves."""
    return dev_transfer(network_of(node.rpc), "alice", nonce, "bob", 100 + nonce)


def wait_committed(node: LocalNetwork, tx_hash: str, timeout_s: float = CATCH_UP_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        result = node.rpc.call("tx_get", tx_hash)
        if result["status"] == "committed":
            return result
        assert time.monotonic() < deadline, f"{tx_hash} is {result['status']} after {timeout_s} s"
        time.sleep(0.1)


def wait_height(node: LocalNetwork, height: int, timeout_s: float = CATCH_UP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while status(node)["height"] < height:
        assert time.monotonic() < deadline, f"{node.rpc_url} did not reach height {height}"
        time.sleep(0.1)


def metric(node: LocalNetwork, name: str, label: str) -> float:
    text = urllib.request.urlopen(node.rpc_url.rsplit("/", 1)[0] + "/metrics", timeout=5).read().decode()
    match = re.search(rf'^{name}\{{counter="{label}"\}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name}{{{label}}} missing from /metrics"
    return float(match.group(1))


@pytest.fixture
def network(tmp_path):
    nodes = validator_network_up(tmp_path / "net", validators=4, full_nodes=1)
    try:
        yield nodes
    finally:
        localnet_down(nodes[0].home)


def test_full_node_follows_forwards_and_catches_up(network, tmp_path) -> None:
    validators, full_node = network[:4], network[4]
    node_status = status(full_node)
    assert node_status["mode"] == "full-node" and node_status["validator"] is None

    # Transactions sent to the full node reach the validators and become final everywhere.
    hashes = [full_node.rpc.call("tx_send", "0x" + transfer(full_node, nonce).hex())["hash"] for nonce in range(5)]
    receipts = [wait_committed(validators[0], tx_hash) for tx_hash in hashes]
    assert all(r["receipt"]["success"] for r in receipts)
    top = max(r["height"] for r in receipts)
    wait_height(full_node, top)
    assert wait_committed(full_node, hashes[-1])["block_hash"] == receipts[-1]["block_hash"]
    assert committed_hashes(full_node, top) == committed_hashes(validators[1], top)

    # kill -9 the full node; the validators go on; restarted, it catches up by block sync.
    kill_hard(full_node.pid)
    more = [validators[nonce % 4].rpc.call("tx_send", "0x" + transfer(validators[0], nonce).hex())["hash"]
            for nonce in range(5, 10)]
    top = max(wait_committed(validators[0], tx_hash)["height"] for tx_hash in more)
    restarted = start_node(full_node.home / "full0", full_node.rpc_url)
    try:
        wait_height(full_node, top)
        # (block hash, state root, transactions) at every height
        assert committed_hashes(full_node, top) == committed_hashes(validators[2], top)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=20)


def test_node_not_on_the_allowlist_is_refused(network, tmp_path) -> None:
    validators = network[:4]
    outsider_home = tmp_path / "outsider"
    outsider_home.mkdir()
    shutil.copy(validators[0].home / "genesis.json", outsider_home / "genesis.json")
    rpc_port = free_port_range(2)
    p2p_port = rpc_port + 1
    write_config(outsider_home, rpc_port=rpc_port, p2p_port=p2p_port)  # no key: it makes one on first start
    rpc_url = f"http://127.0.0.1:{rpc_port}/rpc"
    refused_before = sum(metric(v, "paychain_p2p", "refused_peers") for v in validators)
    outsider = start_node(outsider_home, rpc_url)
    try:
        node_key = json.loads((outsider_home / "node_key.json").read_text())
        assert node_key["public_key"] not in {v["public_key"] for v in validators[0].rpc.call("chain_getValidators")}
        hashes = [validators[0].rpc.call("tx_send", "0x" + transfer(validators[0], nonce).hex())["hash"]
                  for nonce in range(3)]
        top = max(wait_committed(validators[0], tx_hash)["height"] for tx_hash in hashes)
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while sum(metric(v, "paychain_p2p", "refused_peers") for v in validators) <= refused_before:
            assert time.monotonic() < deadline, "no validator counted the outsider's refused handshake"
            time.sleep(0.2)
        assert top >= 1 and status(LocalNetwork(outsider_home, rpc_url, outsider.pid))["height"] == 0
    finally:
        outsider.send_signal(signal.SIGTERM)
        outsider.wait(timeout=20)
