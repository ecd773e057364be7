"""The PBFT core: a pure state machine, one block per height.

Inputs are method calls (`on_message`, `on_timeout`, `on_block_validated`, `on_proposal`,
`on_work`, `on_committed`, `on_peer_connected`); outputs are lists of actions for the
driver to carry out, in order. No clock, network, storage or randomness in here: the same
core runs in the deterministic simulator and in the node.

Normal case at (height, view): the primary `validators[(height + view) % n]` proposes
(PrePrepare); replicas validate the block and Prepare; 2f+1 Prepares make the block
*prepared* and replicas Commit; 2f+1 Commits make a CommitCertificate and the block final.
A view times out when there is work and no commit; the timeout doubles per failed view at a
height and resets after a commit. ViewChange carries the highest prepared certificate; the
new primary's NewView carries 2f+1 ViewChanges and re-proposes the highest prepared block,
so a block that may have committed anywhere is never replaced. Own votes are written to the
WAL (`PersistVote`) before they are sent, and replayed at start, so a restarted validator
never signs two different blocks for one (height, view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from node import crypto
from node.blocks import Block, CommitCertificate, header_hash, quorum_size
from node.consensus.messages import (Commit, InvalidMessage, NewView, PreparedCertificate, Prepare, PrePrepare,
                                     SignedMessage, SignedViewChange, ViewChange, VoteSignature,
                                     check_prepared_certificate, commit_certificate, sign_message,
                                     verify_message)


# --- actions ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Broadcast:
    message: SignedMessage


@dataclass(frozen=True, slots=True)
class SendTo:
    validator_index: int
    message: SignedMessage


@dataclass(frozen=True, slots=True)
class SetTimer:
    """(Re)arm the timer `name`; when it fires the driver calls on_timeout(name, height, view)."""

    name: str
    delay_ms: int
    height: int
    view: int


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    block: Block


@dataclass(frozen=True, slots=True)
class RequestProposal:
    height: int
    view: int


@dataclass(frozen=True, slots=True)
class CommitBlock:
    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class PersistVote:
    """Write this own message durably before any later action is carried out."""

    height: int
    view: int
    kind: str
    block_hash: bytes | None
    message: SignedMessage


@dataclass(frozen=True, slots=True)
class NeedSync:
    """Evidence that the chain is ahead of this node: ask `validator_index` for blocks."""

    validator_index: int


Action = Broadcast | SendTo | SetTimer | ValidateBlock | RequestProposal | CommitBlock | PersistVote | NeedSync

VIEW_TIMER = "view"
RESEND_TIMER = "resend"


@dataclass
class Round:
    """Everything collected at one height; replaced when the height commits."""

    proposals: dict[int, Block] = field(default_factory=dict)
    """view -> the primary's block accepted for that view."""
    prepares: dict[tuple[int, bytes], dict[int, bytes]] = field(default_factory=dict)
    commits: dict[tuple[int, bytes], dict[int, bytes]] = field(default_factory=dict)
    view_changes: dict[int, dict[int, SignedViewChange]] = field(default_factory=dict)
    prepared: tuple[PreparedCertificate, Block] | None = None
    """The highest-view prepared certificate this node knows at this height, with its block."""
    validated: set[bytes] = field(default_factory=set)
    """Block hashes the application executed and accepted."""
    new_view_sent: set[int] = field(default_factory=set)
    new_view_awaiting_proposal: set[int] = field(default_factory=set)
    """Views whose NewView waits for a fresh block from the driver (no prepared block to re-propose)."""
    decided: bool = False
    outbox: list[SignedMessage] = field(default_factory=list)
    """Own messages at this height, re-sent on reconnect and on the resend timer."""


