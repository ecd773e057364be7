"""The libp2p validator network on 127.0.0.1: real hosts (Noise, yamux, TCP), each in its own trio thread.

Every test starts its networks through `Running`, which closes them all at the end, and an
autouse fixture checks that no thread or file descriptor outlives the test. Waits are
bounded by WAIT_S each and a test by its pytest timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.crypto import KeyPair
from node.p2p.frames import FrameDecoder, FrameTooLarge, encode_frame, encode_frames
from node.p2p.host import PEERS_MAX, STREAM_WINDOW_BYTES_MAX, LibP2PNetwork, P2PError, peer_id_from_public_key
from node.p2p.network import PeerEvent, Received
from tests.support import free_port, keys, run_async

WAIT_S = 10.0
"""Longest any single wait for the network (start, connect, a frame) may take."""

pytestmark = pytest.mark.timeout(90)


@dataclass(frozen=True)
class Node:
    """A validator identity and the loopback port it listens on."""

    keys: KeyPair
    port: int

    @property
    def public_key(self) -> bytes:
        return self.keys.public_key


def make_nodes(count: int, prefix: str = "p2p") -> list[Node]:
    return [Node(keys(f"{prefix}-{index}"), free_port()) for index in range(count)]


def allowlist(nodes: list[Node]) -> list[tuple[bytes, str]]:
    return [(node.public_key, f"127.0.0.1:{node.port}") for node in nodes]


def network(node: Node, allowed: list[Node], **bounds: int) -> LibP2PNetwork:
    return LibP2PNetwork(node.keys, "127.0.0.1", node.port, allowlist(allowed), **bounds)


class Running:
    """Networks started in one test; `close_all` stops every one still running."""

    def __init__(self) -> None:
        self._tasks: dict[LibP2PNetwork, asyncio.Task[None]] = {}

    async def start(self, *networks: LibP2PNetwork) -> None:
        for net in networks:
            self._tasks[net] = asyncio.create_task(net.run())
        await asyncio.wait_for(asyncio.gather(*(net.wait_started() for net in networks)), WAIT_S)

    async def stop(self, net: LibP2PNetwork) -> None:
        await net.close()
        await asyncio.wait_for(self._tasks.pop(net), WAIT_S)

    async def close_all(self) -> None:
        for net in list(self._tasks):
            await self.stop(net)


@contextlib.asynccontextmanager
async def running():
    started = Running()
    try:
        yield started
    finally:
        await started.close_all()


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def next_of_kind(net: LibP2PNetwork, kind: type, aside: list | None = None):
    """The next item of `kind` that `net` delivers; other items on the way are set aside in `aside`."""
    while True:
        item = await asyncio.wait_for(net.receive(), WAIT_S)
        if isinstance(item, kind):
            return item
        if aside is not None:
            aside.append(item)


async def next_frame(net: LibP2PNetwork, events: list[PeerEvent] | None = None) -> Received:
    """The next frame `net` receives; peer events on the way are set aside in `events`."""
    return await next_of_kind(net, Received, events)


async def expect_frame(net: LibP2PNetwork, sender: Node, message: bytes,
                       events: list[PeerEvent] | None = None) -> None:
    """Assert the next frame `net` receives is `message` from `sender` (peer events go to `events`)."""
    frame = await next_frame(net, events)
    assert (frame.sender, frame.message) == (sender.public_key, message)


async def next_event(net: LibP2PNetwork, frames: list[Received] | None = None) -> PeerEvent:
    """The next peer event `net` delivers; frames on the way are set aside in `frames`."""
    return await next_of_kind(net, PeerEvent, frames)


async def no_frame_within(net: LibP2PNetwork, seconds: float) -> None:
    """Assert `net` receives no frame for `seconds` (peer events are allowed)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = await asyncio.wait_for(net.receive(), left)
        except TimeoutError:
            return
        assert not isinstance(item, Received), f"unexpected frame {item}"


def open_file_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """No libp2p thread or socket outlives a test."""
    threads_before = threading.active_count()
    descriptors_before = open_file_descriptors()
    yield
    gc.collect()
    assert threading.active_count() == threads_before, threading.enumerate()
    assert open_file_descriptors() <= descriptors_before


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- four validators -----------------------------------------------------------------------------

