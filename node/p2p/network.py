"""The Network port consensus talks to; implementations live beside it.

Messages are opaque bytes here (consensus encodes them with `node.encoding`); peers are
named by their validator public key (32 bytes). Delivery is best effort: a message may be
lost when a connection drops, so consensus retransmits what matters (on timers and when a
peer reconnects). Every queue behind this interface is bounded.
"""

from __future__ import annotations

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
        """Queue `message` for one peer; never blocks. A full queue drops its oldest frame (counted)."""

    def broadcast(self, message: bytes) -> None:
        """`send` to every known peer."""

    async def receive(self) -> Received | PeerEvent:
        """The next frame from an authenticated peer, or a peer connection change."""

    def peers(self) -> list[PeerInfo]:
        """Every configured peer with its connection state."""

    def stats(self) -> dict[str, int]:
        """Counters since start (frames sent and received, refused peers, dropped frames, …)."""
