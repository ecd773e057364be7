"""The durable-state rule, body-bound certificates, fail-stop storage, per-peer block sync and bounded
memory of the PBFT core and driver: each test builds the situation a review found unsafe (issue 10).

Validators 0..3, height 1; the primary of (1, view) is validator (1 + view) % 4.
"""

from __future__ import annotations

import dataclasses

import pytest

from node import crypto, encoding, limits
from node.blocks import Block, Header, header_hash, tx_root
from node.consensus.core import Broadcast, CommitBlock, Persist, Replica, RequestProposal, ValidateBlock
from node.consensus.driver import Driver, FailStop
from node.consensus.messages import (Commit, InvalidMessage, NewView, PreparedCertificate, PreparedState, Prepare,
                                     PrepareVote, PrePrepare, SignedMessage, ViewChange, VoteSignature,
                                     check_prepared_certificate, sign_message, sign_view_change)
from node.consensus.sync import BlockSync, sync_hedge_ms
from node.consensus.wal import FileVoteLog, LogCorrupted, MemoryVoteLog, compact
from tests.support import DOMAIN, keys

CHAIN_ID = DOMAIN.chain_id
VALIDATORS = [keys(f"validator-{i}") for i in range(4)]
VALIDATOR_KEYS = [v.public_key for v in VALIDATORS]


def make_block(view: int = 0, proposer: int = 1, transactions: tuple[bytes, ...] = (), stamp: int = 1) -> Block:
    header = Header(CHAIN_ID, 1, view, bytes(32), VALIDATORS[proposer].address, stamp, len(transactions),
                    tx_root([crypto.hash_bytes(t) for t in transactions]), bytes(32), bytes(32))
    return Block(header, transactions)


def signed(index: int, message) -> SignedMessage:
    return sign_message(VALIDATORS[index], DOMAIN, index, message)


def replica(index: int, wal: MemoryVoteLog | None = None) -> Replica:
    return Replica(index, VALIDATORS[index], DOMAIN, VALIDATOR_KEYS, height=1,
                   persisted=wal.replay() if wal is not None else ())


def carry_out(wal: MemoryVoteLog, actions) -> list[SignedMessage]:
    """Persist what must be durable; return what was sent."""
    sent = []
    for action in actions:
        if isinstance(action, Persist):
            wal.append(action.record)
        elif isinstance(action, Broadcast):
            sent.append(action.message)
    return sent


def prepared_certificate(block: Block, signers=(0, 1, 2), view: int = 0) -> PreparedCertificate:
    block_hash = header_hash(block.header)
    payload = encoding.encode(PrepareVote(1, view, block_hash))
    return PreparedCertificate(1, view, block_hash, tuple(
        VoteSignature(i, crypto.sign(VALIDATORS[i], DOMAIN, crypto.TAG_PREPARE_VOTE, payload)) for i in signers))


def prepare_and_commit(node: Replica, wal: MemoryVoteLog, block: Block) -> list[SignedMessage]:
    """Replica `node` gets the primary's block and 2f+1 Prepares: it becomes prepared and sends Commit."""
    block_hash = header_hash(block.header)
    sent = carry_out(wal, node.on_message(signed(1, PrePrepare(1, 0, block))))
    sent += carry_out(wal, node.on_block_validated(block_hash, True))
    for sender in (1, 2):
        sent += carry_out(wal, node.on_message(signed(sender, Prepare(1, 0, block_hash))))
    return sent


# --- 1. the durable-state rule --------------------------------------------------------------------

def test_a_validator_that_sent_commit_carries_its_prepared_certificate_after_a_restart():
    block = make_block(transactions=(b"tx-1", b"tx-2"))
    wal = MemoryVoteLog()
    sent = prepare_and_commit(replica(0, wal), wal, block)
    assert any(isinstance(m.message, Commit) for m in sent)
    restarted = replica(0, wal)  # crashed right after sending Commit; restarts from its WAL
    restarted.start()
    restarted.on_work(True)
    sent = carry_out(wal, restarted.on_timeout("view", 1, 0))
    [view_change] = [m.message for m in sent if isinstance(m.message, ViewChange)]
    assert view_change.prepared is not None and view_change.prepared.block_hash == header_hash(block.header)
    assert view_change.prepared_block == block  # with the whole block: the next primary must re-propose it