@run_async
async def test_four_networks_exchange_frames_between_every_ordered_pair() -> None:
    nodes = make_nodes(4)
    nets = [network(node, nodes) for node in nodes]
    async with running() as started:
        await started.start(*nets)
        for source, net in zip(nodes, nets):
            for target in nodes:
                if target is not source:
                    net.send(target.public_key, f"{source.port}->{target.port}".encode())

        for target, net in zip(nodes, nets):
            events: list[PeerEvent] = []
            got = {(frame.sender, frame.message) for frame in [await next_frame(net, events) for _ in range(3)]}
            expected = {(source.public_key, f"{source.port}->{target.port}".encode())
                        for source in nodes if source is not target}
            assert got == expected

        for node, net in zip(nodes, nets):
            await until(lambda net=net: all(peer.connected for peer in net.peers()), "every link is up")
            assert {peer.public_key for peer in net.peers()} == {n.public_key for n in nodes if n is not node}
            assert all(peer.last_seen_ms > 0 for peer in net.peers())
            assert all(f"/p2p/{peer_id_from_public_key(peer.public_key)}" in peer.address for peer in net.peers())


@run_async
async def test_broadcast_reaches_every_peer_with_the_senders_key() -> None:
    nodes = make_nodes(4)
    nets = [network(node, nodes) for node in nodes]
    async with running() as started:
        await started.start(*nets)
        for source, net in zip(nodes, nets):
            net.broadcast(b"vote from " + source.public_key)
        for target, net in zip(nodes, nets):
            frames = [await next_frame(net) for _ in range(3)]
            assert sorted((f.sender, f.message) for f in frames) == sorted(
                (s.public_key, b"vote from " + s.public_key) for s in nodes if s is not target)
        for net in nets:
            await until(lambda net=net: net.stats()["sent_frames"] == 3, "the senders count their writes")
            assert net.stats()["received_frames"] == 3


@run_async
async def test_peer_events_report_links_going_up_and_down() -> None:
    a, b = make_nodes(2)
    net_a, net_b = network(a, [a, b]), network(b, [a, b])
    async with running() as started:
        await started.start(net_a, net_b)
        assert await asyncio.wait_for(net_a.receive(), WAIT_S) == PeerEvent(b.public_key, True)
        await started.stop(net_b)
        assert await asyncio.wait_for(net_a.receive(), WAIT_S) == PeerEvent(b.public_key, False)
        assert not net_a.peers()[0].connected


# --- refusal ---------------------------------------------------------------------------------------

@run_async
async def test_a_peer_not_on_the_allowlist_is_refused_and_counted() -> None:
    a, b, outsider = make_nodes(3)
    net_a, net_b = network(a, [a, b]), network(b, [a, b])
    # The outsider knows a's key and address and keeps trying to reach it.
    net_outsider = network(outsider, [outsider, a])
    async with running() as started:
        await started.start(net_a, net_b, net_outsider)
        net_outsider.send(a.public_key, b"let me in")
        await until(lambda: net_a.stats()["refused_peers"] >= 2, "a refused the outsider twice (it redials)")
        net_b.send(a.public_key, b"from b")
        frame = await next_frame(net_a)
        assert (frame.sender, frame.message) == (b.public_key, b"from b")
        await no_frame_within(net_a, 0.5)
        assert not net_outsider.peers()[0].connected
        assert net_outsider.stats()["queued_frames"] == 1, "the frame never left the outsider"
        assert [peer.public_key for peer in net_a.peers()] == [b.public_key]


# --- a changing peer set --------------------------------------------------------------------------

def connected_keys(net: LibP2PNetwork) -> set[bytes]:
    return {peer.public_key for peer in net.peers() if peer.connected}


