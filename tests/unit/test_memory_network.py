"""The in-memory Network twin (node/p2p/memory.py): allowlists, link events and a peer set that changes."""

from __future__ import annotations

import asyncio

import pytest

from node.p2p.memory import MemoryHub, MemoryNetwork
from node.p2p.network import PeerEvent, Received
from tests.support import keys, run_async

A, B, C = (keys(f"memory-{name}").public_key for name in "abc")


def drain(network: MemoryNetwork) -> list[Received | PeerEvent]:
    items = []
    while not network._inbox.empty():
        items.append(network._inbox.get_nowait())
    return items


def connected(network: MemoryNetwork) -> set[bytes]:
    return {peer.public_key for peer in network.peers() if peer.connected}


async def settle() -> None:
    """Let the hub's zero-delay deliveries (loop callbacks) run."""
    await asyncio.sleep(0.01)


@run_async
async def test_a_peer_added_then_removed_is_linked_then_cut_off_while_the_others_carry_on() -> None:
    hub = MemoryHub(seed=1)
    net_a, net_b, net_c = MemoryNetwork(hub, A, [B]), MemoryNetwork(hub, B, [A]), MemoryNetwork(hub, C, [A])
    tasks = [asyncio.create_task(net.run()) for net in (net_a, net_b, net_c)]
    try:
        await settle()
        assert connected(net_a) == {B} and connected(net_c) == set(), "a does not allow c yet"
        drain(net_a), drain(net_b), drain(net_c)
        net_c.send(A, b"let me in")
        await settle()
        assert drain(net_a) == [] and net_a.stats()["refused_peers"] == 1

        net_a.update_peers([(B, "b"), (C, "c")])
        assert drain(net_a) == [PeerEvent(C, True)] and drain(net_c) == [PeerEvent(A, True)]
        net_a.send(C, b"welcome")
        net_c.send(A, b"thanks")
        await settle()
        assert drain(net_c) == [Received(A, b"welcome")] and drain(net_a) == [Received(C, b"thanks")]
        assert [(peer.public_key, peer.address) for peer in net_a.peers()] == [(B, "b"), (C, "c")]

        net_a.update_peers([(B, "b")])
        assert drain(net_a) == [PeerEvent(C, False)] and drain(net_c) == [PeerEvent(A, False)]
        net_a.send(C, b"after removal")
        net_c.send(A, b"after removal")
        net_b.send(A, b"b carries on")
        await settle()
        assert drain(net_c) == [] and drain(net_a) == [Received(B, b"b carries on")]
        assert net_a.stats()["unrouted_frames"] == 1 and net_a.stats()["refused_peers"] == 2
        assert [peer.public_key for peer in net_a.peers()] == [B] and connected(net_a) == {B}
        assert drain(net_b) == [], "b saw no link change"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@run_async
async def test_a_frame_in_flight_from_a_peer_removed_meanwhile_is_refused() -> None:
    hub = MemoryHub(seed=1)
    hub.faults.delay_ms = (50, 50)
    net_a, net_c = MemoryNetwork(hub, A, [C]), MemoryNetwork(hub, C, [A])
    tasks = [asyncio.create_task(net.run()) for net in (net_a, net_c)]
    try:
        await settle()
        drain(net_a)
        net_c.send(A, b"in flight")
        net_a.update_peers([])
        await asyncio.sleep(0.1)
        assert drain(net_a) == [PeerEvent(C, False)] and net_a.stats()["refused_peers"] == 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_update_peers_is_idempotent_and_skips_our_own_key() -> None:
    net_a = MemoryNetwork(MemoryHub(seed=1), A, [B])
    net_a.update_peers([(A, "me"), (B, "b"), (C, "c")])
    net_a.update_peers([(A, "me"), (B, "b"), (C, "c")])
    assert [peer.public_key for peer in net_a.peers()] == [B, C] and net_a.allowed == (B, C)
    assert drain(net_a) == [], "no link came up: the networks are not running"


def test_invalid_update_peers_with_a_key_listed_twice() -> None:
    net_a = MemoryNetwork(MemoryHub(seed=1), A, [B])
    with pytest.raises(ValueError, match="listed twice"):
        net_a.update_peers([(B, "b"), (B, "b")])
    assert net_a.allowed == (B,)