class Replica:
    def __init__(self, index: int | None, keys: crypto.KeyPair | None, chain_id: str,
                 validator_keys: Sequence[bytes], height: int, base_timeout_ms: int = 1_000,
                 timeout_ms_max: int = 60_000, resend_ms: int = 500,
                 persisted: Sequence[PersistVote] = ()) -> None:
        """`height` is the next height to decide; `persisted` are WAL records from earlier runs."""
        self.index = index
        self.keys = keys
        self.chain_id = chain_id
        self.validator_keys = tuple(validator_keys)
        self.n = len(self.validator_keys)
        self.f = (self.n - 1) // 3
        self.quorum = quorum_size(self.n)
        self.base_timeout_ms = base_timeout_ms
        self.timeout_ms_max = timeout_ms_max
        self.resend_ms = resend_ms
        self.height = height
        self.view = 0
        self.view_changing = False
        self.work_pending = False
        self.round = Round()
        self.signed: dict[tuple[int, int, str], bytes | None] = {}
        """(height, view, kind) -> block hash this node signed (from the WAL and this run)."""
        self.dropped: dict[str, int] = {}
        self._replay(persisted)

    # --- helpers ------------------------------------------------------------------------------

    def primary(self, height: int, view: int) -> int:
        return (height + view) % self.n

    @property
    def is_validator(self) -> bool:
        return self.index is not None

    def timeout_ms(self, view: int) -> int:
        return min(self.timeout_ms_max, self.base_timeout_ms * (2 ** min(view, 30)))

    def _drop(self, reason: str) -> list[Action]:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return []

    def _replay(self, persisted: Sequence[PersistVote]) -> None:
        for record in persisted:
            self.signed[(record.height, record.view, record.kind)] = record.block_hash
            if record.height != self.height:
                continue
            self.view = max(self.view, record.view)
            message = record.message.message
            if isinstance(message, PrePrepare):
                self.round.proposals[record.view] = message.block
            if isinstance(message, ViewChange) and message.prepared is not None:
                self.round.prepared = (message.prepared, message.prepared_block)
            self.round.outbox.append(record.message)
        if any(k[0] == self.height and k[2] == "view_change" and k[1] == self.view for k in self.signed):
            self.view_changing = True

    def _sign(self, message) -> SignedMessage:
        assert self.keys is not None and self.index is not None
        return sign_message(self.keys, self.chain_id, self.index, message)

    def _may_sign(self, view: int, kind: str, block_hash: bytes | None) -> bool:
        """Never sign two different things of one kind for one (height, view)."""
        key = (self.height, view, kind)
        return key not in self.signed or self.signed[key] == block_hash

    def _send_own(self, view: int, kind: str, block_hash: bytes | None,
                  message) -> tuple[list[Action], SignedMessage | None]:
        """Sign, persist (first time) and broadcast an own message; (actions, the signed message)."""
        if not self._may_sign(view, kind, block_hash):
            return self._drop("refused_double_sign"), None
        first_time = (self.height, view, kind) not in self.signed
        signed = self._sign(message)
        self.signed[(self.height, view, kind)] = block_hash
        self.round.outbox.append(signed)
        actions: list[Action] = []
        if first_time:
            actions.append(PersistVote(self.height, view, kind, block_hash, signed))
        actions.append(Broadcast(signed))
        return actions, signed

    # --- starting and timers ------------------------------------------------------------------

    def start(self) -> list[Action]:
        """Actions on start-up (after WAL replay): re-send what was signed, arm the resend timer."""
        actions: list[Action] = [Broadcast(m) for m in self.round.outbox]
        actions.append(SetTimer(RESEND_TIMER, self.resend_ms, self.height, self.view))
        if self.view_changing:
            actions.append(SetTimer(VIEW_TIMER, self.timeout_ms(self.view), self.height, self.view))
        return actions

    def on_work(self, pending: bool) -> list[Action]:
        """The mempool has (or no longer has) transactions."""
        was = self.work_pending
        self.work_pending = pending
        if not pending or was or self.round.decided or not self.is_validator:
            return []  # a full node has no view to change: it follows by block sync
        actions: list[Action] = [SetTimer(VIEW_TIMER, self.timeout_ms(self.view), self.height, self.view)]
        actions += self._maybe_propose()
        return actions

    def _maybe_propose(self) -> list[Action]:
        if (self.is_validator and not self.view_changing and self.work_pending and not self.round.decided
                and self.primary(self.height, self.view) == self.index and self.view not in self.round.proposals):
            return [RequestProposal(self.height, self.view)]
        return []

    def on_timeout(self, name: str, height: int, view: int) -> list[Action]:
        if height != self.height:
            return []
        if name == RESEND_TIMER:
            actions: list[Action] = [Broadcast(m) for m in self.round.outbox[-8:]]
            return actions + [SetTimer(RESEND_TIMER, self.resend_ms, self.height, self.view)]
        if name != VIEW_TIMER or view != self.view or self.round.decided:
            return []
        if not self.work_pending and not self.view_changing and not self.round.proposals:
            return []  # idle: nothing to make progress on
        return self._start_view_change(self.view + 1)

    # --- proposals ----------------------------------------------------------------------------

    def on_proposal(self, block: Block) -> list[Action]:
        """The driver built `block` (from the mempool) after RequestProposal."""
        awaited_by_new_view = self.view in self.round.new_view_awaiting_proposal
        if (block.header.height != self.height or self.primary(self.height, self.view) != self.index
                or (self.view_changing and not awaited_by_new_view) or self.view in self.round.proposals
                or self.round.decided):
            return []
        block_hash = header_hash(block.header)
        self.round.proposals[self.view] = block
        if awaited_by_new_view:
            self.round.new_view_awaiting_proposal.discard(self.view)
            actions = self._send_new_view(self.view, block)
        else:
            actions, _ = self._send_own(self.view, "pre_prepare", block_hash,
                                        PrePrepare(self.height, self.view, block))
        return actions + self.on_block_validated(block_hash, True)

    def on_message(self, signed: SignedMessage) -> list[Action]:
        """A consensus message from the network (any sender, any content: all checked here)."""
        try:
            verify_message(signed, self.chain_id, self.validator_keys)
        except InvalidMessage:
            return self._drop("bad_signature")
        message = signed.message
        sender = signed.validator_index
        if message.height < self.height:
            return self._drop("stale")
        if message.height > self.height:
            return [NeedSync(sender)] if isinstance(message, (Commit, NewView)) else self._drop("future")
        if self.round.decided:
            return []
        if isinstance(message, PrePrepare):
            return self._on_pre_prepare(sender, message)
        if isinstance(message, Prepare):
            return self._on_vote(self.round.prepares, sender, message, signed.signature)
        if isinstance(message, Commit):
            return self._on_vote(self.round.commits, sender, message, signed.signature)
        if isinstance(message, ViewChange):
            return self._on_view_change(SignedViewChange(sender, message, signed.signature))
        if isinstance(message, NewView):
            return self._on_new_view(sender, message)
        return self._drop("not_consensus")

    def _on_pre_prepare(self, sender: int, message: PrePrepare) -> list[Action]:
        block = message.block
        if sender != self.primary(self.height, message.view):
            return self._drop("not_primary")
        if message.view != self.view or self.view_changing:
            return self._drop("wrong_view")
        if block.header.height != self.height or block.header.view != message.view:
            return self._drop("malformed_proposal")
        if block.header.proposer != crypto.address_from_public_key(self.validator_keys[sender]):
            return self._drop("malformed_proposal")
        known = self.round.proposals.get(message.view)
        if known is not None:
            if header_hash(known.header) == header_hash(block.header):
                return []
            self._drop("equivocation")
            return self._start_view_change(self.view + 1)  # two blocks for one view: the primary is faulty
        self.round.proposals[message.view] = block
        return [ValidateBlock(block), SetTimer(VIEW_TIMER, self.timeout_ms(self.view), self.height, self.view)]

    def on_block_validated(self, block_hash: bytes, valid: bool) -> list[Action]:
        proposal = self.round.proposals.get(self.view)
        if proposal is None or header_hash(proposal.header) != block_hash or self.round.decided:
            return []
        if not valid:
            self._drop("invalid_block")
            return self._start_view_change(self.view + 1)
        self.round.validated.add(block_hash)
        actions: list[Action] = []
        if self.is_validator and not self.view_changing:
            sent, signed = self._send_own(self.view, "prepare", block_hash, Prepare(self.height, self.view, block_hash))
            actions += sent
            if signed is not None:
                self.round.prepares.setdefault((self.view, block_hash), {})[self.index] = signed.signature
        return actions + self._check_prepared(self.view, block_hash) + self._check_committed(self.view, block_hash)

    # --- votes ----------------------------------------------------------------------------------

    def _on_vote(self, votes: dict[tuple[int, bytes], dict[int, bytes]], sender: int, message: Prepare | Commit,
                 signature: bytes) -> list[Action]:
        entry = votes.setdefault((message.view, message.block_hash), {})
        if sender in entry:
            return []
        entry[sender] = signature
        if isinstance(message, Prepare):
            return self._check_prepared(message.view, message.block_hash)
        return self._check_committed(message.view, message.block_hash)

    def _block_with_hash(self, block_hash: bytes) -> Block | None:
        for block in self.round.proposals.values():
            if header_hash(block.header) == block_hash:
                return block
        if self.round.prepared is not None and self.round.prepared[0].block_hash == block_hash:
            return self.round.prepared[1]
        return None

    def _is_validated(self, block_hash: bytes) -> bool:
        return block_hash in self.round.validated

    def _check_prepared(self, view: int, block_hash: bytes) -> list[Action]:
        if view != self.view or self.view_changing or not self._is_validated(block_hash):
            return []
        signatures = self.round.prepares.get((view, block_hash), {})
        if len(signatures) < self.quorum:
            return []
        block = self._block_with_hash(block_hash)
        assert block is not None
        certificate = PreparedCertificate(self.height, view, block_hash,
                                          tuple(VoteSignature(i, signatures[i]) for i in sorted(signatures)))
        if self.round.prepared is None or self.round.prepared[0].view < view:
            self.round.prepared = (certificate, block)
        if not self.is_validator:
            return []
        actions, signed = self._send_own(view, "commit", block_hash, Commit(self.height, view, block_hash))
        if signed is not None:
            self.round.commits.setdefault((view, block_hash), {})[self.index] = signed.signature
        return actions + self._check_committed(view, block_hash)

    def _check_committed(self, view: int, block_hash: bytes) -> list[Action]:
        commits = self.round.commits.get((view, block_hash), {})
        if len(commits) < self.quorum or self.round.decided:
            return []
        block = self._block_with_hash(block_hash)
        if block is None:
            return [NeedSync(next(iter(commits)))]  # final elsewhere, and we never saw the block
        if not self._is_validated(block_hash):
            return [ValidateBlock(block)] if view != self.view else []
        self.round.decided = True
        return [CommitBlock(block, commit_certificate(self.height, view, block_hash, commits))]

    # --- view change ----------------------------------------------------------------------------

    def _start_view_change(self, new_view: int) -> list[Action]:
        if new_view <= self.view and self.view_changing:
            return []
        self.view = new_view
        self.view_changing = True
        actions: list[Action] = [SetTimer(VIEW_TIMER, self.timeout_ms(new_view), self.height, new_view)]
        if not self.is_validator:
            return actions
        prepared = self.round.prepared
        view_change = ViewChange(self.height, new_view, prepared[0] if prepared else None,
                                 prepared[1] if prepared else None)
        sent, signed = self._send_own(new_view, "view_change", None, view_change)
        actions += sent
        if signed is not None:
            self.round.view_changes.setdefault(new_view, {})[self.index] = SignedViewChange(
                self.index, view_change, signed.signature)
        return actions + self._check_new_view(new_view)

    def _on_view_change(self, signed: SignedViewChange) -> list[Action]:
        view_change = signed.view_change
        if view_change.new_view <= self.view and not (view_change.new_view == self.view and self.view_changing):
            if view_change.new_view < self.view:
                return self._drop("stale_view_change")
        try:
            self._check_view_change_content(view_change)
        except InvalidMessage:
            return self._drop("bad_prepared_certificate")
        collected = self.round.view_changes.setdefault(view_change.new_view, {})
        if signed.validator_index in collected:
            return []
        collected[signed.validator_index] = signed
        actions: list[Action] = []
        # f+1 validators want a later view: at least one is honest, so join them (liveness).
        if view_change.new_view > self.view and len(collected) >= self.f + 1:
            actions += self._start_view_change(view_change.new_view)
        return actions + self._check_new_view(view_change.new_view)

    def _check_view_change_content(self, view_change: ViewChange) -> None:
        if view_change.prepared is None:
            if view_change.prepared_block is not None:
                raise InvalidMessage("view change carries a block without a prepared certificate")
            return
        if view_change.prepared.height != view_change.height or view_change.prepared.view >= view_change.new_view:
            raise InvalidMessage("prepared certificate is not from an earlier view of this height")
        check_prepared_certificate(view_change.prepared, view_change.prepared_block, self.chain_id,
                                   self.validator_keys)

    def _check_new_view(self, view: int) -> list[Action]:
        if (not self.is_validator or self.primary(self.height, view) != self.index or view != self.view
                or view in self.round.new_view_sent):
            return []
        collected = self.round.view_changes.get(view, {})
        if len(collected) < self.quorum:
            return []
        self.round.new_view_sent.add(view)
        highest = _highest_prepared(collected.values())
        if highest is not None:
            block = highest.view_change.prepared_block
            self.round.proposals[view] = block
            return self._send_new_view(view, block)
        if view in self.round.proposals:
            return self._send_new_view(view, self.round.proposals[view])
        if self.work_pending:
            self.round.new_view_awaiting_proposal.add(view)
            return [RequestProposal(self.height, view)]  # NewView goes out with the proposal
        return self._send_new_view(view, None)

    def _send_new_view(self, view: int, block: Block | None) -> list[Action]:
        collected = self.round.view_changes[view]
        chosen = tuple(collected[i] for i in sorted(collected)[:self.quorum])
        block_hash = None if block is None else header_hash(block.header)
        actions, _ = self._send_own(view, "new_view", block_hash, NewView(self.height, view, chosen, block))
        self.view_changing = False
        actions.append(SetTimer(VIEW_TIMER, self.timeout_ms(view), self.height, view))
        if block is not None:
            self.round.proposals[view] = block
            actions.append(ValidateBlock(block))
        return actions

    def _on_new_view(self, sender: int, message: NewView) -> list[Action]:
        if sender != self.primary(self.height, message.view):
            return self._drop("not_primary")
        if message.view < self.view or (message.view == self.view and not self.view_changing):
            return self._drop("stale_new_view")
        try:
            highest = self._check_new_view_proof(message)
        except InvalidMessage:
            return self._drop("bad_new_view")
        block = message.block
        if highest is not None and (block is None or header_hash(block.header) != highest.view_change.prepared.block_hash):
            return self._drop("new_view_drops_prepared_block")
        if highest is None and block is not None and (block.header.view != message.view or block.header.height
                                                      != self.height):
            return self._drop("malformed_proposal")
        self.view = message.view
        self.view_changing = False
        actions: list[Action] = [SetTimer(VIEW_TIMER, self.timeout_ms(self.view), self.height, self.view)]
        if block is not None:
            self.round.proposals[self.view] = block
            actions.append(ValidateBlock(block))
        return actions

    def _check_new_view_proof(self, message: NewView) -> SignedViewChange | None:
        signers = set()
        for signed in message.view_changes:
            view_change = signed.view_change
            if view_change.height != self.height or view_change.new_view != message.view:
                raise InvalidMessage("new view carries a view change for another height or view")
            if signed.validator_index in signers:
                raise InvalidMessage("new view lists a validator twice")
            signers.add(signed.validator_index)
            verify_message(SignedMessage(signed.validator_index, view_change, signed.signature), self.chain_id,
                           self.validator_keys)
            self._check_view_change_content(view_change)
        if len(signers) < self.quorum:
            raise InvalidMessage("new view carries fewer than 2f+1 view changes")
        return _highest_prepared(message.view_changes)

    # --- commits and reconnects ---------------------------------------------------------------

    def on_committed(self, height: int, work_pending: bool) -> list[Action]:
        """The chain now ends at `height` (by this node's CommitBlock, or by block sync); `work_pending`
        says whether the mempool still holds transactions (if not, no empty block is proposed)."""
        self.work_pending = work_pending
        if height < self.height:
            return []
        self.height = height + 1
        self.view = 0
        self.view_changing = False
        self.round = Round()
        actions: list[Action] = [SetTimer(RESEND_TIMER, self.resend_ms, self.height, self.view)]
        if self.work_pending:
            actions.append(SetTimer(VIEW_TIMER, self.timeout_ms(0), self.height, 0))
            actions += self._maybe_propose()
        return actions

    def on_peer_connected(self, validator_index: int) -> list[Action]:
        """Re-send this height's own messages: anything sent while the link was down was lost."""
        return [SendTo(validator_index, m) for m in self.round.outbox]


def _highest_prepared(view_changes) -> SignedViewChange | None:
    best = None
    for signed in view_changes:
        prepared = signed.view_change.prepared
        if prepared is not None and (best is None or prepared.view > best.view_change.prepared.view):
            best = signed
    return best