@run_async
async def test_a_peer_added_while_running_is_admitted_and_reached_both_ways() -> None:
    a, b, c = make_nodes(3)
    net_a, net_b = network(a, [a, b]), network(b, [a, b])
    net_c = network(c, [a, c])  # c allows a from the start; a does not know c yet
    async with running() as started:
        await started.start(net_a, net_b, net_c)
        net_c.send(a.public_key, b"let me in")
        await until(lambda: net_a.stats()["refused_peers"] >= 1, "a refuses c at the handshake")
        net_a.send(c.public_key, b"not a peer yet")
        assert net_a.stats()["unrouted_frames"] == 1
        await until(lambda: connected_keys(net_a) == {b.public_key}, "a links to b")

        net_a.update_peers(allowlist([a, b, c]))
        assert [peer.public_key for peer in net_a.peers()] == [b.public_key, c.public_key]
        net_a.send(c.public_key, b"welcome")
        assert (await next_frame(net_c)).message == b"welcome"
        await expect_frame(net_a, c, b"let me in")  # c's queued frame gets through now
        await until(lambda: connected_keys(net_a) == {b.public_key, c.public_key}, "a links to b and c")

        net_b.send(a.public_key, b"b carries on")
        await expect_frame(net_a, b, b"b carries on")
        assert net_b.stats()["link_errors"] == 0 and connected_keys(net_b) == {a.public_key}


@run_async
async def test_a_removed_peer_is_cut_off_and_refused_while_the_others_carry_on() -> None:
    a, b, c = make_nodes(3)
    net_a, net_b, net_c = (network(node, [a, b, c]) for node in (a, b, c))
    async with running() as started:
        await started.start(net_a, net_b, net_c)
        await until(lambda: connected_keys(net_a) == {b.public_key, c.public_key}, "a links to b and c")
        await until(lambda: a.public_key in connected_keys(net_c), "c links to a")
        net_c.send(a.public_key, b"c before")
        events: list[PeerEvent] = []
        await expect_frame(net_a, c, b"c before", events)

        net_a.update_peers(allowlist([a, b]))
        assert [peer.public_key for peer in net_a.peers()] == [b.public_key], "at once, on the asyncio side"
        frames: list[Received] = []
        while (event := await next_event(net_a, frames)) != PeerEvent(c.public_key, False):
            events.append(event)
        assert all(event.connected for event in events)
        await until(lambda: a.public_key not in connected_keys(net_c), "c sees a close the connection")

        # a sends c nothing more; c's frames and redials are refused at the handshake.
        net_a.send(c.public_key, b"to c after removal")
        net_a.broadcast(b"to everyone after removal")
        refused_before = net_a.stats()["refused_peers"]
        net_c.send(a.public_key, b"c after removal")
        await until(lambda: net_a.stats()["refused_peers"] > refused_before, "a refuses c's redial")
        assert net_a.stats()["unrouted_frames"] == 1

        # b is unaffected: frames flow both ways over the link it had all along.
        assert (await next_frame(net_b)).message == b"to everyone after removal"
        net_b.send(a.public_key, b"b after")
        await expect_frame(net_a, b, b"b after", events)
        await no_frame_within(net_a, 0.5)
        await no_frame_within(net_c, 0.1)
        assert frames == [] and PeerEvent(b.public_key, False) not in events
        assert connected_keys(net_a) == {b.public_key} and net_a.stats()["connected_peers"] == 1
        assert net_c.stats()["queued_frames"] == 1, "c's frame never left it"


@run_async
async def test_a_peer_whose_address_changes_is_dialled_at_the_new_one_with_its_queue_kept() -> None:
    a, b = make_nodes(2)
    nobody_listens = free_port()
    net_a = LibP2PNetwork(a.keys, "127.0.0.1", a.port, [(b.public_key, f"127.0.0.1:{nobody_listens}")])
    net_b = LibP2PNetwork(b.keys, "127.0.0.1", b.port, [(a.public_key, "")])  # b never dials a
    async with running() as started:
        await started.start(net_a, net_b)
        net_a.send(b.public_key, b"queued while b was unreachable")
        await asyncio.sleep(1.0)  # a fails a few times at the old address
        assert not net_a.peers()[0].connected and net_a.stats()["sent_frames"] == 0

        net_a.update_peers(allowlist([b]))
        assert str(b.port) in net_a.peers()[0].address
        assert (await next_frame(net_b)).message == b"queued while b was unreachable"
        net_b.send(a.public_key, b"reply")
        await expect_frame(net_a, b, b"reply")