def test_the_prepared_certificate_is_durable_before_the_commit_it_allows():
    wal = MemoryVoteLog()
    node = replica(0, wal)
    block = make_block()
    node.on_message(signed(1, PrePrepare(1, 0, block)))
    node.on_block_validated(header_hash(block.header), True)
    node.on_message(signed(1, Prepare(1, 0, header_hash(block.header))))
    actions = node.on_message(signed(2, Prepare(1, 0, header_hash(block.header))))
    kinds = [type(a.record).__name__ if isinstance(a, Persist) else type(a.message.message).__name__
             for a in actions if isinstance(a, (Persist, Broadcast))]
    assert kinds.index("PreparedState") < kinds.index("Commit")


def test_a_primary_that_sent_new_view_with_a_block_never_proposes_another_after_a_restart():
    wal = MemoryVoteLog()
    primary = replica(2, wal)  # the primary of view 1
    prepared_block = make_block(transactions=(b"paid",))
    certificate = prepared_certificate(prepared_block)
    carry_out(wal, primary.on_work(True))
    carry_out(wal, primary.on_timeout("view", 1, 0))
    for sender in (0, 3):
        change = ViewChange(1, 1, certificate if sender == 0 else None, prepared_block if sender == 0 else None)
        sent = carry_out(wal, primary.on_message(signed(sender, change)))
    [new_view] = [m.message for m in sent if isinstance(m.message, NewView)]
    assert new_view.block == prepared_block
    restarted = replica(2, wal)
    restarted.start()
    assert not any(isinstance(a, RequestProposal) for a in restarted.on_work(True))
    other = make_block(view=1, proposer=2, transactions=(b"something else",))
    actions = restarted.on_proposal(other)  # even if asked to, it signs no second proposal for view 1
    assert not any(isinstance(a, (Persist, Broadcast)) and isinstance(getattr(a, "message", None), SignedMessage)
                   and isinstance(a.message.message, PrePrepare) for a in actions)


def test_a_new_view_proof_holds_the_view_change_with_the_highest_certificate():
    """A certificate that arrives while the new primary builds its block wins, and its view change is in the
    proof whatever its index (replicas check the block against the highest certificate in the proof)."""
    primary = replica(2)  # the primary of view 1
    prepared_block = make_block(transactions=(b"paid",))
    primary.on_work(True)
    primary.on_timeout("view", 1, 0)
    primary.on_message(signed(0, ViewChange(1, 1, None, None)))
    actions = primary.on_message(signed(1, ViewChange(1, 1, None, None)))
    assert any(isinstance(a, RequestProposal) for a in actions)  # 2f+1 without a certificate: a fresh block
    primary.on_message(signed(3, ViewChange(1, 1, prepared_certificate(prepared_block), prepared_block)))
    actions = primary.on_proposal(make_block(view=1, proposer=2, transactions=(b"fresh",)))
    [new_view] = [a.message.message for a in actions if isinstance(a, Broadcast) and isinstance(a.message.message,
                                                                                               NewView)]
    assert new_view.block == prepared_block and 3 in [c.validator_index for c in new_view.view_changes]
    follower = replica(0)
    follower.on_work(True)
    follower.on_timeout("view", 1, 0)
    assert any(isinstance(a, ValidateBlock) and a.block == prepared_block
               for a in follower.on_message(signed(2, new_view)))


def test_after_a_finished_view_change_a_restart_is_not_mid_view_change():
    wal = MemoryVoteLog()
    node = replica(0, wal)
    carry_out(wal, node.on_work(True))
    carry_out(wal, node.on_timeout("view", 1, 0))
    changes = tuple(sign_view_change(VALIDATORS[i], DOMAIN, i, ViewChange(1, 1, None, None)) for i in (0, 2, 3))
    carry_out(wal, node.on_message(signed(2, NewView(1, 1, changes, None))))
    assert node.view == 1 and not node.view_changing
    restarted = replica(0, wal)
    assert restarted.view == 1 and not restarted.view_changing


def test_a_restarted_new_primary_counts_its_own_view_change():
    wal = MemoryVoteLog()
    primary = replica(2, wal)
    carry_out(wal, primary.on_work(True))
    carry_out(wal, primary.on_timeout("view", 1, 0))
    restarted = replica(2, wal)
    assert restarted.view_changing and 2 in restarted.round.view_changes[1]
    sent = []
    for sender in (0, 3):  # with its own, these make 2f+1
        sent += carry_out(wal, restarted.on_message(signed(sender, ViewChange(1, 1, None, None))))
    assert any(isinstance(m.message, NewView) for m in sent)


