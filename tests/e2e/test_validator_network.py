"""Four validator processes over real libp2p on 127.0.0.1 under steady load, with faults.

kill -9 of a replica and of the primary, SIGSTOP/SIGCONT, and a restart that catches up by
block sync. Every transaction acknowledged as committed before a fault is checked after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from tests.processes import (LocalNetwork, kill_hard, localnet_down, start_node, validator_network_up,
                             wait_gone, children_of)
from tests.support import dev_transfer, network_of
from wallet_cli.rpc_client import RpcCallError, RpcClient, RpcUnavailable

pytestmark = pytest.mark.slow

SENDERS = ("alice", "bob", "carol")
LOAD_SECONDS_MAX = 90
PROGRESS_TIMEOUT_S = 30


class Load:
    """Signed transfers from three senders, each sent to a rotating validator, until stopped (bounded)."""

    def __init__(self, nodes: list[LocalNetwork]) -> None:
        self.urls = [n.rpc_url for n in nodes]
        self.domain = network_of(nodes[0].rpc)
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_SECONDS_MAX
        nonces = {name: 0 for name in SENDERS}
        turn = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            for name in SENDERS:
                raw = dev_transfer(self.domain, name, nonces[name], "merchant", 1)
                turn += 1
                for attempt in range(len(self.urls)):  # a dead validator: try the next one
                    try:
                        RpcClient(self.urls[(turn + attempt) % len(self.urls)], timeout_s=3).call(
                            "tx_send", "0x" + raw.hex())
                        nonces[name] += 1
                        self.sent += 1
                        break
                    except RpcCallError:
                        break  # e.g. nonce_taken after a retry: the tx is in some mempool already
                    except RpcUnavailable:
                        continue
            time.sleep(0.05)


def status(node: LocalNetwork) -> dict:
    return node.rpc.call("node_status")


def wait_progress(nodes: list[LocalNetwork], blocks: int, timeout_s: float = PROGRESS_TIMEOUT_S) -> int:
    """Wait until every listed node's height grew by `blocks`; returns the new minimum height."""
    start = {id(n): status(n)["height"] for n in nodes}
    deadline = time.monotonic() + timeout_s
    while True:
        heights = {id(n): status(n)["height"] for n in nodes}
        if all(heights[id(n)] >= start[id(n)] + blocks for n in nodes):
            return min(heights.values())
        if time.monotonic() > deadline:
            raise AssertionError(f"no progress of {blocks} blocks in {timeout_s} s: {start} -> {heights}")
        time.sleep(0.1)


def committed_hashes(node: LocalNetwork, up_to: int) -> dict[int, tuple[str, str, list[str]]]:
    result = {}
    for height in range(1, up_to + 1):
        block = node.rpc.call("chain_getBlock", height)
        result[height] = (block["header"]["hash"], block["header"]["state_root"], block["transactions"])
    return result


def primary_index(nodes: list[LocalNetwork]) -> int:
    primary = status(nodes[0])["primary"]
    addresses = [v["address"] for v in nodes[0].rpc.call("chain_getValidators")]
    return addresses.index(primary)


@pytest.fixture
def network(tmp_path):
    nodes = validator_network_up(tmp_path / "net", 4)
    load = Load(nodes)
    load.thread.start()
    try:
        yield nodes
    finally:
        load.stop.set()
        load.thread.join(timeout=10)
        localnet_down(nodes[0].home)


def kill_and_restart(nodes: list[LocalNetwork], victim_index: int) -> subprocess.Popen:
    """kill -9 one validator, check the other three keep committing without changing history, restart it,
    and check it catches up to identical blocks and state roots. Returns the restarted process."""
    victim = nodes[victim_index]
    workers = children_of(victim.pid)
    kill_hard(victim.pid)
    assert wait_gone(workers) == [], "the node's worker processes outlived it"
    alive = [n for i, n in enumerate(nodes) if i != victim_index]
    acknowledged_height = min(status(n)["height"] for n in alive)
    acknowledged = committed_hashes(alive[0], acknowledged_height)
    height = wait_progress(alive, 3)
    assert height > acknowledged_height
    restarted = start_node(victim.home / f"node{victim_index}", victim.rpc_url)
    nodes[victim_index] = LocalNetwork(victim.home, victim.rpc_url, restarted.pid)
    wait_progress(alive, 1)
    target = max(status(n)["height"] for n in alive)
    deadline = time.monotonic() + PROGRESS_TIMEOUT_S
    while status(nodes[victim_index])["height"] < target:
        assert time.monotonic() < deadline, "the restarted validator did not catch up by block sync"
        time.sleep(0.1)
    reference = committed_hashes(alive[0], target)
    assert {h: reference[h] for h in acknowledged} == acknowledged, "committed blocks changed after a fault"
    for node in alive[1:] + [nodes[victim_index]]:
        assert committed_hashes(node, target) == reference
    return restarted


def test_kill_9_a_replica_then_the_primary(network) -> None:
    nodes = network
    restarted: list[subprocess.Popen] = []
    try:
        wait_progress(nodes, 3)
        restarted.append(kill_and_restart(nodes, (primary_index(nodes) + 1) % 4))
        primary = primary_index(nodes)
        before_view_change = min(status(n)["height"] for n in nodes)
        restarted.append(kill_and_restart(nodes, primary))
        # The height whose primary was killed was decided in a later view.
        top = min(status(n)["height"] for n in nodes)
        assert any(nodes[0].rpc.call("chain_getBlock", h)["certificate"]["view"] > 0
                   for h in range(before_view_change + 1, top + 1))
    finally:
        for process in restarted:
            process.send_signal(signal.SIGTERM)
        for process in restarted:
            process.wait(timeout=20)


def test_a_stopped_node_is_tolerated_and_catches_up_after_sigcont(network) -> None:
    nodes = network
    wait_progress(nodes, 2)
    frozen = nodes[(primary_index(nodes) + 2) % 4]
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        others = [n for n in nodes if n is not frozen]
        wait_progress(others, 3)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    target = max(status(n)["height"] for n in others)
    deadline = time.monotonic() + PROGRESS_TIMEOUT_S
    while status(frozen)["height"] < target:
        assert time.monotonic() < deadline, "the resumed node did not catch up"
        time.sleep(0.1)
    assert committed_hashes(frozen, target) == committed_hashes(others[0], target)