@run_async
async def test_peers_set_before_run_are_the_initial_set() -> None:
    a, b = make_nodes(2)
    net_a, net_b = network(a, [a]), network(b, [a, b])
    net_a.update_peers(allowlist([a, b]))
    net_a.send(b.public_key, b"hello")
    async with running() as started:
        await started.start(net_a, net_b)
        assert (await next_frame(net_b)).message == b"hello"
        net_b.send(a.public_key, b"hello back")
        assert (await next_frame(net_a)).message == b"hello back"


@run_async
async def test_changing_the_peers_again_and_again_while_sending_ends_with_a_working_set() -> None:
    a, b, c = make_nodes(3)
    net_a, net_b, net_c = (network(node, [a, b, c]) for node in (a, b, c))
    async with running() as started:
        await started.start(net_a, net_b, net_c)
        for round_index in range(30):
            net_a.update_peers(allowlist([a, b] if round_index % 2 == 0 else [a, b, c]))
            net_a.broadcast(b"round %d" % round_index)
            net_a.send(c.public_key, b"to c")
            assert net_a.stats()["configured_peers"] == len(net_a.peers()) == 1 + round_index % 2
            await asyncio.sleep(0.02 * (round_index % 3))  # sometimes before, sometimes after a link comes up

        await until(lambda: connected_keys(net_a) == {b.public_key, c.public_key}, "a links to b and c")
        net_a.send(c.public_key, b"settled")
        while (await next_frame(net_c)).message != b"settled":
            pass
        net_c.send(a.public_key, b"c is back")
        events: list[PeerEvent] = []
        await expect_frame(net_a, c, b"c is back", events)
        # Per peer, links are reported up and down in turn however the changes interleaved.
        for key in (b.public_key, c.public_key):
            states = [event.connected for event in events if event.public_key == key]
            assert states == [index % 2 == 0 for index in range(len(states))], (key == c.public_key, states)
        assert [event for event in events if event.public_key == b.public_key] == [PeerEvent(b.public_key, True)]


# --- restart ----------------------------------------------------------------------------------------

@run_async
async def test_a_peer_that_restarts_on_the_same_key_and_port_is_reconnected() -> None:
    a, b = make_nodes(2)
    net_a, net_b = network(a, [a, b]), network(b, [a, b])
    async with running() as started:
        await started.start(net_a, net_b)
        net_a.send(b.public_key, b"before")
        assert (await next_frame(net_b)).message == b"before"

        await started.stop(net_b)
        await until(lambda: not net_a.peers()[0].connected, "a sees b go")
        net_a.send(b.public_key, b"while b was down")

        restarted_b = network(b, [a, b])
        await started.start(restarted_b)
        await until(lambda: net_a.peers()[0].connected, "a reconnects to b")
        assert (await next_frame(restarted_b)).message == b"while b was down"
        net_a.send(b.public_key, b"after")
        restarted_b.send(a.public_key, b"hello again")
        assert (await next_frame(restarted_b)).message == b"after"
        frame = await next_frame(net_a)
        assert (frame.sender, frame.message) == (b.public_key, b"hello again")


@run_async
async def test_a_peer_that_comes_up_late_is_reached_by_backoff() -> None:
    a, b = make_nodes(2)
    net_a = network(a, [a, b])
    # b never dials a (no address for it): only a's redials can bring the link up, and b's
    # stream to a then rides on the connection a made.
    net_b = LibP2PNetwork(b.keys, "127.0.0.1", b.port, [(a.public_key, ""), (b.public_key, "")])
    async with running() as started:
        await started.start(net_a)
        net_a.send(b.public_key, b"queued before b existed")
        await asyncio.sleep(1.0)  # a fails a few times; its wait grows
        assert not net_a.peers()[0].connected and net_a.stats()["sent_frames"] == 0
        await started.start(net_b)
        assert (await next_frame(net_b)).message == b"queued before b existed"
        net_b.send(a.public_key, b"reply")
        frame = await next_frame(net_a)
        assert (frame.sender, frame.message) == (b.public_key, b"reply")


# --- bad frames -----------------------------------------------------------------------------------

