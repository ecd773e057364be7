"""The Network port consensus talks to; implementations live beside it.

Messages are opaque bytes here (consensus encodes them with `node.encoding`); peers are
named by their validator public key (32 bytes). Delivery is best effort: a message may be
lost when a connection drops, so consensus retransmits what matters (on timers and when a
peer reconnects). Every queue behind this interface is bounded.

The set of peers changes while the network runs (`update_peers`, when governance changes the
validators): a peer is allowed, and sent to, exactly while it is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PeerInfo:
    public_key: bytes
    """The peer's ed25519 validator (or allowlisted full node) key."""
    address: str
    """Where it is reached, e.g. a libp2p multiaddress."""
    connected: bool
    last_seen_ms: int
    """Wall-clock milliseconds of the last frame received from it (0 if never)."""


@dataclass(frozen=True, slots=True)
class PeerEvent:
    """A peer connected (True) or disconnected (False): consensus retransmits on connect."""

    public_key: bytes
    connected: bool


@dataclass(frozen=True, slots=True)
class Received:
    sender: bytes
    """Public key of the authenticated peer the frame came from."""
    message: bytes


class Network(Protocol):
    async def run(self) -> None:
        """Run until cancelled (connect, accept, reconnect with backoff)."""

    def send(self, peer: bytes, message: bytes) -> None:
        """Queue `message` for one peer; never blocks. A full queue drops its oldest frame (counted).

        A key that is not a configured peer (it may just have been removed) gets nothing (counted)."""

    def broadcast(self, message: bytes) -> None:
        """`send` to every known peer."""

    async def receive(self) -> Received | PeerEvent:
        """The next frame from an authenticated peer, or a peer connection change."""

    def update_peers(self, peers: Sequence[tuple[bytes, str]]) -> None:
        """Make the configured peers exactly `peers` ((public key, address) pairs; our own key is skipped).

        New peers are dialed and admitted at the Noise handshake from now on; removed ones are refused from
        now on, their queued frames dropped, their outbound stream closed and their connection closed (with
        a PeerEvent(key, False) if it was up). A key listed again with another address keeps its queue and
        link and is dialed at the new address from then on. Called from the asyncio side; returns at once
        (the transport applies it soon). Idempotent. Raises ValueError, changing nothing, for a bad address
        or a key listed twice.
        """

    def peers(self) -> list[PeerInfo]:
        """Every configured peer with its connection state (a removed peer is no longer listed)."""

    def stats(self) -> dict[str, int]:
        """Counters since start (frames sent and received, refused peers, dropped frames, …)."""
