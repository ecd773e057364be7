"""Governance adds a validator to a running 4-validator network (real processes, real libp2p).

A fifth node starts with a key no validator knows: refused at the handshake, it learns
nothing. Three operators approve `add-validator`; from the change's height every node uses
five validators (2f+1 = 4), admits the newcomer, and the newcomer syncs and votes — shown by
stopping one of the original four: the remaining three plus the newcomer still commit.
"""

from __future__ import annotations

import json
import shutil
import signal
import time

import pytest

from node.config import save_node_key, write_config
from node.localnet import dev_keys
from tests.e2e.test_validator_network import status
from tests.processes import LocalNetwork, free_port_range, kill_hard, localnet_down, start_node, validator_network_up

pytestmark = pytest.mark.slow

WAIT_S = 40


def wallet_ok(node: LocalNetwork, *args: str) -> dict:
    result = node.wallet(*args, "--json")
    assert result.code == 0, f"paywallet {' '.join(args)}: {result.stdout} {result.stderr}"
    return result.json()


def blocks_with_payments(node: LocalNetwork, count: int) -> None:
    """Blocks only come with transactions: `count` transfers, each waited for."""
    for _ in range(count):
        wallet_ok(node, "transfer", "--from", "alice", "--to", "bob", "--amount", "0.01", "--asset", "CNY", "--wait")


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def network(tmp_path):
    nodes = validator_network_up(tmp_path / "net", 4)
    try:
        yield nodes
    finally:
        localnet_down(nodes[0].home)


def test_governance_adds_a_validator_that_then_votes(network, tmp_path) -> None:
    newcomer_keys = dev_keys("validator-4")
    home = tmp_path / "newcomer"
    home.mkdir()
    shutil.copy(network[0].home / "genesis.json", home / "genesis.json")
    rpc_port = free_port_range(2)
    p2p_port = rpc_port + 1
    write_config(home, rpc_port=rpc_port, p2p_port=p2p_port)
    save_node_key(home / "validator_key.json", newcomer_keys)
    newcomer = LocalNetwork(home, f"http://127.0.0.1:{rpc_port}/rpc", 0)
    process = start_node(home, newcomer.rpc_url)
    newcomer = LocalNetwork(home, newcomer.rpc_url, process.pid)
    try:
        assert status(newcomer)["mode"] == "full-node" and status(newcomer)["height"] == 0
        proposal = wallet_ok(network[0], "governance", "propose", "add-validator", "--name", "validator-4",
                             "--public-key", newcomer_keys.public_key.hex(), "--role", "user", "--p2p-address",
                             f"127.0.0.1:{p2p_port}", "--from", "validator-0", "--wait")
        for operator in ("validator-1", "validator-2"):
            wallet_ok(network[0], "governance", "approve", proposal["proposal_id"], "--from", operator, "--wait")
        assert wallet_ok(network[0], "governance", "show", proposal["proposal_id"])["status"] == "executed"
        blocks_with_payments(network[0], 2)  # past the change's height (two blocks after enactment)
        for node in network:
            assert len(node.rpc.call("chain_getValidators")) == 5
        wait_until(lambda: status(newcomer)["height"] >= status(network[0])["height"],
                   "the newcomer to sync once admitted")
        wait_until(lambda: status(newcomer)["mode"] == "pbft", "the newcomer to vote")
        # Stop one of the original four: three of them plus the newcomer are 4 = 2f+1 of five.
        stopped = network[3]
        kill_hard(stopped.pid)
        remaining = network[:3] + [newcomer]
        blocks_with_payments(network[0], 2)
        top = status(network[0])["height"]
        wait_until(lambda: status(newcomer)["height"] >= top, "the newcomer to commit the new blocks")
        certificate = network[0].rpc.call("chain_getBlock", top)["certificate"]
        assert 4 in {signature["validator_index"] for signature in certificate["signatures"]}, json.dumps(
            certificate)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