def test_a_commit_quorum_of_an_older_view_commits_the_block_it_knows():
    node = replica(0)
    block = make_block()
    block_hash = header_hash(block.header)
    node.on_message(signed(1, PrePrepare(1, 0, block)))
    node.on_block_validated(block_hash, False)  # e.g. its clock was behind: it did not vote, it changed view
    assert node.view == 1
    actions = []
    for sender in (1, 2, 3):
        actions += node.on_message(signed(sender, Commit(1, 0, block_hash)))
    [validate] = [a for a in actions if isinstance(a, ValidateBlock)]
    assert validate.for_vote is False  # certified: no clock rule
    actions = node.on_block_validated(block_hash, True)
    assert any(isinstance(a, CommitBlock) and header_hash(a.block.header) == block_hash for a in actions)


def test_signatures_of_committed_heights_are_forgotten():
    node = replica(0)
    prepare_and_commit(node, MemoryVoteLog(), make_block())
    assert node.signed
    node.on_committed(1, work_pending=False)
    assert not node.signed


# --- 2. certificates bind the body ------------------------------------------------------------------

def test_invalid_prepared_certificate_with_a_shortened_or_swapped_body():
    block = make_block(transactions=(b"a", b"b"))
    certificate = prepared_certificate(block)
    check_prepared_certificate(certificate, block, DOMAIN, VALIDATOR_KEYS)
    for body in ((b"a",), (b"b", b"a"), ()):
        with pytest.raises(InvalidMessage, match="tx_count|tx root"):
            check_prepared_certificate(certificate, Block(block.header, body), DOMAIN, VALIDATOR_KEYS)


def test_one_byzantine_validator_cannot_halt_the_chain_with_an_early_view_change_carrying_a_forged_body():
    node = replica(0)
    block = make_block(transactions=(b"a", b"b"))
    lie = ViewChange(1, 5, prepared_certificate(block), Block(block.header, (b"a",)))
    assert node.on_message(signed(3, lie)) == []
    assert node.dropped["bad_prepared_certificate"] == 1 and 5 not in node.round.view_changes


def test_invalid_proposal_whose_body_does_not_match_its_header():
    node = replica(0)
    block = make_block(transactions=(b"a", b"b"))
    assert node.on_message(signed(1, PrePrepare(1, 0, Block(block.header, (b"a",))))) == []
    assert node.dropped["malformed_proposal"] == 1


def test_invalid_new_view_whose_fresh_block_names_another_proposer():
    node = replica(0)
    node.on_work(True)
    node.on_timeout("view", 1, 0)
    changes = tuple(sign_view_change(VALIDATORS[i], DOMAIN, i, ViewChange(1, 1, None, None)) for i in (0, 2, 3))
    not_the_primary = make_block(view=1, proposer=3)
    assert node.on_message(signed(2, NewView(1, 1, changes, not_the_primary))) == []
    assert node.dropped["malformed_proposal"] == 1 and node.view_changing


# --- 3. fail-stop storage -------------------------------------------------------------------------

class BrokenLog(MemoryVoteLog):
    def append(self, record) -> None:
        raise OSError(28, "No space left on device")


class Recorder:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, peer, data):
        self.frames.append(data)

    def broadcast(self, data):
        self.frames.append(data)


class NoTimers:
    def set(self, *args) -> None:
        pass


class ValidatingApp:
    chain_id = CHAIN_ID
    signing_domain = DOMAIN

    def process_proposal(self, block, check_clock=True) -> None:
        pass


def test_a_vote_whose_wal_write_failed_is_never_sent():
    transport = Recorder()
    node = replica(0)
    driver = Driver(node, ValidatingApp(), transport, NoTimers(), BrokenLog(), lambda: 0, VALIDATORS[0])
    with pytest.raises(FailStop, match="write-ahead log"):
        driver.on_signed(signed(1, PrePrepare(1, 0, make_block())))
    assert transport.frames == []  # the Prepare whose record failed never left (and the process stops)


