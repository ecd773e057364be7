"""Consensus messages, certificates, the WAL and the core's refusal rules, without a network."""

from __future__ import annotations

import dataclasses

import pytest

from node import crypto, encoding
from node.blocks import Block, CommitCertificate, CommitSignature, CommitVote, Header, header_hash, sign_commit
from node.consensus.core import Broadcast, Persist, Replica, RequestProposal, SetTimer, ValidateBlock
from node.consensus.messages import (CertifiedBlock, Commit, InvalidMessage, NewView, PreparedCertificate, Prepare,
                                     PrePrepare, PrepareVote, SignedMessage, ViewChange, VoteSignature,
                                     check_certified_block, check_prepared_certificate, decode_frame, encode_message,
                                     sign_message, sign_view_change, verify_message)
from node.consensus.wal import FileVoteLog, MemoryVoteLog
from tests.support import DOMAIN, keys, other_network

CHAIN_ID = DOMAIN.chain_id
VALIDATORS = [keys(f"validator-{i}") for i in range(4)]
VALIDATOR_KEYS = [v.public_key for v in VALIDATORS]


def block(height: int = 1, view: int = 0, proposer: int = 1, timestamp_ms: int = 1) -> Block:
    header = Header(CHAIN_ID, height, view, bytes(32), VALIDATORS[proposer].address, timestamp_ms, 0, bytes(32),
                    bytes(32), bytes(32))
    return Block(header, ())


def signed(index: int, message) -> SignedMessage:
    return sign_message(VALIDATORS[index], DOMAIN, index, message)


def test_messages_round_trip_and_verify():
    for message in (PrePrepare(1, 0, block()), Prepare(1, 0, b"\x01" * 32), Commit(1, 0, b"\x02" * 32),
                    ViewChange(1, 1, None, None), NewView(1, 1, (), None)):
        original = signed(1, message)
        decoded = decode_frame(encode_message(original))
        assert decoded == original
        verify_message(decoded, DOMAIN, VALIDATOR_KEYS)


def test_invalid_message_signed_for_another_chain_or_by_another_validator():
    message = signed(1, Prepare(1, 0, b"\x01" * 32))
    with pytest.raises(InvalidMessage, match="does not verify"):
        verify_message(message, crypto.SigningDomain("other-chain", DOMAIN.genesis_hash), VALIDATOR_KEYS)
    with pytest.raises(InvalidMessage, match="does not verify"):
        verify_message(dataclasses.replace(message, validator_index=2), DOMAIN, VALIDATOR_KEYS)
    with pytest.raises(InvalidMessage, match="not a validator"):
        verify_message(dataclasses.replace(message, validator_index=9), DOMAIN, VALIDATOR_KEYS)


@pytest.mark.parametrize("message", [Prepare(1, 0, b"\x01" * 32), Commit(1, 0, b"\x01" * 32),
                                     PrePrepare(1, 0, block()), ViewChange(1, 1, None, None)],
                         ids=lambda message: type(message).__name__)
def test_invalid_vote_signed_for_another_genesis_with_the_same_chain_id(message):
    # The same validator keys run two local networks, both "paychain-local": a vote must not cross over.
    replayed = sign_message(VALIDATORS[1], other_network(), 1, message)
    verify_message(replayed, other_network(), VALIDATOR_KEYS)
    with pytest.raises(InvalidMessage, match="does not verify"):
        verify_message(replayed, DOMAIN, VALIDATOR_KEYS)
    replica = Replica(0, VALIDATORS[0], DOMAIN, VALIDATOR_KEYS, height=1)
    assert replica.on_message(replayed) == []
    assert replica.dropped == {"bad_signature": 1}


def test_a_prepare_signature_is_not_a_commit_signature():
    prepare = signed(1, Prepare(1, 0, b"\x01" * 32))
    as_commit = SignedMessage(1, Commit(1, 0, b"\x01" * 32), prepare.signature)
    with pytest.raises(InvalidMessage):
        verify_message(as_commit, DOMAIN, VALIDATOR_KEYS)


def test_invalid_malformed_frame():
    with pytest.raises(InvalidMessage, match="malformed"):
        decode_frame(b"\x93\x01\x02")


