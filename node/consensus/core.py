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
so a block that may have committed anywhere is never replaced.

Durable before sent (the rule that keeps a crash-restart from forking the chain; the argument
is in docs/CONSENSUS.md): every record a validator needs to stay safe is a `Persist` action that
comes before any action sending a message that depends on it — each own signed message, the
prepared certificate with its block before the Commit it allows, and the end of a view change.
The driver writes it durably (fail-stop on error) before it carries out the next action, and
`Replica(persisted=...)` restores exactly that state at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from node import crypto, limits
from node.blocks import Block, CommitCertificate, header_hash, quorum_size
from node.consensus.messages import (Commit, InvalidMessage, Message, NewView, PreparedCertificate, PreparedState,
                                     Prepare, PrePrepare, SignedMessage, SignedViewChange, ViewChange, ViewEntered,
                                     VoteSignature, check_block_body, check_prepared_certificate, commit_certificate,
                                     sign_message, signing_payload, verify_message)


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
    for_vote: bool = True
    """False for a block that already has a commit quorum: the local-clock rule (a voting rule) is skipped."""


@dataclass(frozen=True, slots=True)
class RequestProposal:
    height: int
    view: int


@dataclass(frozen=True, slots=True)
class CommitBlock:
    block: Block
    certificate: CommitCertificate


DurableRecord = SignedMessage | PreparedState | ViewEntered
"""What the write-ahead log holds: own signed messages, the prepared certificate, the end of a view change."""


@dataclass(frozen=True, slots=True)
class Persist:
    """Write `record` durably before any later action is carried out (a failed write stops the node)."""

    record: DurableRecord


@dataclass(frozen=True, slots=True)
class NeedSync:
    """Evidence that the chain is ahead of this node: ask `validator_index` for blocks."""

    validator_index: int


Action = Broadcast | SendTo | SetTimer | ValidateBlock | RequestProposal | CommitBlock | Persist | NeedSync

VIEW_TIMER = "view"
RESEND_TIMER = "resend"


# --- what a signature binds ----------------------------------------------------------------------

Slot = tuple[int, int, str]
"""(height, view, kind): a validator signs at most one value per slot."""


def signing_slots(message: Message) -> tuple[tuple[Slot, bytes | None], ...]:
    """The slots a message fills and the value it puts in each.

    A PrePrepare and a NewView that carries a block both fill the view's one `proposal` slot, so a
    primary can never propose two blocks for one view, whichever message kinds it uses.
    """
    if isinstance(message, PrePrepare):
        return (((message.height, message.view, "proposal"), header_hash(message.block.header)),)
    if isinstance(message, Prepare):
        return (((message.height, message.view, "prepare"), message.block_hash),)
    if isinstance(message, Commit):
        return (((message.height, message.view, "commit"), message.block_hash),)
    digest = crypto.hash_bytes(signing_payload(message)[1])
    if isinstance(message, ViewChange):
        return (((message.height, message.new_view, "view_change"), digest),)
    assert isinstance(message, NewView)
    slots = (((message.height, message.view, "new_view"), digest),)
    if message.block is not None:
        slots += (((message.height, message.view, "proposal"), header_hash(message.block.header)),)
    return slots


def message_view(message: Message) -> int:
    return message.new_view if isinstance(message, ViewChange) else message.view


def record_height(record: DurableRecord) -> int:
    if isinstance(record, SignedMessage):
        return record.message.height
    if isinstance(record, PreparedState):
        return record.certificate.height
    return record.height


def record_view(record: DurableRecord) -> int:
    if isinstance(record, SignedMessage):
        return message_view(record.message)
    if isinstance(record, PreparedState):
        return record.certificate.view
    return record.view