def test_a_wal_with_a_corrupt_record_before_valid_ones_refuses_to_start(tmp_path):
    path = tmp_path / "votes.log"
    wal = FileVoteLog(path, committed_height=0)
    for view in range(3):
        wal.append(signed(0, ViewChange(1, view + 1, None, None)))
    wal.close()
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the first record
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorrupted, match="valid record"):
        FileVoteLog(path, committed_height=0)
    assert path.read_bytes() == bytes(data)  # nothing deleted


def test_the_wal_stays_bounded_while_running(tmp_path):
    wal = FileVoteLog(tmp_path / "votes.log", committed_height=0)
    block = make_block(transactions=tuple(bytes([i]) * 2_000 for i in range(100)))  # ~200 KB per record
    sizes = []
    for height in range(1, 120):
        certificate = dataclasses.replace(prepared_certificate(block), height=height)
        wal.append(PreparedState(certificate, dataclasses.replace(block, header=dataclasses.replace(
            block.header, height=height))))
        wal.committed(height)
        sizes.append((tmp_path / "votes.log").stat().st_size)
    assert max(sizes) < 2 * limits.wal_compact_bytes_min + 400_000  # ~24 MB written in all
    assert len(wal.replay()) < 30
    assert FileVoteLog(tmp_path / "votes.log", committed_height=119).replay() == []


def test_compaction_keeps_what_a_restart_needs():
    wal = MemoryVoteLog()
    block = make_block(transactions=(b"x",))
    node = replica(0, wal)
    prepare_and_commit(node, wal, block)
    node.on_work(True)
    for view in range(1, 4):
        carry_out(wal, node.on_timeout("view", 1, view - 1))
    kept = compact(wal.replay(), committed_height=0)
    assert len(kept) < len(wal.replay())  # older views' messages are dropped …
    restarted = Replica(0, VALIDATORS[0], DOMAIN, VALIDATOR_KEYS, height=1, persisted=kept)
    assert restarted.view == 3 and restarted.view_changing
    assert restarted.round.prepared is not None and restarted.round.prepared[1] == block  # … but not these


# --- 4. per-peer block sync -----------------------------------------------------------------------

def test_one_lying_peer_cannot_starve_block_sync():
    sync = BlockSync()
    liar, honest = b"L" * 32, b"H" * 32
    sync.on_claim(honest, 10)
    now = 0
    asked = []
    for step in range(400):  # the liar claims ever-higher heights every 20 ms and never answers
        now += 20
        sync.on_claim(liar, 10_000 + step)
        request = sync.next_request(head_height=5, now_ms=now)
        if request is not None:
            asked.append(request.peer)
            if request.peer == honest:
                sync.on_answer(honest, applied_blocks=5, invalid=False, now_ms=now)
                break
    assert honest in asked and asked.count(liar) <= 2


def test_a_peer_that_served_a_forged_block_is_passed_over_for_long():
    sync = BlockSync()
    forger, honest = b"F" * 32, b"H" * 32
    sync.on_claim(forger, 10)
    request = sync.next_request(0, 0)
    assert request.peer == forger
    sync.on_answer(forger, applied_blocks=0, invalid=True, now_ms=0)
    sync.on_claim(honest, 10)
    assert sync.next_request(0, 10).peer == honest
    assert sync.peers[forger].distrusted_until_ms >= limits.sync_distrust_ms_max
    assert not sync.is_awaited(forger)  # its answers are no longer read


def test_a_silent_peer_holds_up_block_sync_for_a_hedge_not_a_request_timeout():
    """Two liars are asked first (they claimed first, or rank first); neither answers. The honest peer is asked
    one hedge after each, long before either request times out, and its answer is read."""
    sync = BlockSync()
    first_liar, second_liar, honest = b"A" * 32, b"B" * 32, b"H" * 32
    for peer, height in ((first_liar, 10_000), (second_liar, 10_000), (honest, 10)):
        sync.on_claim(peer, height)
    asked = []
    for now in range(0, limits.sync_request_timeout_ms, 10):
        request = sync.next_request(head_height=5, now_ms=now)
        if request is not None:
            asked.append((request.peer, now))
    assert asked == [(first_liar, 0), (second_liar, sync_hedge_ms), (honest, 2 * sync_hedge_ms)]
    assert 2 * sync_hedge_ms < limits.sync_request_timeout_ms
    assert sync.is_awaited(honest) and sync.is_awaited(first_liar)  # one request per peer in flight
    sync.on_answer(honest, applied_blocks=5, invalid=False, now_ms=2 * sync_hedge_ms + 30)
    assert sync.peers[honest].failures == 0
    sync.next_request(head_height=10, now_ms=limits.sync_request_timeout_ms)
    assert sync.peers[first_liar].failures == 1 and not sync.is_awaited(first_liar)  # its request timed out