def prepared_certificate(the_block: Block, signers, view: int = 0,
                         domain: crypto.SigningDomain = DOMAIN) -> PreparedCertificate:
    block_hash = header_hash(the_block.header)
    payload = encoding.encode(PrepareVote(the_block.header.height, view, block_hash))
    return PreparedCertificate(the_block.header.height, view, block_hash, tuple(
        VoteSignature(i, crypto.sign(VALIDATORS[i], domain, crypto.TAG_PREPARE_VOTE, payload)) for i in signers))


def test_prepared_certificate_checks():
    the_block = block()
    check_prepared_certificate(prepared_certificate(the_block, [0, 1, 2]), the_block, DOMAIN, VALIDATOR_KEYS)
    with pytest.raises(InvalidMessage, match="needs 3"):
        check_prepared_certificate(prepared_certificate(the_block, [0, 1]), the_block, DOMAIN, VALIDATOR_KEYS)
    with pytest.raises(InvalidMessage, match="twice"):
        check_prepared_certificate(prepared_certificate(the_block, [0, 1, 1]), the_block, DOMAIN, VALIDATOR_KEYS)
    with pytest.raises(InvalidMessage, match="without its block"):
        check_prepared_certificate(prepared_certificate(the_block, [0, 1, 2]), block(timestamp_ms=2), DOMAIN,
                                   VALIDATOR_KEYS)


def test_invalid_prepared_certificate_signed_for_another_genesis_with_the_same_chain_id():
    the_block = block()
    replayed = prepared_certificate(the_block, [0, 1, 2], domain=other_network())
    check_prepared_certificate(replayed, the_block, other_network(), VALIDATOR_KEYS)
    with pytest.raises(InvalidMessage, match="signature of validator 0 is invalid"):
        check_prepared_certificate(replayed, the_block, DOMAIN, VALIDATOR_KEYS)


def test_invalid_certified_block_signed_for_another_genesis_with_the_same_chain_id():
    # What block sync accepts: a certificate from another local network proves nothing here.
    the_block = block()
    vote = CommitVote(1, 0, header_hash(the_block.header))
    certificate = CommitCertificate(1, 0, vote.block_hash, tuple(
        CommitSignature(i, sign_commit(VALIDATORS[i], other_network(), vote)) for i in (0, 1, 2)))
    check_certified_block(CertifiedBlock(the_block, certificate), other_network(), VALIDATOR_KEYS)
    with pytest.raises(InvalidMessage, match="does not verify"):
        check_certified_block(CertifiedBlock(the_block, certificate), DOMAIN, VALIDATOR_KEYS)


def test_file_wal_replays_and_drops_a_torn_tail(tmp_path):
    path = tmp_path / "votes.log"
    wal = FileVoteLog(path, committed_height=0)
    records = [signed(0, Prepare(1, 0, b"\x01" * 32)), signed(0, Commit(1, 0, b"\x01" * 32))]
    for record in records:
        wal.append(record)
    wal.close()
    with open(path, "ab") as handle:
        handle.write(b"\xd7\x1c\x5a\x93\x00\x00\x10\x00torn")  # a crash in the middle of an append
    assert FileVoteLog(path, committed_height=0).replay() == records
    assert FileVoteLog(path, committed_height=1).replay() == []  # committed heights are pruned


def persist(wal, actions) -> None:
    for action in actions:
        if isinstance(action, Persist):
            wal.append(action.record)


def test_a_replica_never_signs_a_second_block_for_one_view_after_restart():
    first = block(height=1, view=0, proposer=1, timestamp_ms=1)
    second = block(height=1, view=0, proposer=1, timestamp_ms=2)
    wal = MemoryVoteLog()
    replica = Replica(0, VALIDATORS[0], DOMAIN, VALIDATOR_KEYS, height=1)
    actions = replica.on_message(signed(1, PrePrepare(1, 0, first)))
    assert any(isinstance(a, ValidateBlock) for a in actions)
    persist(wal, replica.on_block_validated(header_hash(first.header), True))
    assert [type(r.message) for r in wal.replay()] == [Prepare]
    restarted = Replica(0, VALIDATORS[0], DOMAIN, VALIDATOR_KEYS, height=1, persisted=wal.replay())
    assert any(isinstance(a, Broadcast) and isinstance(a.message.message, Prepare) for a in restarted.start())
    restarted.round.proposals.clear()  # even if the primary now shows it another block for view 0 …
    restarted.on_message(signed(1, PrePrepare(1, 0, second)))
    actions = restarted.on_block_validated(header_hash(second.header), True)
    assert not any(isinstance(a, Persist) for a in actions)  # … it refuses to sign it
    assert restarted.dropped.get("refused_double_sign") == 1