@run_async
async def test_a_frame_over_the_limit_is_dropped_with_its_stream_and_the_receiver_carries_on() -> None:
    a, b = make_nodes(2)
    net_a = network(a, [a, b], frame_bytes_max=1024)
    net_b = network(b, [a, b])  # b's own limit is the default, so it sends what a will reject
    async with running() as started:
        await started.start(net_a, net_b)
        assert await asyncio.wait_for(net_b.receive(), WAIT_S) == PeerEvent(a.public_key, True)
        net_b.send(a.public_key, b"x" * 1025)
        # a drops the stream: b sees its link go down and come back, as consensus would.
        assert await asyncio.wait_for(net_b.receive(), WAIT_S) == PeerEvent(a.public_key, False)
        assert await asyncio.wait_for(net_b.receive(), WAIT_S) == PeerEvent(a.public_key, True)
        assert net_a.stats()["bad_frames"] == 1
        net_b.send(a.public_key, b"y" * 1024)
        frame = await next_frame(net_a)
        assert (frame.sender, frame.message) == (b.public_key, b"y" * 1024)
        net_a.send(b.public_key, b"a still sends")
        assert (await next_frame(net_b)).message == b"a still sends"


# --- bounded queues and back-pressure ---------------------------------------------------------------

@run_async
async def test_flooding_a_peer_that_does_not_read_drops_the_oldest_frames_and_stays_bounded() -> None:
    a, b = make_nodes(2)
    receiver = network(a, [a, b], receive_queue_frames_max=64)
    sender = network(b, [a, b], send_queue_frames_max=256)
    async with running() as started:
        await started.start(receiver, sender)
        await until(lambda: sender.peers()[0].connected, "the sender's link is up")
        frames_sent = 100_000
        payload = b"z" * 1024
        memory_before = resident_bytes()
        started_at = time.monotonic()
        for sequence in range(frames_sent):  # 100 MB if nothing were dropped
            sender.send(a.public_key, sequence.to_bytes(4, "big") + payload)
            assert sender.stats()["queued_frames"] <= 256
        assert time.monotonic() - started_at < WAIT_S, "send() never blocks"
        await asyncio.sleep(0.2)  # let the links fill up

        assert receiver.stats()["receive_queue_frames"] <= 64
        assert resident_bytes() - memory_before < 40 * 1024 * 1024
        # Beyond the send queue, the receiver's queue and the stream window (what yamux lets be in
        # flight), every frame was dropped, oldest first, and counted.
        in_flight_max = 256 + 64 + STREAM_WINDOW_BYTES_MAX // len(payload)
        assert sender.stats()["dropped_frames"] >= frames_sent - in_flight_max

        sequences = []
        while not sequences or sequences[-1] != frames_sent - 1:
            sequences.append(int.from_bytes((await next_frame(receiver)).message[:4], "big"))
        assert sequences == sorted(sequences), "frames from one peer arrive in order"
        assert len(sequences) <= in_flight_max


@run_async
async def test_a_full_receive_queue_makes_the_reader_wait_without_losing_frames() -> None:
    a, b = make_nodes(2)
    receiver = network(a, [a, b], receive_queue_frames_max=8)
    sender = network(b, [a, b])
    async with running() as started:
        await started.start(receiver, sender)
        for sequence in range(2_000):  # fits the sender's queue: nothing is dropped there
            sender.send(a.public_key, sequence.to_bytes(4, "big") + bytes(100))
        await until(lambda: sender.stats()["queued_frames"] == 0, "the sender has written everything")
        await asyncio.sleep(0.3)  # the receiver is not reading
        assert receiver.stats()["receive_queue_frames"] <= 8
        sequences = [int.from_bytes((await next_frame(receiver)).message[:4], "big") for _ in range(2_000)]
        assert sequences == list(range(2_000))
        assert sender.stats()["dropped_frames"] == 0


# --- lifecycle --------------------------------------------------------------------------------------

@run_async
async def test_cancelling_run_stops_the_libp2p_thread() -> None:
    a, b = make_nodes(2)
    net_a, net_b = network(a, [a, b]), network(b, [a, b])
    async with running() as started:
        await started.start(net_b)
        task = asyncio.create_task(net_a.run())
        await asyncio.wait_for(net_a.wait_started(), WAIT_S)
        await until(lambda: net_a.peers()[0].connected, "a links to b")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT_S)
        assert not any(thread.name.startswith(f"p2p-{a.public_key[:4].hex()}") for thread in threading.enumerate())
        await until(lambda: not net_b.peers()[0].connected, "b sees a go")


