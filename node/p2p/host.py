"""The validator network over py-libp2p 0.8.1, behind the asyncio `Network` port.

Owns the libp2p host and everything it does: the identity (the node's ed25519 seed is the
libp2p key, so a peer id *is* a validator key), the allowlist (a peer not on it is refused
at the end of the Noise handshake, before any stream exists), one persistent outbound
stream per peer carrying length-prefixed frames, reconnection with exponential backoff,
the peer set as it changes while the node runs (`update_peers`), and the bounded queues
between the two threads.

py-libp2p runs on trio, the node on asyncio, so the host lives in its own thread under
`trio.run`. The threads meet in three places only, each bounded:
- a send queue per peer (a deque under a lock; full means the oldest frame is dropped and
  counted). `send` appends and, if that peer's writer is idle, wakes it with one
  `TrioToken.run_sync_soon` call — at most one pending wake-up per peer, so the asyncio
  side can never build an unbounded backlog of callbacks in trio;
- the receive queue (`asyncio.Queue`), filled with `loop.call_soon_threadsafe`. The trio
  side must hold a credit per item, and `receive` hands credits back, so the queue never
  overflows: when it is full the stream reader waits, yamux stops granting window, and the
  sender's writes block — back-pressure, not loss;
- counters and link state: plain ints and bools written by trio, read by asyncio;
- the configured peers: a `_PeerTable` the asyncio side replaces whole (under the lock) and
  never changes in place, so either thread reads the current one without a lock and never
  sees it change size under it. The trio side owns which peer loops run and brings them in
  line with the table whenever it changes.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream, IRawConnection, ISecureConn
from libp2p.crypto.ed25519 import Ed25519PublicKey, create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.id import ID
from libp2p.security.exceptions import HandshakeFailure
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import MAX_WINDOW_SIZE as YAMUX_WINDOW_BYTES_MAX
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from node import limits
from node.crypto import PUBLIC_KEY_BYTES, KeyPair
from node.p2p.frames import FrameDecoder, FrameTooLarge, encode_frames
from node.p2p.network import PeerEvent, PeerInfo, Received

PROTOCOL_ID = TProtocol("/paychain/consensus/1")
STREAM_WINDOW_BYTES_MAX: int = YAMUX_WINDOW_BYTES_MAX
"""Most bytes a peer can have in flight to us on its stream: yamux grows a stream's receive
window while we read fast, up to this, and stops granting window when we stop reading."""
PEERS_MAX: int = limits.validators_max + limits.full_nodes_max
"""Most peers one network is configured with at a time: every validator plus every allowlisted full
node (each costs a link, a peer loop and a send queue of up to p2p_send_queue_frames_max frames)."""
_PEER_TAG = "paychain-validator"
_JITTER = 0.2
"""Reconnect waits are cut by up to 20% at random so peers that lost each other do not redial in
lockstep (never lengthened: p2p_reconnect_backoff_ms_max stays the longest wait)."""

log = logging.getLogger(__name__)

Delivery = Received | PeerEvent


class P2PError(RuntimeError):
    """The libp2p host could not start or stopped on its own."""


# --- addresses and identities ----------------------------------------------------------------

def peer_id_from_public_key(public_key: bytes) -> ID:
    """The libp2p peer id of an ed25519 validator key (an identity multihash of the key)."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"a peer public key is {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key))


def tcp_multiaddr(host: str, port: int) -> multiaddr.Multiaddr:
    """`/ip4|ip6|dns/<host>/tcp/<port>` for an IP literal or a DNS name."""
    host = host.strip("[]")
    if not host or not 0 <= port <= 65_535:
        raise ValueError(f"bad TCP address {host!r}:{port}")
    try:
        protocol = "ip6" if ipaddress.ip_address(host).version == 6 else "ip4"
    except ValueError:
        protocol = "dns"
    return multiaddr.Multiaddr(f"/{protocol}/{host}/tcp/{port}")