def test_a_proposal_from_a_non_primary_or_for_another_view_is_dropped():
    replica = Replica(0, VALIDATORS[0], DOMAIN, VALIDATOR_KEYS, height=1)
    assert replica.on_message(signed(2, PrePrepare(1, 0, block(proposer=2)))) == []
    assert replica.dropped["not_primary"] == 1
    assert replica.on_message(signed(2, PrePrepare(1, 1, block(view=1, proposer=2)))) == []
    assert replica.dropped["wrong_view"] == 1


def test_an_equivocating_primary_triggers_a_view_change():
    replica = Replica(0, VALIDATORS[0], DOMAIN, VALIDATOR_KEYS, height=1)
    replica.on_message(signed(1, PrePrepare(1, 0, block(timestamp_ms=1))))
    actions = replica.on_message(signed(1, PrePrepare(1, 0, block(timestamp_ms=2))))
    assert replica.view == 1 and replica.view_changing
    assert any(isinstance(a, Broadcast) and isinstance(a.message.message, ViewChange) for a in actions)


def test_a_new_view_with_too_few_view_changes_is_refused():
    replica = Replica(0, VALIDATORS[0], DOMAIN, VALIDATOR_KEYS, height=1)
    replica.on_work(True)
    replica.on_timeout("view", 1, 0)  # replica 0 wants view 1, whose primary is validator 2
    changes = tuple(sign_view_change(VALIDATORS[i], DOMAIN, i, ViewChange(1, 1, None, None)) for i in (0, 2))
    assert replica.on_message(signed(2, NewView(1, 1, changes, None))) == []
    assert replica.dropped["bad_new_view"] == 1 and replica.view_changing
    enough = changes + (sign_view_change(VALIDATORS[3], DOMAIN, 3, ViewChange(1, 1, None, None)),)
    actions = replica.on_message(signed(2, NewView(1, 1, enough, None)))
    assert not replica.view_changing and any(isinstance(a, SetTimer) for a in actions)


def test_the_primary_asks_for_a_proposal_only_when_there_is_work():
    primary = Replica(1, VALIDATORS[1], DOMAIN, VALIDATOR_KEYS, height=1)
    assert not any(isinstance(a, RequestProposal) for a in primary.start())
    assert any(isinstance(a, RequestProposal) for a in primary.on_work(True))


def test_forwarded_transactions_are_split_so_every_batch_fits_a_frame():
    from node import limits
    from node.consensus.driver import Driver
    from node.consensus.messages import TxBatch, decode_frame
    from node.consensus.wal import MemoryVoteLog

    class Sent:
        frames: list[bytes] = []

        def send(self, peer, data):
            pass

        def broadcast(self, data):
            self.frames.append(data)

    transport = Sent()
    app = type("App", (), {"chain_id": CHAIN_ID, "signing_domain": DOMAIN})()
    driver = Driver(Replica(0, VALIDATORS[0], DOMAIN, VALIDATOR_KEYS, 1), app, transport, None,
                    MemoryVoteLog(), lambda: 0, VALIDATORS[0])
    big = [bytes([i % 256]) * limits.tx_bytes_max for i in range(700)]  # 700 deploy-sized transactions
    driver.forward(big)
    batches = [decode_frame(frame) for frame in transport.frames]
    assert all(isinstance(b, TxBatch) for b in batches) and len(batches) > 1
    assert [raw for b in batches for raw in b.transactions] == big
    assert all(len(frame) <= limits.p2p_frame_bytes_max for frame in transport.frames)