STALLED_PEER = """
import asyncio, sys
from node.p2p.host import LibP2PNetwork
from tests.support import keys
own, other = keys(sys.argv[1]), keys(sys.argv[2])
net = LibP2PNetwork(own, "127.0.0.1", int(sys.argv[3]), [(other.public_key, f"127.0.0.1:{sys.argv[4]}")])
asyncio.run(net.run())
"""


@run_async
async def test_closing_while_a_peer_has_stopped_reading_is_prompt_and_clean() -> None:
    a, b = make_nodes(2)
    net_a = network(a, [a, b])
    # b runs in its own process so that it can be frozen (SIGSTOP): its socket stops draining.
    peer = subprocess.Popen([sys.executable, "-c", STALLED_PEER, "p2p-1", "p2p-0", str(b.port), str(a.port)],
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        async with running() as started:
            await started.start(net_a)
            await until(lambda: net_a.peers()[0].connected, "a links to b's process")
            peer.send_signal(signal.SIGSTOP)
            for _ in range(200):  # far more than the socket buffers and the yamux window hold
                net_a.send(b.public_key, bytes(20_000))
            # a's writes, and yamux's own ping, now block on the full socket, holding its write lock.
            await asyncio.sleep(3.0)
            closing_started = time.monotonic()
            await started.stop(net_a)
            assert time.monotonic() - closing_started < 5.0
    finally:
        peer.kill()
        peer.wait(WAIT_S)


@run_async
async def test_invalid_listen_port_taken_makes_run_fail() -> None:
    a, b = make_nodes(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", a.port))
        taken.listen()
        net_a = network(a, [a, b])
        task = asyncio.create_task(net_a.run())
        with pytest.raises(P2PError):
            await asyncio.wait_for(net_a.wait_started(), WAIT_S)
        with pytest.raises(P2PError):
            await asyncio.wait_for(task, WAIT_S)


@run_async
async def test_close_before_run_is_harmless() -> None:
    a, b = make_nodes(2)
    net_a = network(a, [a, b])
    net_a.send(b.public_key, b"queued")
    await net_a.close()
    assert net_a.stats()["queued_frames"] == 1


# --- rules on what may be sent and configured (no host needed) -------------------------------------

def test_invalid_send_over_the_frame_limit() -> None:
    a, b = make_nodes(2)
    net_a = network(a, [a, b], frame_bytes_max=100)
    with pytest.raises(ValueError, match="p2p_frame_bytes_max"):
        net_a.send(b.public_key, b"x" * 101)
    with pytest.raises(ValueError, match="p2p_frame_bytes_max"):
        net_a.broadcast(b"x" * 101)
    net_a.send(b.public_key, b"x" * 100)
    assert net_a.stats()["queued_frames"] == 1


def test_a_frame_for_a_key_that_is_not_a_peer_is_dropped_and_counted() -> None:
    a, b, stranger = make_nodes(3)
    net_a = network(a, [a, b])
    net_a.send(stranger.public_key, b"hello")
    net_a.send(a.public_key, b"to myself")
    assert net_a.stats()["unrouted_frames"] == 2 and net_a.stats()["queued_frames"] == 0


def test_removing_a_peer_drops_its_queued_frames_and_re_adding_it_starts_afresh() -> None:
    a, b, c = make_nodes(3)
    net_a = network(a, [a, b, c])
    for index in range(3):
        net_a.send(c.public_key, bytes([index]))
    net_a.send(b.public_key, b"for b")
    net_a.update_peers(allowlist([a, b]))
    assert net_a.stats()["queued_frames"] == 1 and net_a.stats()["dropped_frames"] == 3
    net_a.send(c.public_key, b"after removal")
    assert net_a.stats()["unrouted_frames"] == 1
    net_a.update_peers(allowlist([a, b, c]))
    net_a.update_peers(allowlist([a, b, c]))  # idempotent
    assert [peer.public_key for peer in net_a.peers()] == [b.public_key, c.public_key]
    assert net_a.stats()["queued_frames"] == 1 and net_a.stats()["dropped_frames"] == 3, "counters never go down"


def test_invalid_update_peers_changes_nothing() -> None:
    a, b, c = make_nodes(3)
    net_a = network(a, [a, b])
    before = net_a.peers()
    with pytest.raises(ValueError, match="listed twice"):
        net_a.update_peers(allowlist([b, c, c]))
    with pytest.raises(ValueError):
        net_a.update_peers([(c.public_key, "127.0.0.1:port")])
    too_many = [(keys(f"p2p-many-{index}").public_key, "") for index in range(PEERS_MAX + 1)]
    with pytest.raises(ValueError, match="over the limit"):
        net_a.update_peers(too_many)
    net_a.update_peers(too_many[:PEERS_MAX])
    assert len(net_a.peers()) == PEERS_MAX
    net_a.update_peers(allowlist([b]))
    assert net_a.peers() == before


def test_a_full_send_queue_drops_the_oldest_frame() -> None:
    a, b = make_nodes(2)
    net_a = network(a, [a, b], send_queue_frames_max=3)
    for index in range(5):
        net_a.send(b.public_key, bytes([index]))
    assert net_a.stats()["dropped_frames"] == 2 and net_a.stats()["queued_frames"] == 3


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:", "127.0.0.1:port", "/ip4/127.0.0.1/udp/9",
                                     "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWCugzopk9fYBy1pvYVi94Qr2y9PL4CjSpYZUaXir3YWb7",
                                     "/not-a-protocol/1"])