@dataclass
class Round:
    """Everything collected at one height; replaced when the height commits."""

    proposals: dict[int, Block] = field(default_factory=dict)
    """view -> the primary's block accepted for that view."""
    prepares: dict[tuple[int, bytes], dict[int, bytes]] = field(default_factory=dict)
    commits: dict[tuple[int, bytes], dict[int, bytes]] = field(default_factory=dict)
    votes: dict[tuple[str, int], dict[int, bytes]] = field(default_factory=dict)
    """(kind, sender) -> view -> block hash: one vote per sender, kind and view; at most one future view."""
    view_changes: dict[int, dict[int, SignedViewChange]] = field(default_factory=dict)
    prepared: tuple[PreparedCertificate, Block] | None = None
    """The highest-view prepared certificate this node knows at this height, with its block."""
    validated: set[bytes] = field(default_factory=set)
    """Block hashes the application executed and accepted."""
    commit_validation_tried: set[bytes] = field(default_factory=set)
    """Blocks with a commit quorum already handed to the application once."""
    new_view_sent: set[int] = field(default_factory=set)
    new_view_awaiting_proposal: set[int] = field(default_factory=set)
    """Views whose NewView waits for a fresh block from the driver (no prepared block to re-propose)."""
    decided: bool = False
    outbox: list[SignedMessage] = field(default_factory=list)
    """Own messages at this height (of the current view on), re-sent on reconnect and on the resend timer."""


