"""The in-memory twin of the libp2p `Network`: peers in one event loop, faults from one seed.

A `MemoryHub` joins `MemoryNetwork`s the way the real transport joins hosts — each network
knows an allowlist of peer keys, which `update_peers` changes, and refuses frames from anyone
else — and injects what a real
network does to frames: loss, duplication, random delay (so reordering), and partitions that
cut links until healed. All randomness comes from the hub's seeded generator. Used by tests
that run the real asyncio consensus runner without sockets; the deterministic simulator in
`tests/sim` drives the consensus driver directly instead.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Collection, Sequence

from node import limits
from node.p2p.network import PeerEvent, PeerInfo, Received


@dataclass
class Faults:
    loss: float = 0.0
    """Probability that a frame is lost."""
    duplicate: float = 0.0
    """Probability that a frame arrives twice."""
    delay_ms: tuple[int, int] = (0, 0)
    """Each copy of a frame is delayed by a uniform draw from this range (milliseconds)."""


class MemoryHub:
    """Carries frames between the memory networks of one event loop."""

    def __init__(self, seed: int, faults: Faults | None = None) -> None:
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.networks: dict[bytes, MemoryNetwork] = {}
        self._cut: set[frozenset[bytes]] = set()

    def partition(self, group: Collection[bytes]) -> None:
        """Cut every link between `group` and the rest until `heal()`."""
        inside = set(group)
        for a in self.networks:
            for b in self.networks:
                if (a in inside) != (b in inside):
                    self._cut.add(frozenset((a, b)))
        self._announce()

    def heal(self) -> None:
        self._cut.clear()
        self._announce()

    def linked(self, a: bytes, b: bytes) -> bool:
        return a in self.networks and b in self.networks and frozenset((a, b)) not in self._cut

    def carry(self, sender: bytes, target: bytes, message: bytes) -> None:
        if not self.linked(sender, target) or self.rng.random() < self.faults.loss:
            return
        copies = 2 if self.rng.random() < self.faults.duplicate else 1
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            delay_ms = self.rng.randint(*self.faults.delay_ms)
            loop.call_later(delay_ms / 1000, self._arrive, sender, target, message)

    def _arrive(self, sender: bytes, target: bytes, message: bytes) -> None:
        network = self.networks.get(target)
        if network is not None and self.linked(sender, target):  # the link may have broken meanwhile
            network.arrive(sender, message)

    def _announce(self) -> None:
        """Tell every network which of its peers it can reach now (as link up/down events)."""
        for network in self.networks.values():
            network.refresh_links()


class MemoryNetwork:
    """The `Network` port over a `MemoryHub` (see node/p2p/network.py for the contract).

    A link is up while the hub links the two networks and each allows the other (as a Noise
    handshake needs both sides to admit the other).
    """

    def __init__(self, hub: MemoryHub, public_key: bytes, peers: Sequence[bytes],
                 receive_queue_frames_max: int = limits.p2p_receive_queue_frames_max) -> None:
        self.hub = hub
        self.public_key = public_key
        self.allowed = tuple(peer for peer in dict.fromkeys(peers) if peer != public_key)
        """The configured peers; replaced whole by `update_peers`."""
        self._addresses: dict[bytes, str] = dict.fromkeys(self.allowed, "memory")
        self._inbox: asyncio.Queue[Received | PeerEvent] = asyncio.Queue(receive_queue_frames_max)
        self._connected: dict[bytes, bool] = {peer: False for peer in self.allowed}
        self._last_seen_ms: dict[bytes, int] = {}
        self._counters = dict.fromkeys(
            ("sent_frames", "received_frames", "refused_peers", "dropped_frames", "unrouted_frames"), 0)

    async def run(self) -> None:
        self.hub.networks[self.public_key] = self
        self.hub._announce()
        try:
            await asyncio.Event().wait()
        finally:
            del self.hub.networks[self.public_key]
            self.hub._announce()

    def send(self, peer: bytes, message: bytes) -> None:
        if len(message) > limits.p2p_frame_bytes_max:
            raise ValueError(f"frame of {len(message)} bytes exceeds p2p_frame_bytes_max")
        if peer not in self._connected:
            self._counters["unrouted_frames"] += 1
            return
        self._counters["sent_frames"] += 1
        self.hub.carry(self.public_key, peer, message)

    def broadcast(self, message: bytes) -> None:
        for peer in self.allowed:
            self.send(peer, message)

    def update_peers(self, peers: Sequence[tuple[bytes, str]]) -> None:
        """As `Network.update_peers`; an address is only shown by `peers()`."""
        wanted: dict[bytes, str] = {}
        for public_key, address in peers:
            if public_key == self.public_key:
                continue
            if public_key in wanted:
                raise ValueError(f"peer {public_key.hex()} is listed twice")
            wanted[public_key] = address
        for peer in [peer for peer in self._connected if peer not in wanted]:
            del self._addresses[peer]
            self._last_seen_ms.pop(peer, None)
            if self._connected.pop(peer):
                self._put(PeerEvent(peer, False))
        for peer, address in wanted.items():
            self._connected.setdefault(peer, False)
            self._addresses[peer] = address
        self.allowed = tuple(wanted)
        self.hub._announce()  # links to new peers come up, and the removed peers see theirs go down

    async def receive(self) -> Received | PeerEvent:
        return await self._inbox.get()

    def peers(self) -> list[PeerInfo]:
        return [PeerInfo(peer, self._addresses[peer], connected, self._last_seen_ms.get(peer, 0))
                for peer, connected in self._connected.items()]

    def stats(self) -> dict[str, int]:
        return {**self._counters, "connected_peers": sum(self._connected.values())}

    # --- called by the hub ------------------------------------------------------------------

    def arrive(self, sender: bytes, message: bytes) -> None:
        if sender not in self._connected:
            self._counters["refused_peers"] += 1  # as the real host refuses at the handshake
            return
        self._last_seen_ms[sender] = int(time.time() * 1000)
        self._put(Received(sender, message))

    def refresh_links(self) -> None:
        for peer, was in self._connected.items():
            now = self.hub.linked(self.public_key, peer) and self.public_key in self.hub.networks[peer]._connected
            if now != was:
                self._connected[peer] = now
                self._put(PeerEvent(peer, now))

    def _put(self, item: Received | PeerEvent) -> None:
        try:
            self._inbox.put_nowait(item)
            if isinstance(item, Received):
                self._counters["received_frames"] += 1
        except asyncio.QueueFull:
            self._counters["dropped_frames"] += 1