def test_invalid_peer_address(address: str) -> None:
    a, b = make_nodes(2)
    with pytest.raises(ValueError):
        LibP2PNetwork(a.keys, "127.0.0.1", a.port, [(b.public_key, address)])


def test_peer_addresses_in_every_accepted_form() -> None:
    a, b, c, d, e = make_nodes(5)
    b_id = peer_id_from_public_key(b.public_key)
    net_a = LibP2PNetwork(a.keys, "127.0.0.1", a.port, [
        (a.public_key, "ignored: our own entry is skipped"),
        (b.public_key, f"/ip4/127.0.0.1/tcp/{b.port}/p2p/{b_id}"),
        (c.public_key, f"[::1]:{c.port}"),
        (d.public_key, f"validator-d.example:{d.port}"),
        (e.public_key, ""),
    ])
    assert [peer.address for peer in net_a.peers()] == [
        f"/ip4/127.0.0.1/tcp/{b.port}/p2p/{b_id}",
        f"/ip6/::1/tcp/{c.port}/p2p/{peer_id_from_public_key(c.public_key)}",
        f"/dns/validator-d.example/tcp/{d.port}/p2p/{peer_id_from_public_key(d.public_key)}",
        "",
    ]


def test_invalid_duplicate_peer() -> None:
    a, b = make_nodes(2)
    with pytest.raises(ValueError, match="listed twice"):
        LibP2PNetwork(a.keys, "127.0.0.1", a.port, allowlist([a, b, b]))


def test_the_peer_id_is_the_validator_key() -> None:
    node = make_nodes(1)[0]
    peer_id = peer_id_from_public_key(node.public_key)
    assert peer_id.extract_public_key().to_bytes() == node.public_key


# --- frame codec ------------------------------------------------------------------------------------

def test_frames_round_trip_whatever_the_chunking() -> None:
    messages = [b"", b"a", b"bc" * 500, bytes(range(256))]
    wire = encode_frames(messages)
    assert wire == b"".join(encode_frame(m) for m in messages)
    for chunk_bytes in (1, 3, 4, 7, 1000, len(wire)):
        decoder = FrameDecoder(frame_bytes_max=1000)
        got = []
        for start in range(0, len(wire), chunk_bytes):
            got += decoder.feed(wire[start:start + chunk_bytes])
        assert got == messages and decoder.buffered_bytes == 0


def test_invalid_frame_over_the_limit_is_rejected_from_its_header() -> None:
    decoder = FrameDecoder(frame_bytes_max=10)
    assert decoder.feed(encode_frame(b"0123456789")) == [b"0123456789"]
    with pytest.raises(FrameTooLarge):
        decoder.feed((11).to_bytes(4, "big"))  # rejected before any body byte arrives
