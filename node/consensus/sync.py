"""Block sync scheduling: which peer to ask for missing blocks, and how far to believe peers.

A peer's Status height is a claim, not a fact: anyone allowed to connect (a Byzantine validator,
a full node) can claim any height. So claims only choose whom to ask; one request is in flight
at a time, it times out, and a peer that does not serve the heights it claimed (no answer, an
empty or useless answer, a block that fails verification) is passed over for a while that
doubles per failure. Among the peers that claim more than this node has, the one with the
fewest recent failures that was asked longest ago goes first, so one lying peer cannot starve
a node that honest peers could serve. Answers are accepted only from the peer asked.

Pure logic: the clock is passed in, nothing is sent from here (the driver sends).
"""

from __future__ import annotations

from dataclasses import dataclass

from node import limits


@dataclass
class PeerSyncState:
    claimed_height: int = 0
    """The height the peer last said it has (Status), or that its messages proved."""
    failures: int = 0
    """Requests in a row the peer did not serve."""
    distrusted_until_ms: int = 0
    last_asked_ms: int = -1


@dataclass(frozen=True, slots=True)
class PendingRequest:
    peer: bytes
    from_height: int
    sent_ms: int


class BlockSync:
    def __init__(self) -> None:
        self.peers: dict[bytes, PeerSyncState] = {}
        """Only authenticated peers (validators, allowlisted full nodes) get here, so this is bounded."""
        self.pending: PendingRequest | None = None

    def claimed_heights(self) -> dict[bytes, int]:
        return {peer: state.claimed_height for peer, state in self.peers.items()}

    def on_claim(self, peer: bytes, height: int) -> None:
        """The peer's Status says it has `height`."""
        self.peers.setdefault(peer, PeerSyncState()).claimed_height = height

    def on_evidence(self, peer: bytes, height_min: int) -> None:
        """A signed message proved the peer is at least at `height_min` (e.g. it committed a later block)."""
        state = self.peers.setdefault(peer, PeerSyncState())
        state.claimed_height = max(state.claimed_height, height_min)

    def next_request(self, head_height: int, now_ms: int) -> PendingRequest | None:
        """The request to send now, if any: none while one is in flight and not yet timed out."""
        if self.pending is not None:
            if now_ms - self.pending.sent_ms < limits.sync_request_timeout_ms:
                return None
            self._failed(self.pending.peer, now_ms, severe=False)  # asked and never answered
        candidates = [(state.failures, state.last_asked_ms, peer) for peer, state in self.peers.items()
                      if state.claimed_height > head_height and state.distrusted_until_ms <= now_ms]
        if not candidates:
            return None
        _, _, peer = min(candidates)
        self.peers[peer].last_asked_ms = now_ms
        self.pending = PendingRequest(peer, head_height + 1, now_ms)
        return self.pending

    def is_awaited(self, peer: bytes) -> bool:
        """True if an answer from `peer` is expected (answers nobody asked for are dropped unread)."""
        return self.pending is not None and self.pending.peer == peer

    def on_answer(self, peer: bytes, applied_blocks: int, invalid: bool, now_ms: int) -> None:
        """The awaited answer was processed: it added `applied_blocks`, or held a block that failed checks."""
        assert self.is_awaited(peer)
        self.pending = None
        if invalid or applied_blocks == 0:
            self._failed(peer, now_ms, severe=invalid)
        else:
            self.peers[peer].failures = 0

    def _failed(self, peer: bytes, now_ms: int, severe: bool) -> None:
        if self.pending is not None and self.pending.peer == peer:
            self.pending = None
        state = self.peers.setdefault(peer, PeerSyncState())
        state.failures += 1
        distrust_ms = limits.sync_distrust_ms_max if severe else min(
            limits.sync_distrust_ms_max, limits.sync_distrust_ms_min * 2 ** min(state.failures - 1, 16))
        state.distrusted_until_ms = now_ms + distrust_ms
