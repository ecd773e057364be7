"""Block sync scheduling: which peers to ask for missing blocks, and how far to believe peers.

A peer's Status height is a claim, not a fact: anyone allowed to connect (a Byzantine validator,
a full node) can claim any height. So claims only choose whom to ask; a request times out, and a
peer that does not serve the heights it claimed (no answer, an empty or useless answer, a block
that fails verification) is passed over for a while that doubles per failure. Among the peers that
claim more than this node has, the one with the fewest recent failures that was asked longest ago
goes first. Answers are accepted only from a peer asked and not yet answered.

A silent peer must not hold catch-up for a whole timeout: while requests go unanswered, one more
peer is asked every `sync_hedge_ms` (at most one request per peer in flight). So each lying or
unlucky peer asked first costs a node that is behind at most `sync_hedge_ms` before the next peer
is asked, and an answer lost on the way costs no more than a liar's silence. An answer that comes
after another peer's, with blocks this node has meanwhile committed, still counts as served when
they are the ones it committed: an honest peer that was merely second is not ranked with liars.

Pure logic: the clock is passed in, nothing is sent from here (the driver sends).
"""

from __future__ import annotations

from dataclasses import dataclass

from node import limits

sync_hedge_ms = limits.sync_hedge_ms


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
        self.pending: dict[bytes, PendingRequest] = {}
        """peer -> its request in flight: at most one per peer, so bounded like `peers`."""

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
        """The request to send now, if any: at once when none is in flight, else once the newest one in
        flight has gone unanswered for `sync_hedge_ms` (requests that timed out are given up first)."""
        for request in [r for r in self.pending.values() if now_ms - r.sent_ms >= limits.sync_request_timeout_ms]:
            self._failed(request.peer, now_ms, severe=False)  # asked and never answered
        if self.pending and now_ms - max(r.sent_ms for r in self.pending.values()) < sync_hedge_ms:
            return None
        candidates = [(state.failures, state.last_asked_ms, peer) for peer, state in self.peers.items()
                      if state.claimed_height > head_height and state.distrusted_until_ms <= now_ms
                      and peer not in self.pending]
        if not candidates:
            return None
        _, _, peer = min(candidates)
        self.peers[peer].last_asked_ms = now_ms
        request = PendingRequest(peer, head_height + 1, now_ms)
        self.pending[peer] = request
        return request

    def wake_in_ms(self, now_ms: int) -> int | None:
        """How long until the requests in flight are due a hedge or a timeout (None: nothing in flight)."""
        if not self.pending:
            return None
        newest_ms = max(r.sent_ms for r in self.pending.values())
        oldest_ms = min(r.sent_ms for r in self.pending.values())
        due_ms = min(newest_ms + sync_hedge_ms, oldest_ms + limits.sync_request_timeout_ms)
        if due_ms <= now_ms:  # the hedge is due but nobody else can be asked: wait for the timeout
            due_ms = oldest_ms + limits.sync_request_timeout_ms
        return max(1, due_ms - now_ms)

    def is_awaited(self, peer: bytes) -> bool:
        """True if an answer from `peer` is expected (answers nobody asked for are dropped unread)."""
        return peer in self.pending

    def awaited_from_height(self, peer: bytes) -> int:
        """The first height asked of `peer` in its request in flight."""
        return self.pending[peer].from_height

    def on_answer(self, peer: bytes, applied_blocks: int, invalid: bool, now_ms: int,
                  confirmed_blocks: int = 0) -> None:
        """The awaited answer was processed: it added `applied_blocks`, repeated `confirmed_blocks` this node
        committed meanwhile (asked for, and equal to its own), or held a block that failed checks."""
        assert self.is_awaited(peer)
        del self.pending[peer]
        if invalid or applied_blocks + confirmed_blocks == 0:
            self._failed(peer, now_ms, severe=invalid)
        else:
            self.peers[peer].failures = 0

    def _failed(self, peer: bytes, now_ms: int, severe: bool) -> None:
        self.pending.pop(peer, None)
        state = self.peers.setdefault(peer, PeerSyncState())
        state.failures += 1
        distrust_ms = limits.sync_distrust_ms_max if severe else min(
            limits.sync_distrust_ms_max, limits.sync_distrust_ms_min * 2 ** min(state.failures - 1, 16))
        state.distrusted_until_ms = now_ms + distrust_ms
