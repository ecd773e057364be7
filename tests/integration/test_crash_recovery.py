"""`kill -9` a real node under load, restart it, and check nothing committed was lost."""

from __future__ import annotations

import json
import threading
import time

import pytest

from node import crypto
from node.localnet import default_genesis, dev_keys
from node.rpc.views import signing_domain_from_json
from node.transactions import Transaction, Transfer, sign_transaction
from tests.processes import children_of, kill_hard, localnet_down, localnet_up, paychain, start_node, wait_gone
from wallet_cli.rpc_client import RpcCallError, RpcClient, RpcUnavailable

pytestmark = pytest.mark.slow

SENDERS = ("alice", "bob", "carol")
LOAD_TXS_MAX = 3_000
LOAD_SECONDS_MAX = 20


def signed_transfers(domain: crypto.SigningDomain, count_per_sender: int) -> list[bytes]:
    raws = []
    for nonce in range(count_per_sender):
        for index, name in enumerate(SENDERS):
            sender = dev_keys(name)
            recipient = dev_keys(SENDERS[(index + 1) % len(SENDERS)])
            body = Transfer(recipient.address, "CNY", 1 + nonce % 7)
            raws.append(sign_transaction(sender, domain, Transaction(domain.chain_id, sender.public_key, nonce, "CNY",
                                                                     1, body)))
    return raws


class Load:
    """Submits pre-signed transfers in small batches until stopped, the node dies, or the bound is reached."""

    def __init__(self, rpc_url: str, raws: list[bytes]) -> None:
        self.client = RpcClient(rpc_url, timeout_s=5)
        self.raws = raws
        self.submitted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_SECONDS_MAX
        for offset in range(0, len(self.raws), 90):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                self.client.call("tx_sendBatch", ["0x" + r.hex() for r in self.raws[offset:offset + 90]])
            except (RpcUnavailable, RpcCallError):
                return  # the node was killed
            self.submitted = offset + 90
            time.sleep(0.01)


def committed_blocks(client: RpcClient, up_to: int) -> dict[int, dict]:
    return {height: client.call("chain_getBlock", height) for height in range(1, up_to + 1)}


def test_kill_9_under_load_loses_nothing_committed(tmp_path) -> None:
    network = localnet_up(tmp_path / "net")
    node_home = network.home / "node0"
    restarted = None
    try:
        domain = signing_domain_from_json(network.rpc.call("node_status"))
        load = Load(network.rpc_url, signed_transfers(domain, LOAD_TXS_MAX // len(SENDERS)))
        load.thread.start()
        network.wait_height(5, timeout_s=30)
        # What the node reported as committed just before the kill.
        status = network.rpc.call("node_status")
        before = committed_blocks(network.rpc, status["height"])
        acknowledged = [h for block in before.values() for h in block["transactions"]]
        assert len(acknowledged) > 0
        workers = children_of(network.pid)
        assert len(workers) >= 2, "the node verifies batches in worker processes (plus a resource tracker)"
        kill_hard(network.pid)
        assert wait_gone(workers) == [], "verification workers outlived a kill -9 of their node"
        load.stop.set()
        load.thread.join(timeout=10)

        restarted = start_node(node_home, network.rpc_url)
        client = RpcClient(network.rpc_url, timeout_s=10)
        after_status = client.call("node_status")
        assert after_status["height"] >= status["height"]
        after = committed_blocks(client, status["height"])
        for height, block in before.items():
            assert after[height]["header"]["hash"] == block["header"]["hash"], height
            assert after[height]["header"]["state_root"] == block["header"]["state_root"], height
        for tx_hash in acknowledged:
            assert client.call("tx_get", tx_hash)["status"] == "committed"
        # The restarted node keeps committing: a new transfer becomes final.
        alice = dev_keys("alice")
        nonce = client.call("account_get", crypto.format_address(alice.address))["pending_nonce"]
        raw = sign_transaction(alice, domain, Transaction(domain.chain_id, alice.public_key, nonce, "CNY", 1,
                                                          Transfer(dev_keys("bob").address, "CNY", 5)))
        tx_hash = client.call("tx_send", "0x" + raw.hex())["hash"]
        deadline = time.monotonic() + 15
        while client.call("tx_get", tx_hash)["status"] != "committed":
            assert time.monotonic() < deadline, "restarted node did not commit a new transaction"
            time.sleep(0.05)
        # The state root of the head is what the node rebuilt from LevelDB and checked at start-up.
        status = client.call("node_status")   # then the block of that very height: more may commit in between
        assert client.call("chain_getBlock", status["height"])["header"]["state_root"] == status["state_root"]
    finally:
        if restarted is not None:
            restarted.terminate()
            restarted.wait(timeout=15)
        localnet_down(network.home)


def test_a_store_from_another_chain_is_refused(tmp_path) -> None:
    network = localnet_up(tmp_path / "net")
    network.wait_height(0)
    localnet_down(network.home)
    node_home = network.home / "node0"
    other = default_genesis(1, chain_id="paychain-other")
    (node_home / "genesis.json").write_text(json.dumps(other))
    result = paychain("run", "--home", str(node_home))
    assert result.code == 1
    assert "another chain" in result.stderr and "paychain-local" in result.stderr