def test_an_honest_peer_whose_answer_came_second_is_not_ranked_with_liars():
    """The liar is asked first and stays silent; the honest peer, asked one hedge later, answers with blocks
    the node committed meanwhile (from a third peer's answer): a correct repeat is service, not a failure,
    so next time the honest peer is asked before the liar."""
    sync = BlockSync()
    liar, honest = b"0" * 32, b"H" * 32
    sync.on_claim(liar, 10_000)
    sync.on_claim(honest, 10)
    assert sync.next_request(head_height=5, now_ms=0).peer == liar
    assert sync.next_request(head_height=5, now_ms=sync_hedge_ms).peer == honest
    sync.on_answer(honest, applied_blocks=0, invalid=False, now_ms=sync_hedge_ms + 50, confirmed_blocks=5)
    assert sync.peers[honest].failures == 0 and sync.peers[honest].distrusted_until_ms <= sync_hedge_ms + 50
    now = limits.sync_request_timeout_ms + limits.sync_distrust_ms_min
    sync.on_claim(honest, 20)
    assert sync.next_request(head_height=10, now_ms=now).peer == honest
    assert sync.peers[liar].failures == 1  # its request timed out


# --- 7. memory one Byzantine validator can take -----------------------------------------------------

def test_future_view_messages_from_one_sender_are_bounded():
    node = replica(0)
    for view in range(1, 600):
        junk = view.to_bytes(32, "big")
        node.on_message(signed(3, Prepare(1, view, junk)))
        node.on_message(signed(3, Commit(1, view, junk)))
        node.on_message(signed(3, ViewChange(1, view, None, None)))
    assert len(node.round.votes[("prepare", 3)]) == 1 and len(node.round.votes[("commit", 3)]) == 1
    assert len(node.round.prepares) == 1 and len(node.round.commits) == 1
    assert sum(3 in collected for collected in node.round.view_changes.values()) == 1
    assert node.on_message(signed(3, Prepare(1, limits.pbft_future_views_max + 1, bytes(32)))) == []
    assert node.dropped["far_future_view"] == 1


def test_a_conflicting_vote_from_one_sender_is_dropped():
    node = replica(0)
    node.on_message(signed(3, Prepare(1, 0, b"\x01" * 32)))
    node.on_message(signed(3, Prepare(1, 0, b"\x02" * 32)))
    assert node.dropped["conflicting_vote"] == 1 and (0, b"\x02" * 32) not in node.round.prepares


def test_f_plus_one_view_changes_for_different_future_views_move_the_replica():
    node = replica(0)
    node.on_message(signed(2, ViewChange(1, 3, None, None)))
    actions = node.on_message(signed(3, ViewChange(1, 5, None, None)))
    # two validators (f+1) want view 3 or later: at least one is honest, so join view 3
    assert node.view == 3 and any(isinstance(a, Persist) for a in actions)


def test_a_restarted_validator_never_signs_for_a_view_it_left():
    wal = MemoryVoteLog()
    node = replica(0, wal)
    carry_out(wal, node.on_work(True))
    carry_out(wal, node.on_timeout("view", 1, 0))
    restarted = replica(0, wal)
    block = make_block()
    restarted.round.proposals[0] = block
    restarted.round.validated.add(header_hash(block.header))
    actions, message = restarted._send_own(Prepare(1, 0, header_hash(block.header)))
    assert message is None and restarted.dropped["refused_double_sign"] == 1


def test_the_view_slot_binds_a_new_view_and_a_pre_prepare_together():
    """`_may_sign` checks one proposal slot for both kinds: NewView(v, Y) then PrePrepare(v, Z) is refused."""
    node = replica(2)
    y = make_block(view=1, proposer=2, transactions=(b"y",))
    node.view = 1
    node.signed[(1, 1, "proposal")] = header_hash(y.header)
    z = dataclasses.replace(y, transactions=(b"z",), header=dataclasses.replace(
        y.header, tx_root=tx_root([crypto.hash_bytes(b"z")])))
    assert not node._may_sign(PrePrepare(1, 1, z)) and node._may_sign(PrePrepare(1, 1, y))