def parse_peer_address(address: str, peer_id: ID) -> multiaddr.Multiaddr | None:
    """Where to dial a configured peer: a multiaddress or "host:port"; "" means never dial it.

    A trailing `/p2p/<id>` must name the peer's own key.
    """
    if address == "":
        return None
    if not address.startswith("/"):
        host, separator, port_text = address.rpartition(":")
        if not separator or not port_text.isdigit():
            raise ValueError(f"peer address {address!r} is neither a multiaddress nor host:port")
        return tcp_multiaddr(host, int(port_text))
    base, _, named_id = address.partition("/p2p/")
    if named_id and named_id != peer_id.to_base58():
        raise ValueError(f"peer address {address!r} names another peer than its key ({peer_id})")
    try:
        parsed = multiaddr.Multiaddr(base)
    except Exception as error:  # multiaddr raises several types for malformed text
        raise ValueError(f"peer address {address!r} is not a valid multiaddress") from error
    if "tcp" not in [protocol.name for protocol in parsed.protocols()]:
        raise ValueError(f"peer address {address!r} has no /tcp part")
    return parsed


# --- the two cross-thread queues ---------------------------------------------------------------

class _SendQueue:
    """Frames waiting for one peer: appended by the asyncio thread, taken by the trio writer."""

    def __init__(self, frames_max: int) -> None:
        self._lock = threading.Lock()
        self._frames: collections.deque[bytes] = collections.deque()
        self._frames_max = frames_max
        self._idle_writer: trio.Event | None = None
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes) -> trio.Event | None:
        """Append (dropping the oldest frame when full); returns the idle writer's event to set, if any."""
        with self._lock:
            if len(self._frames) >= self._frames_max:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            idle_writer, self._idle_writer = self._idle_writer, None
        return idle_writer

    async def wait_not_empty(self) -> None:
        """Trio side: return once there is a frame to write."""
        with self._lock:
            if self._frames:
                return
            self._idle_writer = wakeup = trio.Event()
        await wakeup.wait()

    def put_back(self, frames: list[bytes]) -> None:
        """Trio side: return frames whose write failed to the front, for the next stream (bound kept)."""
        with self._lock:
            self._frames.extendleft(reversed(frames))
            while len(self._frames) > self._frames_max:
                self._frames.popleft()
                self.dropped += 1

    def clear(self) -> None:
        """Drop every queued frame (counted as dropped)."""
        with self._lock:
            self.dropped += len(self._frames)
            self._frames.clear()

    def take(self, bytes_max: int) -> list[bytes]:
        """Trio side: the oldest frames up to `bytes_max` in total (always at least one if any)."""
        taken: list[bytes] = []
        size = 0
        with self._lock:
            while self._frames and (not taken or size + len(self._frames[0]) <= bytes_max):
                frame = self._frames.popleft()
                taken.append(frame)
                size += len(frame)
        return taken


class _Credits:
    """Free places in the asyncio receive queue, as the trio thread sees them.

    Only the trio thread touches it; `receive` returns places through `run_sync_soon(give)`.
    """

    def __init__(self, count: int) -> None:
        self._count = count
        self._changed = trio.Event()

    async def take(self, wanted: int) -> int:
        """Wait for at least one credit; take up to `wanted`."""
        while self._count == 0:
            await self._changed.wait()
        taken = min(self._count, wanted)
        self._count -= taken
        return taken

    def give(self, count: int) -> None:
        self._count += count
        # Wake every waiter and give later ones a fresh event. (A waiter that replaced the event
        # itself could strand another one waiting on the old event: a lost wake-up.)
        changed, self._changed = self._changed, trio.Event()
        changed.set()


class _Peer:
    """One allowed peer: identity, where to dial it, its send queue and link state.

    A peer that is removed and later added again gets a new `_Peer` (a fresh queue and loop).
    """

    def __init__(self, public_key: bytes, address: str, send_queue_frames_max: int) -> None:
        self.public_key = public_key
        self.peer_id = peer_id_from_public_key(public_key)
        self.dial_address = parse_peer_address(address, self.peer_id)
        """Replaced (asyncio side) when `update_peers` moves the peer; read by trio at each dial."""
        self.outbox = _SendQueue(send_queue_frames_max)
        self.connected = False
        """Our outbound stream to it is open (written by trio, read by asyncio)."""
        self.last_seen_ms = 0
        # Trio side only, from here on.
        self.inbound_scope: trio.CancelScope | None = None
        self.redial: trio.Event | None = None
        """Set when the peer reaches us or moves, to cut a reconnect wait short (made when its loop starts)."""
        self.scope: trio.CancelScope | None = None
        """Cancelled when the peer is removed: ends its loop (made when its loop starts)."""
        self.retired: trio.Event | None = None
        """Set once, after removal, its connections are closed and its going is reported."""
        self.reported_connected = False
        """The last PeerEvent delivered for it said connected: removal must then report it gone."""

    @property
    def display_address(self) -> str:
        if self.dial_address is None:
            return ""
        return f"{self.dial_address}/p2p/{self.peer_id.to_base58()}"