class Replica:
    def __init__(self, index: int | None, keys: crypto.KeyPair | None, domain: crypto.SigningDomain,
                 validator_keys: Sequence[bytes], height: int, base_timeout_ms: int = 1_000,
                 timeout_ms_max: int = 60_000, resend_ms: int = 500,
                 persisted: Sequence[DurableRecord] = ()) -> None:
        """`height` is the next height to decide; `persisted` are WAL records from earlier runs."""
        self.index = index
        self.keys = keys
        self.domain = domain
        """What every signature covers: the chain id and the genesis hash."""
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
        self.signed: dict[Slot, bytes | None] = {}
        """Slot -> value this node signed at the current height (from the WAL and this run)."""
        self.dropped: dict[str, int] = {}
        self._restore([r for r in persisted if record_height(r) == height])

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

    def _restore(self, records: Sequence[DurableRecord]) -> None:
        """Rebuild this height's state from the WAL: what was signed, the view, the prepared certificate."""
        entered: set[int] = set()
        for record in records:
            self.view = max(self.view, record_view(record))
            if isinstance(record, PreparedState):
                self._remember_prepared(record.certificate, record.block)
                entered.add(record.certificate.view)
            elif isinstance(record, ViewEntered):
                entered.add(record.view)
            else:
                self._restore_own(record)
                if not isinstance(record.message, ViewChange):
                    entered.add(message_view(record.message))
        self.view_changing = self.view not in entered and self.view > 0
        self.round.outbox = [m for m in self.round.outbox if message_view(m.message) >= self.view]

    def _restore_own(self, signed: SignedMessage) -> None:
        message = signed.message
        for slot, value in signing_slots(message):
            self.signed[slot] = value
        self.round.outbox.append(signed)
        if isinstance(message, PrePrepare):
            self.round.proposals[message.view] = message.block
        elif isinstance(message, NewView):
            self.round.new_view_sent.add(message.view)
            if message.block is not None:
                self.round.proposals[message.view] = message.block
        elif isinstance(message, (Prepare, Commit)):
            table = self.round.prepares if isinstance(message, Prepare) else self.round.commits
            table.setdefault((message.view, message.block_hash), {})[signed.validator_index] = signed.signature
            self.round.votes.setdefault((_kind(message), signed.validator_index), {})[message.view] = \
                message.block_hash
        elif isinstance(message, ViewChange):
            self.round.view_changes.setdefault(message.new_view, {})[signed.validator_index] = SignedViewChange(
                signed.validator_index, message, signed.signature)

    def _remember_prepared(self, certificate: PreparedCertificate, block: Block) -> bool:
        """Keep the highest prepared certificate; True if this one is higher than what was known."""
        if self.round.prepared is not None and self.round.prepared[0].view >= certificate.view:
            return False
        self.round.prepared = (certificate, block)
        return True

    def _sign(self, message) -> SignedMessage:
        assert self.keys is not None and self.index is not None
        return sign_message(self.keys, self.domain, self.index, message)

    def _may_sign(self, message: Message, slots: tuple[tuple[Slot, bytes | None], ...] | None = None) -> bool:
        """Never sign for a view this node has left, nor two different values for one slot."""
        if message.height != self.height or message_view(message) < self.view:
            return False
        slots = signing_slots(message) if slots is None else slots
        return all(self.signed.get(slot, value) == value for slot, value in slots)

    def _send_own(self, message: Message) -> tuple[list[Action], SignedMessage | None]:
        """Sign, persist (first time) and broadcast an own message; (actions, the signed message)."""
        slots = signing_slots(message)  # once: for a ViewChange or NewView it hashes the whole payload
        if not self._may_sign(message, slots):
            return self._drop("refused_double_sign"), None
        first_time = any(slot not in self.signed for slot, _ in slots)
        signed = self._sign(message)
        actions: list[Action] = []
        if first_time:
            for slot, value in slots:
                self.signed[slot] = value
            self.round.outbox.append(signed)
            actions.append(Persist(signed))
        actions.append(Broadcast(signed))
        return actions, signed

    def _enter_view(self, view: int, changing: bool) -> None:
        """Move to `view`; forget what only mattered for views this node has left (bounded memory)."""
        assert view >= self.view
        self.view = view
        self.view_changing = changing
        oldest_commit_view = view - limits.pbft_past_views_kept
        for (kind, sender), views in self.round.votes.items():
            oldest = view if kind == "prepare" else oldest_commit_view
            for old in [v for v in views if v < oldest]:
                self._forget_vote(kind, sender, old)
        for old in [v for v in self.round.view_changes if v < view]:
            del self.round.view_changes[old]
        for old in [v for v in self.round.proposals if v < oldest_commit_view]:
            del self.round.proposals[old]
        self.round.outbox = [m for m in self.round.outbox if message_view(m.message) >= view]

    # --- starting and timers ------------------------------------------------------------------

    def start(self) -> list[Action]:
        """Actions on start-up (after WAL replay): re-send what was signed, re-validate the view's proposal."""
        actions: list[Action] = [Broadcast(m) for m in self.round.outbox]
        actions.append(SetTimer(RESEND_TIMER, self.resend_ms, self.height, self.view))
        if self.view_changing or self.round.proposals or self.round.prepared is not None:
            actions.append(SetTimer(VIEW_TIMER, self.timeout_ms(self.view), self.height, self.view))
        proposal = self.round.proposals.get(self.view)
        if proposal is not None and not self.view_changing:
            actions.append(ValidateBlock(proposal))
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
                and self.primary(self.height, self.view) == self.index and self.view not in self.round.proposals
                and (self.height, self.view, "proposal") not in self.signed):
            return [RequestProposal(self.height, self.view)]
        return []

    def on_timeout(self, name: str, height: int, view: int) -> list[Action]:
        if height != self.height:
            return []
        if name == RESEND_TIMER:
            actions: list[Action] = [Broadcast(m) for m in self.round.outbox[-limits.pbft_outbox_resend_max:]]
            return actions + [SetTimer(RESEND_TIMER, self.resend_ms, self.height, self.view)]
        if name != VIEW_TIMER or view != self.view or self.round.decided:
            return []
        if (not self.work_pending and not self.view_changing and not self.round.proposals
                and self.round.prepared is None):
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
        if awaited_by_new_view:
            self.round.new_view_awaiting_proposal.discard(self.view)
            highest = _highest_prepared(self.round.view_changes[self.view].values())
            if highest is not None:  # a certificate arrived while the block was being built: it wins
                return self._send_new_view(self.view, highest.view_change.prepared_block)
            return self._send_new_view(self.view, block)  # which validates it (and so prepares it)
        else:
            actions, signed = self._send_own(PrePrepare(self.height, self.view, block))
            if signed is None:
                return actions
            self.round.proposals[self.view] = block
        return actions + self.on_block_validated(block_hash, True)

    def on_message(self, signed: SignedMessage) -> list[Action]:
        """A consensus message from the network (any sender, any content: all checked here)."""
        message = signed.message
        if message.height < self.height:
            return self._drop("stale")
        try:
            verify_message(signed, self.domain, self.validator_keys)
        except InvalidMessage:
            return self._drop("bad_signature")
        sender = signed.validator_index
        if message.height > self.height:
            return [NeedSync(sender)] if isinstance(message, (Commit, NewView)) else self._drop("future")
        if self.round.decided:
            return []
        if message_view(message) > self.view + limits.pbft_future_views_max:
            return self._drop("far_future_view")
        if isinstance(message, PrePrepare):
            return self._on_pre_prepare(sender, message)
        if isinstance(message, (Prepare, Commit)):
            return self._on_vote(sender, message, signed.signature)
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
        if not self._is_fresh_proposal(block, message.view):
            return self._drop("malformed_proposal")
        known = self.round.proposals.get(message.view)
        if known is not None:
            if header_hash(known.header) == header_hash(block.header) and known.transactions == block.transactions:
                return []
            self._drop("equivocation")
            return self._start_view_change(self.view + 1)  # two blocks for one view: the primary is faulty
        self.round.proposals[message.view] = block
        return [ValidateBlock(block), SetTimer(VIEW_TIMER, self.timeout_ms(self.view), self.height, self.view)]

    def _is_fresh_proposal(self, block: Block, view: int) -> bool:
        """A block newly proposed at (this height, view): its header names that view and its primary, and its
        body is the one the header commits to."""
        header = block.header
        primary_address = crypto.address_from_public_key(self.validator_keys[self.primary(self.height, view)])
        if header.height != self.height or header.view != view or header.proposer != primary_address:
            return False
        try:
            check_block_body(block)
        except InvalidMessage:
            return False
        return True

    def on_block_validated(self, block_hash: bytes, valid: bool) -> list[Action]:
        """The application executed the block with this hash (a proposal, or one with a commit quorum)."""
        if self.round.decided or self._block_with_hash(block_hash) is None:
            return []
        proposal = self.round.proposals.get(self.view)
        is_current = proposal is not None and header_hash(proposal.header) == block_hash
        if not valid:
            self._drop("invalid_block")
            return self._start_view_change(self.view + 1) if is_current and not self.view_changing else []
        self.round.validated.add(block_hash)
        actions: list[Action] = []
        if is_current and self.is_validator and not self.view_changing:
            sent, signed = self._send_own(Prepare(self.height, self.view, block_hash))
            actions += sent
            if signed is not None:
                self._count_vote(self.round.prepares, "prepare", self.index, self.view, block_hash, signed.signature)
        actions += self._check_prepared(self.view, block_hash)
        for view, voted_hash in list(self.round.commits):
            if voted_hash == block_hash:
                actions += self._check_committed(view, block_hash)
        return actions

    # --- votes ----------------------------------------------------------------------------------

    def _on_vote(self, sender: int, message: Prepare | Commit, signature: bytes) -> list[Action]:
        kind = _kind(message)
        view = message.view
        if view < self.view and (kind == "prepare" or view < self.view - limits.pbft_past_views_kept):
            return self._drop("stale_view")
        views = self.round.votes.get((kind, sender), {})
        if view in views:
            return [] if views[view] == message.block_hash else self._drop("conflicting_vote")
        if view > self.view:
            future = [v for v in views if v > self.view]
            if future and max(future) > view:
                return self._drop("superseded_future_vote")
            for old in future:
                self._forget_vote(kind, sender, old)  # one future-view vote per sender and kind
        table = self.round.prepares if kind == "prepare" else self.round.commits
        self._count_vote(table, kind, sender, view, message.block_hash, signature)
        if kind == "prepare":
            return self._check_prepared(view, message.block_hash)
        return self._check_committed(view, message.block_hash)

    def _count_vote(self, table: dict[tuple[int, bytes], dict[int, bytes]], kind: str, sender: int, view: int,
                    block_hash: bytes, signature: bytes) -> None:
        self.round.votes.setdefault((kind, sender), {})[view] = block_hash
        table.setdefault((view, block_hash), {})[sender] = signature

    def _forget_vote(self, kind: str, sender: int, view: int) -> None:
        block_hash = self.round.votes[(kind, sender)].pop(view)
        table = self.round.prepares if kind == "prepare" else self.round.commits
        entry = table.get((view, block_hash), {})
        entry.pop(sender, None)
        if not entry:
            table.pop((view, block_hash), None)

    def _block_with_hash(self, block_hash: bytes) -> Block | None:
        for block in self.round.proposals.values():
            if header_hash(block.header) == block_hash:
                return block
        if self.round.prepared is not None and self.round.prepared[0].block_hash == block_hash:
            return self.round.prepared[1]
        return None

    def _check_prepared(self, view: int, block_hash: bytes) -> list[Action]:
        if view != self.view or self.view_changing or block_hash not in self.round.validated:
            return []
        signatures = self.round.prepares.get((view, block_hash), {})
        if len(signatures) < self.quorum:
            return []
        block = self._block_with_hash(block_hash)
        assert block is not None
        certificate = PreparedCertificate(self.height, view, block_hash,
                                          tuple(VoteSignature(i, signatures[i]) for i in sorted(signatures)))
        actions: list[Action] = []
        if self._remember_prepared(certificate, block) and self.is_validator:
            # Durable before the Commit it allows: a restarted validator must carry this certificate in
            # every later ViewChange, or the next primary could replace a block that committed elsewhere.
            actions.append(Persist(PreparedState(certificate, block)))
        if not self.is_validator:
            return actions
        sent, signed = self._send_own(Commit(self.height, view, block_hash))
        actions += sent
        if signed is not None:
            self._count_vote(self.round.commits, "commit", self.index, view, block_hash, signed.signature)
        return actions + self._check_committed(view, block_hash)

    def _check_committed(self, view: int, block_hash: bytes) -> list[Action]:
        commits = self.round.commits.get((view, block_hash), {})
        if len(commits) < self.quorum or self.round.decided:
            return []
        block = self._block_with_hash(block_hash)
        if block is None:
            return [NeedSync(next(iter(commits)))]  # final elsewhere, and we never saw the block
        if block_hash not in self.round.validated:
            if block_hash in self.round.commit_validation_tried:
                return []
            self.round.commit_validation_tried.add(block_hash)
            return [ValidateBlock(block, for_vote=False)]
        self.round.decided = True
        return [CommitBlock(block, commit_certificate(self.height, view, block_hash, commits))]

    # --- view change ----------------------------------------------------------------------------

    def _start_view_change(self, new_view: int) -> list[Action]:
        if new_view < self.view or (new_view == self.view and self.view_changing):
            return []
        self._enter_view(new_view, changing=True)
        actions: list[Action] = [SetTimer(VIEW_TIMER, self.timeout_ms(new_view), self.height, new_view)]
        if not self.is_validator:
            return actions
        prepared = self.round.prepared
        view_change = ViewChange(self.height, new_view, prepared[0] if prepared else None,
                                 prepared[1] if prepared else None)
        sent, signed = self._send_own(view_change)
        actions += sent
        if signed is not None:
            self.round.view_changes.setdefault(new_view, {})[self.index] = SignedViewChange(
                self.index, view_change, signed.signature)
        return actions + self._check_new_view(new_view)

    def _on_view_change(self, signed: SignedViewChange) -> list[Action]:
        view_change = signed.view_change
        new_view = view_change.new_view
        sender = signed.validator_index
        if new_view < self.view:
            return self._drop("stale_view_change")
        if sender in self.round.view_changes.get(new_view, {}):
            return []  # before checking its certificate again: a resent view change costs nothing
        future = [v for v, collected in self.round.view_changes.items() if v > self.view and sender in collected]
        if new_view > self.view and future and max(future) > new_view:
            return self._drop("superseded_future_view_change")
        try:
            self._check_view_change_content(view_change)
        except InvalidMessage:
            return self._drop("bad_prepared_certificate")
        if new_view > self.view:
            for old in future:
                del self.round.view_changes[old][sender]  # one future-view view change per sender
        self.round.view_changes.setdefault(new_view, {})[sender] = signed
        actions: list[Action] = []
        wanted = self._view_wanted_by_f_plus_one()
        if wanted > self.view:
            actions += self._start_view_change(wanted)
        return actions + self._check_new_view(new_view)

    def _view_wanted_by_f_plus_one(self) -> int:
        """The highest view that f+1 validators want to move to (at least one of them is honest), or -1."""
        wanted = sorted((v for v, collected in self.round.view_changes.items() if v > self.view
                         for _ in collected), reverse=True)
        return wanted[self.f] if len(wanted) > self.f else -1

    def _check_view_change_content(self, view_change: ViewChange) -> None:
        if view_change.prepared is None:
            if view_change.prepared_block is not None:
                raise InvalidMessage("view change carries a block without a prepared certificate")
            return
        if view_change.prepared.height != view_change.height or view_change.prepared.view >= view_change.new_view:
            raise InvalidMessage("prepared certificate is not from an earlier view of this height")
        check_prepared_certificate(view_change.prepared, view_change.prepared_block, self.domain,
                                   self.validator_keys)

    def _check_new_view(self, view: int) -> list[Action]:
        if (not self.is_validator or self.primary(self.height, view) != self.index or view != self.view
                or view in self.round.new_view_sent or view in self.round.new_view_awaiting_proposal):
            return []
        collected = self.round.view_changes.get(view, {})
        if len(collected) < self.quorum:
            return []
        highest = _highest_prepared(collected.values())
        if highest is not None:
            return self._send_new_view(view, highest.view_change.prepared_block)
        if view in self.round.proposals:
            return self._send_new_view(view, self.round.proposals[view])
        if self.work_pending:
            self.round.new_view_awaiting_proposal.add(view)
            return [RequestProposal(self.height, view)]  # NewView goes out with the proposal
        return self._send_new_view(view, None)

    def _send_new_view(self, view: int, block: Block | None) -> list[Action]:
        collected = self.round.view_changes[view]
        # The proof must contain the view change with the highest certificate: replicas check the block
        # against the highest certificate *in the proof*, so leaving it out would waste the view.
        highest = _highest_prepared(collected.values())
        first = [] if highest is None else [highest.validator_index]
        order = first + [i for i in sorted(collected) if i not in first]
        chosen = tuple(sorted((collected[i] for i in order[:self.quorum]), key=lambda c: c.validator_index))
        actions, signed = self._send_own(NewView(self.height, view, chosen, block))
        if signed is None:
            return actions
        self.round.new_view_sent.add(view)
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
        if highest is not None and (block is None or header_hash(block.header) != highest.view_change.prepared.block_hash
                                    or block.transactions != highest.view_change.prepared_block.transactions):
            return self._drop("new_view_drops_prepared_block")
        if highest is None and block is not None and not self._is_fresh_proposal(block, message.view):
            return self._drop("malformed_proposal")
        self._enter_view(message.view, changing=False)
        actions: list[Action] = [SetTimer(VIEW_TIMER, self.timeout_ms(self.view), self.height, self.view)]
        if self.is_validator:
            actions.insert(0, Persist(ViewEntered(self.height, self.view)))
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
        if len(signers) < self.quorum:
            raise InvalidMessage("new view carries fewer than 2f+1 view changes")
        for signed in message.view_changes:
            verify_message(SignedMessage(signed.validator_index, signed.view_change, signed.signature),
                           self.domain, self.validator_keys)
            self._check_view_change_content(signed.view_change)
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
        self.signed = {slot: value for slot, value in self.signed.items() if slot[0] >= self.height}
        actions: list[Action] = [SetTimer(RESEND_TIMER, self.resend_ms, self.height, self.view)]
        if self.work_pending:
            actions.append(SetTimer(VIEW_TIMER, self.timeout_ms(0), self.height, 0))
            actions += self._maybe_propose()
        return actions

    def on_peer_connected(self, validator_index: int) -> list[Action]:
        """Re-send this height's own messages: anything sent while the link was down was lost."""
        return [SendTo(validator_index, m) for m in self.round.outbox]


def _kind(message: Prepare | Commit) -> str:
    return "prepare" if isinstance(message, Prepare) else "commit"


def _highest_prepared(view_changes) -> SignedViewChange | None:
    best = None
    for signed in view_changes:
        prepared = signed.view_change.prepared
        if prepared is not None and (best is None or prepared.view > best.view_change.prepared.view):
            best = signed
    return best
