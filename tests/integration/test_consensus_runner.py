"""The asyncio PBFT runner over the in-memory Network twin (node/p2p/memory.py).

Four validators and one full node in one event loop, each with its own ledger on an
in-memory store: frames are lost, duplicated and reordered under a seed, a validator is cut
off and healed, and an outsider that nobody allowlisted sends frames. Bounded in wall time.
"""

from __future__ import annotations

import asyncio

import pytest

from node.app import Ledger
from node.blocks import header_hash
from node.consensus.runner import PbftRunner
from node.consensus.wal import MemoryVoteLog
from node.p2p.memory import Faults, MemoryHub, MemoryNetwork
from node.storage.chain import ChainStore
from node.storage.kv import MemoryStore
from node.transactions import Transfer
from tests.support import keys, make_genesis, signer_for

GENESIS = make_genesis(validators=4)
sign = signer_for(GENESIS)
VALIDATORS = [keys(f"validator-{i}") for i in range(4)]
FULL_NODE = keys("full-node-0")
OUTSIDER = keys("outsider")
WAIT_S = 30


class Member:
    def __init__(self, hub: MemoryHub, key_pair, peers: list[bytes], full_nodes: list[bytes]) -> None:
        self.ledger = Ledger(ChainStore(MemoryStore(), GENESIS))
        self.network = MemoryNetwork(hub, key_pair.public_key, peers)
        self.runner = PbftRunner(self.ledger, self.network, key_pair, MemoryVoteLog(), base_timeout_ms=300,
                                 full_node_keys=full_nodes)


async def wait_for(condition, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def transfer(nonce: int) -> bytes:
    return sign("alice", nonce, Transfer(keys("bob").address, "CNY", 1))


async def scenario() -> None:
    hub = MemoryHub(seed=7, faults=Faults(loss=0.05, duplicate=0.05, delay_ms=(0, 15)))
    validator_keys = [v.public_key for v in VALIDATORS]
    everyone = validator_keys + [FULL_NODE.public_key]
    members = [Member(hub, v, everyone, [FULL_NODE.public_key]) for v in VALIDATORS]
    full_node = Member(hub, FULL_NODE, everyone, [])
    outsider = MemoryNetwork(hub, OUTSIDER.public_key, everyone)
    everything = members + [full_node]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(m.network.run()) for m in everything]
        tasks += [group.create_task(m.runner.run()) for m in everything]
        tasks.append(group.create_task(outsider.run()))
        try:
            await run_checks(hub, members, full_node, outsider)
        finally:
            for task in tasks:
                task.cancel()


async def run_checks(hub: MemoryHub, members: list[Member], full_node: Member, outsider: MemoryNetwork) -> None:
    # Transactions submitted to the full node and to validators are all committed everywhere.
    nonce = 0
    for target in [full_node, members[1], members[2], full_node]:
        target.runner.driver.submit([transfer(nonce)])
        nonce += 1
    everyone = members + [full_node]
    await wait_for(lambda: all(m.ledger.state().account(keys("alice").address).nonce == nonce for m in everyone),
                   "the first transfers to commit everywhere")

    # Cut validator 3 off; the other three keep committing; healed, it catches up.
    hub.partition([VALIDATORS[3].public_key])
    cut_height = members[3].ledger.head.height
    for _ in range(3):
        members[0].runner.driver.submit([transfer(nonce)])
        nonce += 1
        await wait_for(lambda: all(m.ledger.state().account(keys("alice").address).nonce == nonce
                                   for m in members[:3]), "the majority to commit without validator 3")
    assert members[3].ledger.head.height == cut_height
    hub.heal()
    top = members[0].ledger.head.height
    await wait_for(lambda: members[3].ledger.head.height >= top and full_node.ledger.head.height >= top,
                   "validator 3 and the full node to catch up")

    # An outsider's frames are refused by every allowlisting network and change nothing.
    for member in members:
        outsider.send(member.network.public_key, b"\x00" * 16)
    await asyncio.sleep(0.1)
    assert sum(m.network.stats()["refused_peers"] for m in members) >= 1

    for height in range(1, top + 1):
        hashes = {header_hash(m.ledger.store.get_block(height).header) for m in everyone}
        assert len(hashes) == 1, f"nodes disagree at height {height}"
    assert full_node.runner.info()["mode"] == "full-node" and not full_node.runner.driver.replica.signed


@pytest.mark.timeout(120)
def test_runners_commit_over_a_lossy_memory_network_with_a_partition_and_a_full_node() -> None:
    asyncio.run(scenario())