@dataclass(frozen=True, slots=True)
class _PeerTable:
    """The configured peers at one moment. Never changed in place: `update_peers` swaps in a new one."""

    by_key: dict[bytes, _Peer]
    """Peers by public key, in configuration order."""
    by_id: dict[ID, _Peer]
    """The same peers by libp2p peer id (what the Noise handshake and a stream name)."""

    @staticmethod
    def of(peers: dict[bytes, _Peer]) -> _PeerTable:
        return _PeerTable(peers, {peer.peer_id: peer for peer in peers.values()})


def _parse_peers(own_key: bytes, peers: Sequence[tuple[bytes, str]], send_queue_frames_max: int) -> dict[bytes, _Peer]:
    """The peers of a configuration, by key (our own key skipped); raises ValueError for a bad one."""
    parsed: dict[bytes, _Peer] = {}
    for public_key, address in peers:
        if public_key == own_key:
            continue
        if public_key in parsed:
            raise ValueError(f"peer {public_key.hex()} is listed twice")
        parsed[public_key] = _Peer(public_key, address, send_queue_frames_max)
    if len(parsed) > PEERS_MAX:
        raise ValueError(f"{len(parsed)} peers is over the limit of {PEERS_MAX}")
    return parsed


class _AllowlistNoise(NoiseTransport):
    """Noise that ends the handshake with any peer whose authenticated id is not allowed.

    Checking here, right after the handshake proves the remote key, means a refused peer
    never gets a muxer, a stream or an identify exchange — its connection is closed.
    `is_allowed` reads the current peer table, so a change of the peers applies to the next handshake.
    """

    def __init__(self, key_pair: Any, is_allowed: Callable[[ID], bool], on_refused: Callable[[ID], None]) -> None:
        super().__init__(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
        self._is_allowed = is_allowed
        self._on_refused = on_refused

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        return await self._admit(await super().secure_inbound(conn))

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        return await self._admit(await super().secure_outbound(conn, peer_id))

    async def _admit(self, secure_conn: ISecureConn) -> ISecureConn:
        remote = secure_conn.get_remote_peer()
        if self._is_allowed(remote):
            return secure_conn
        self._on_refused(remote)
        await secure_conn.close()
        raise HandshakeFailure(f"peer {remote} is not on the allowlist")


# --- the network -------------------------------------------------------------------------------

class LibP2PNetwork:
    """The `Network` port over py-libp2p: Noise, yamux, one outbound stream per allowed peer.

    One object runs once: `run()` (or cancelling it, or `close()`) ends it for good; a restarted
    node makes a new one with the same key and port.
    """

    def __init__(self, keys: KeyPair, listen_host: str, listen_port: int, peers: Sequence[tuple[bytes, str]], *,
                 frame_bytes_max: int = limits.p2p_frame_bytes_max,
                 send_queue_frames_max: int = limits.p2p_send_queue_frames_max,
                 receive_queue_frames_max: int = limits.p2p_receive_queue_frames_max) -> None:
        """`peers` are (public key, address) pairs: the genesis validators plus any allowlisted full
        nodes. Our own key may be among them and is skipped. An empty address means the peer is
        accepted but never dialled (it reaches us; our stream to it then reuses its connection).
        At most PEERS_MAX peers; `update_peers` changes them later."""
        assert frame_bytes_max > 0 and send_queue_frames_max > 0 and receive_queue_frames_max > 0
        self._keys = keys
        self._listen_multiaddr = tcp_multiaddr(listen_host, listen_port)
        self._frame_bytes_max = frame_bytes_max
        self._send_queue_frames_max = send_queue_frames_max
        self._table = _PeerTable.of(_parse_peers(keys.public_key, peers, send_queue_frames_max))
        """Replaced, never changed in place, by the asyncio side under the lock; read by both threads."""
        self._counters = dict.fromkeys(
            ("sent_frames", "received_frames", "refused_peers", "refused_frames", "bad_frames", "link_errors"), 0)

        # asyncio side
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(receive_queue_frames_max)
        self._removed_peers_dropped_frames = 0
        """Frames dropped for peers no longer configured (so `dropped_frames` never goes down)."""
        self._unrouted_frames = 0
        """Frames sent to a key that is not a configured peer (any more)."""
        self._credits_to_return = 0
        self._credit_batch = max(1, min(256, receive_queue_frames_max // 4))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[BaseException | None] | None = None
        self._thread: threading.Thread | None = None

        # trio side, published to asyncio under the lock once the host listens
        self._credits = _Credits(receive_queue_frames_max)
        self._lock = threading.Lock()
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._trio_scope: trio.CancelScope | None = None
        self._stop_requested = False
        self._host: IHost | None = None
        self._nursery: trio.Nursery | None = None
        """Where the peer loops run, while the host serves (trio side)."""
        self._running: dict[bytes, _Peer] = {}
        """Trio side: the peers whose loop runs, by key (at most PEERS_MAX)."""
        self._retiring: dict[bytes, _Peer] = {}
        """Trio side: the last removed peer of each key still closing its connections."""

    # --- the Network port (asyncio thread) ----------------------------------------------------

    async def run(self) -> None:
        """Run the libp2p thread until cancelled or `close()`d; raises P2PError if it fails."""
        if self._thread is not None:
            raise RuntimeError("LibP2PNetwork.run() may be called once")
        _, stopped = self._futures()
        self._thread = threading.Thread(target=self._thread_main, daemon=True,
                                        name=f"p2p-{self._keys.public_key[:4].hex()}")
        self._thread.start()
        try:
            error = await asyncio.shield(stopped)
        finally:
            await self._stop_thread()
        if error is not None:
            raise P2PError(f"the libp2p host stopped: {error!r}") from error

    async def wait_started(self) -> None:
        """Return once the host listens; raises P2PError if it stopped first."""
        started, stopped = self._futures()
        await asyncio.wait((started, stopped), return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            raise P2PError(f"the libp2p host stopped before it listened: {stopped.result()!r}")

    async def close(self) -> None:
        """Stop the libp2p thread and wait for it: connections and the listener are closed. Idempotent."""
        await self._stop_thread()

    def send(self, peer: bytes, message: bytes) -> None:
        """Queue `message` for one peer; never blocks. A full queue drops its oldest frame (counted).

        A key that is not a configured peer (it may just have been removed) gets nothing: counted
        as `unrouted_frames`."""
        self._check_size(message)
        target = self._table.by_key.get(peer)
        if target is None:
            self._unrouted_frames += 1
            return
        self._queue_frame(target, message)

    def broadcast(self, message: bytes) -> None:
        """`send` to every configured peer."""
        self._check_size(message)
        for peer in self._table.by_key.values():
            self._queue_frame(peer, message)

    def update_peers(self, peers: Sequence[tuple[bytes, str]]) -> None:
        """Make the configured peers exactly `peers` ((public key, address) pairs; our own key is skipped).

        Takes effect at once on this side: `send`, `peers()` and the Noise allowlist see the new set,
        and a removed peer's queued frames are dropped (counted). The trio thread then, soon, starts a
        loop for each new peer, and for each removed one ends its loop and streams, closes its
        connections and reports PeerEvent(key, False) if it was connected. A peer whose address
        changed keeps its queue and link; the next dial uses the new address. Idempotent.
        Raises ValueError (and changes nothing) for a bad address, a key listed twice or more than
        PEERS_MAX peers."""
        wanted = _parse_peers(self._keys.public_key, peers, self._send_queue_frames_max)
        with self._lock:
            current = self._table.by_key
            # A peer that stays keeps its `_Peer` (queue, link, loop); only its dial address may change.
            moved = [kept for public_key, kept in current.items()
                     if public_key in wanted and kept.dial_address != wanted[public_key].dial_address]
            for kept in moved:
                kept.dial_address = wanted[kept.public_key].dial_address
            removed = [peer for public_key, peer in current.items() if public_key not in wanted]
            self._table = _PeerTable.of({public_key: current.get(public_key, fresh)
                                         for public_key, fresh in wanted.items()})
        for peer in removed:
            peer.outbox.clear()
            self._removed_peers_dropped_frames += peer.outbox.dropped
        # Before the thread starts this is a no-op: the host then starts from the new table.
        self._call_in_trio(self._apply_peers, moved)

    async def receive(self) -> Delivery:
        """The next frame from an authenticated peer, or a change of our link to a peer.

        PeerEvent(key, True) comes when our stream to that peer opens (what is sent from then
        on reaches it: the moment to retransmit), PeerEvent(key, False) when that stream fails
        or, if it was up, when the peer is removed.
        """
        item = await self._queue.get()
        # Hand the places back to the trio side in batches: one cross-thread call per item would
        # cost more than the item; returning all when the queue is empty means none are withheld.
        self._credits_to_return += 1
        if self._credits_to_return >= self._credit_batch or self._queue.empty():
            count, self._credits_to_return = self._credits_to_return, 0
            self._call_in_trio(self._credits.give, count)
        return item

    def peers(self) -> list[PeerInfo]:
        """Every configured peer; `connected` means our outbound stream to it is open."""
        return [PeerInfo(peer.public_key, peer.display_address, peer.connected, peer.last_seen_ms)
                for peer in self._table.by_key.values()]

    def stats(self) -> dict[str, int]:
        """Counters since start, plus current queue depths and connected peers."""
        peers = self._table.by_key.values()
        counts = dict(self._counters)
        counts["unrouted_frames"] = self._unrouted_frames
        counts["dropped_frames"] = self._removed_peers_dropped_frames + sum(peer.outbox.dropped for peer in peers)
        counts["queued_frames"] = sum(len(peer.outbox) for peer in peers)
        counts["receive_queue_frames"] = self._queue.qsize()
        counts["connected_peers"] = sum(peer.connected for peer in peers)
        counts["configured_peers"] = len(peers)
        return counts

    def _check_size(self, message: bytes) -> None:
        if len(message) > self._frame_bytes_max:
            raise ValueError(f"message of {len(message)} bytes is over p2p_frame_bytes_max ({self._frame_bytes_max})")

    def _queue_frame(self, peer: _Peer, message: bytes) -> None:
        idle_writer = peer.outbox.put(message)
        if idle_writer is not None:
            self._call_in_trio(idle_writer.set)

    # --- thread lifecycle ------------------------------------------------------------------------

    def _futures(self) -> tuple[asyncio.Future[None], asyncio.Future[BaseException | None]]:
        if self._started is None or self._stopped is None:
            self._loop = asyncio.get_running_loop()
            self._started = self._loop.create_future()
            self._stopped = self._loop.create_future()
        return self._started, self._stopped

    def _thread_main(self) -> None:
        error: BaseException | None = None
        try:
            trio.run(self._trio_main)
        except BaseException as caught:  # handed to run(); the thread itself ends quietly
            error = caught
        self._post(self._on_thread_exit, error)

    def _on_thread_exit(self, error: BaseException | None) -> None:
        assert self._stopped is not None
        if not self._stopped.done():
            self._stopped.set_result(error)

    def _on_started(self) -> None:
        assert self._started is not None
        if not self._started.done():
            self._started.set_result(None)

    async def _stop_thread(self) -> None:
        with self._lock:
            self._stop_requested = True
        self._call_in_trio(self._cancel_trio)
        if self._thread is None:
            return
        _, stopped = self._futures()
        try:
            await asyncio.wait_for(asyncio.shield(stopped), limits.p2p_stop_timeout_ms_max / 1000)
        except TimeoutError:
            log.error("the libp2p thread did not stop within %d ms", limits.p2p_stop_timeout_ms_max)
            return
        self._thread.join(limits.p2p_stop_timeout_ms_max / 1000)

    def _post(self, function: Callable[..., None], *args: Any) -> None:
        """Run `function` on the asyncio loop (from the trio thread)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _call_in_trio(self, function: Callable[..., None], *args: Any) -> None:
        """Run `function` in the trio thread soon; a no-op before it starts or after it ends."""
        token = self._trio_token
        if token is None:
            return
        try:
            token.run_sync_soon(function, *args)
        except trio.RunFinishedError:
            pass

    # --- trio thread: host -------------------------------------------------------------------------

    async def _trio_main(self) -> None:
        host = self._make_host()
        host.set_stream_handler(PROTOCOL_ID, self._handle_inbound_stream)
        async with host.run([self._listen_multiaddr]):
            try:
                await self._serve(host)
            finally:
                # Close explicitly, shielded: leaving host.run alone stops the swarm by cancellation,
                # and its cleanup then fails at the first await and leaks the connections' sockets.
                with trio.move_on_after(limits.p2p_stop_timeout_ms_max / 1000, shield=True):
                    await _close_connections(host)
                    await host.close()

    async def _serve(self, host: IHost) -> None:
        """Run every peer's loop until `close()` cancels them."""
        # BasicHost.run ignores a failed listen (port taken): check, or we would run deaf.
        if not host.get_network().listeners:
            raise P2PError(f"cannot listen on {self._listen_multiaddr}")
        self._host = host
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # Publish first, then read the table: an `update_peers` that missed the token
                # changed the table before this reads it.
                self._publish_trio_handles(nursery.cancel_scope)
                self._apply_peers()
                nursery.start_soon(trio.sleep_forever)
                self._post(self._on_started)
        finally:
            self._nursery = None

    def _make_host(self) -> IHost:
        # The libp2p identity is the validator key itself: its 32-byte seed makes the same ed25519
        # key, so a peer id proves which validator (or allowlisted node) is on the other end.
        key_pair = create_new_key_pair(self._keys.seed)
        assert key_pair.public_key.to_bytes() == self._keys.public_key
        noise = _AllowlistNoise(key_pair, self._is_allowed, self._count_refused)
        host = new_host(
            key_pair=key_pair,
            sec_opt={NOISE_PROTOCOL_ID: noise},  # Noise only: the default list also offers plaintext
            # yamux: per-stream flow control (a window). py-libp2p's mplex has none: one slow
            # stream blocks its whole connection until a timeout resets the stream.
            muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
            listen_addrs=[self._listen_multiaddr],
            # One connection per peer. It also cancels the dial's 250 ms "happy eyeballs" wait,
            # which otherwise runs to the end even after the only address has connected.
            connection_config=ConnectionConfig(max_connections_per_peer=1),
        )
        swarm: Any = host.get_network()
        swarm.retry_config = RetryConfig(max_retries=0)  # our backoff decides when to dial again
        return host

    def _is_allowed(self, peer_id: ID) -> bool:
        return peer_id in self._table.by_id

    def _publish_trio_handles(self, scope: trio.CancelScope) -> None:
        with self._lock:
            self._trio_token = trio.lowlevel.current_trio_token()
            self._trio_scope = scope
            stop_requested = self._stop_requested
        if stop_requested:
            scope.cancel()

    def _cancel_trio(self) -> None:
        if self._trio_scope is not None:
            self._trio_scope.cancel()

    def _count_refused(self, peer_id: ID) -> None:
        self._counters["refused_peers"] += 1
        # Debug, not info: a stranger can connect as often as it likes; the counter is the signal.
        log.debug("refused peer %s: not on the allowlist", peer_id)

    # --- trio thread: the peer set ------------------------------------------------------------------

    def _apply_peers(self, moved: Sequence[_Peer] = ()) -> None:
        """Bring the running peer loops in line with the peer table (idempotent).

        Runs as a `run_sync_soon` callback, where an exception would crash trio: it must not raise.
        """
        nursery, host = self._nursery, self._host
        if nursery is None or host is None:
            return  # not serving yet (`_serve` applies the table when it starts) or any more
        swarm: Any = host.get_network()
        configured = self._table.by_key
        for public_key, peer in list(self._running.items()):
            if configured.get(public_key) is not peer:
                del self._running[public_key]
                self._retiring[public_key] = peer
                swarm.unprotect(peer.peer_id, _PEER_TAG)
                assert peer.scope is not None
                peer.scope.cancel()
                if peer.inbound_scope is not None:
                    peer.inbound_scope.cancel()
        for public_key, peer in configured.items():
            if public_key not in self._running:
                self._running[public_key] = peer
                swarm.protect(peer.peer_id, _PEER_TAG)  # never pruned by the connection manager
                peer.scope, peer.redial, peer.retired = trio.CancelScope(), trio.Event(), trio.Event()
                nursery.start_soon(self._run_peer, peer, self._retiring.get(public_key))
        for peer in moved:
            if peer.dial_address is None:
                host.get_peerstore().clear_addrs(peer.peer_id)  # never dial it: forget the old address
            if peer.redial is not None:
                peer.redial.set()  # dial the new address now, not after the backoff

    async def _run_peer(self, peer: _Peer, previous: _Peer | None) -> None:
        """Serve `peer` until it is removed, then close its connections and report it gone.

        `previous` is an earlier `_Peer` of the same key still being removed: it finishes first, so its
        closing cannot cut this one's new connection and its PeerEvent(False) comes before ours.
        """
        assert peer.scope is not None and peer.retired is not None
        try:
            with peer.scope:
                if previous is not None:
                    await _wait_retired(previous)
                await self._peer_loop(peer)
            if previous is not None:
                await _wait_retired(previous)
            assert self._host is not None
            await _close_connections(self._host, peer.peer_id)
            if peer.reported_connected:
                await self._deliver([PeerEvent(peer.public_key, False)])
                peer.reported_connected = False
            log.info("removed peer %s", peer.peer_id)
        finally:
            peer.retired.set()
            if self._retiring.get(peer.public_key) is peer:
                del self._retiring[peer.public_key]

    # --- trio thread: outbound -------------------------------------------------------------------

    async def _peer_loop(self, peer: _Peer) -> None:
        """Keep one outbound stream open to `peer` and write its queued frames; redial with backoff."""
        backoff_ms = limits.p2p_reconnect_backoff_ms_min
        while True:
            stream = await self._open_stream(peer)
            if stream is not None:
                opened_at = trio.current_time()
                await self._serve_outbound_stream(peer, stream)
                if trio.current_time() - opened_at >= limits.p2p_reconnect_backoff_ms_max / 1000:
                    backoff_ms = limits.p2p_reconnect_backoff_ms_min  # a working link, not a flapping one
            await self._wait_before_redial(peer, backoff_ms)
            backoff_ms = min(2 * backoff_ms, limits.p2p_reconnect_backoff_ms_max)

    async def _open_stream(self, peer: _Peer) -> INetStream | None:
        """Our stream to `peer`, over its existing connection or a new dial; None if it failed."""
        assert self._host is not None
        swarm: Any = self._host.get_network()
        dial_address = peer.dial_address  # once: `update_peers` may replace it meanwhile
        if dial_address is not None:
            # Dial the configured address only (identify may have added others), and clear
            # libp2p's own 60 s "all addresses failed" block: our backoff decides.
            self._host.get_peerstore().clear_addrs(peer.peer_id)
            self._host.get_peerstore().add_addrs(peer.peer_id, [dial_address], 0)
        swarm.unblock_peer(peer.peer_id)
        try:
            with trio.fail_after(limits.p2p_connect_timeout_ms_max / 1000):
                return await self._host.new_stream(peer.peer_id, [PROTOCOL_ID])
        except Exception as error:  # trio.TooSlowError, and the many types py-libp2p raises for a failed dial
            log.debug("cannot open a stream to %s: %r", peer.peer_id, error)
            return None

    async def _serve_outbound_stream(self, peer: _Peer, stream: INetStream) -> None:
        """Write `peer`'s frames to `stream` until it fails; report the link going up and down."""
        peer.connected = True
        try:
            await self._deliver([PeerEvent(peer.public_key, True)])
            peer.reported_connected = True
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_frames, peer, stream, nursery.cancel_scope)
                nursery.start_soon(self._wait_until_closed, stream, nursery.cancel_scope)
        finally:
            peer.connected = False
            await _reset_quietly(stream)
        await self._deliver([PeerEvent(peer.public_key, False)])
        peer.reported_connected = False

    async def _write_frames(self, peer: _Peer, stream: INetStream, done: trio.CancelScope) -> None:
        try:
            while True:
                await peer.outbox.wait_not_empty()
                messages = peer.outbox.take(limits.p2p_write_batch_bytes_max)
                try:
                    await stream.write(encode_frames(messages))
                except Exception as error:  # any write failure ends this stream; the peer loop redials
                    # The next stream carries them. Part of a failed write may have arrived, so a
                    # peer can see a frame twice: consensus messages are idempotent.
                    peer.outbox.put_back(messages)
                    self._count_link_error(peer, "write", error)
                    return
                self._counters["sent_frames"] += len(messages)
        finally:
            done.cancel()

    async def _wait_until_closed(self, stream: INetStream, done: trio.CancelScope) -> None:
        """Return when the peer resets our stream or the connection drops (it never writes on it)."""
        try:
            await stream.read(1)
        except Exception:  # EOF, reset and a dropped connection all mean the same here
            pass
        finally:
            done.cancel()

    async def _wait_before_redial(self, peer: _Peer, backoff_ms: int) -> None:
        assert peer.redial is not None
        wait_s = backoff_ms / 1000 * random.uniform(1 - _JITTER, 1)
        with trio.move_on_after(wait_s):
            await peer.redial.wait()
        peer.redial = trio.Event()

    # --- trio thread: inbound --------------------------------------------------------------------

    async def _handle_inbound_stream(self, stream: INetStream) -> None:
        """Read frames a peer sends us on its outbound stream and deliver them to asyncio."""
        peer_id = stream.muxed_conn.peer_id
        peer = self._table.by_id.get(peer_id)
        if peer is None:
            # Noise refuses unknown peers first. This one passed it before it was removed (or found
            # a path around it): its connection goes too.
            self._count_refused(peer_id)
            await _reset_quietly(stream)
            assert self._host is not None
            await _close_connections(self._host, peer_id)
            return
        with trio.CancelScope() as scope:
            # One inbound stream per peer: a newer one replaces the old, which bounds what a
            # peer can make us buffer (one yamux window) however many streams it opens.
            if peer.inbound_scope is not None:
                peer.inbound_scope.cancel()
            peer.inbound_scope = scope
            if peer.redial is not None:  # None: just added, its loop starts soon and dials at once
                peer.redial.set()  # it is up: stop waiting out a backoff before dialling it
            try:
                await self._read_frames(peer, stream)
            except FrameTooLarge as error:
                self._counters["bad_frames"] += 1
                log.warning("dropping the stream from %s: %s", peer.peer_id, error)
            except Exception as error:  # a failed read ends this stream; the peer reconnects
                self._count_link_error(peer, "read", error)
            finally:
                await _reset_quietly(stream)
        if peer.inbound_scope is scope:
            peer.inbound_scope = None

    async def _read_frames(self, peer: _Peer, stream: INetStream) -> None:
        decoder = FrameDecoder(self._frame_bytes_max)
        while True:
            chunk = await stream.read(limits.p2p_read_chunk_bytes_max)
            if not chunk:
                return
            messages = decoder.feed(chunk)
            if messages and self._table.by_key.get(peer.public_key) is not peer:
                # Removed while its stream was open: nothing more from it reaches consensus.
                self._counters["refused_frames"] += len(messages)
                return
            if messages:
                peer.last_seen_ms = time.time_ns() // 1_000_000
                self._counters["received_frames"] += len(messages)
                await self._deliver([Received(peer.public_key, message) for message in messages])

    async def _deliver(self, items: list[Delivery]) -> None:
        """Hand `items` to the asyncio receive queue in order, waiting for room (never dropping)."""
        start = 0
        while start < len(items):
            count = await self._credits.take(len(items) - start)
            self._post(self._enqueue, items[start:start + count])
            start += count

    def _enqueue(self, items: list[Delivery]) -> None:
        """asyncio side: the credits taken for `items` guarantee the room."""
        for item in items:
            self._queue.put_nowait(item)

    def _count_link_error(self, peer: _Peer, operation: str, error: Exception) -> None:
        self._counters["link_errors"] += 1
        log.debug("%s on the stream with %s failed: %r", operation, peer.peer_id, error)


async def _close_connections(host: IHost, peer_id: ID | None = None) -> None:
    """Close every connection (to `peer_id` only, if given) at once: py-libp2p closes them one by one,
    ~0.2 s each (fixed sleeps)."""
    async with trio.open_nursery() as nursery:
        for connection in host.get_network().get_connections(peer_id):
            nursery.start_soon(_close_connection, connection)


async def _wait_retired(peer: _Peer) -> None:
    assert peer.retired is not None
    await peer.retired.wait()


async def _close_connection(connection: Any) -> None:
    """Close politely (yamux GO_AWAY); if the peer is not taking our bytes, close the socket under it."""
    with trio.move_on_after(limits.p2p_stream_close_timeout_ms_max / 1000) as polite:
        try:
            await connection.close()
        except Exception:  # already closing, or its socket is gone
            pass
    if polite.cancelled_caught:
        # A peer that stopped reading (SIGSTOP, cut cable) leaves a send blocked on a full socket,
        # holding yamux's write lock: GO_AWAY never goes out. Closing the socket frees everything.
        try:
            await connection.muxed_conn.secured_conn.close()
        except Exception:
            pass


async def _reset_quietly(stream: INetStream) -> None:
    """Reset `stream` even when cancelled, but never for long (the RST waits for the same write lock)."""
    with trio.move_on_after(limits.p2p_stream_close_timeout_ms_max / 1000, shield=True):
        try:
            await stream.reset()
        except Exception:  # the stream or its connection is already gone
            pass
