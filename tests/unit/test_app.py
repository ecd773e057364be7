"""The Application boundary (node/app.py, class Ledger): admission, proposals, validation and commit."""

from __future__ import annotations

import dataclasses

import pytest

from node import blocks, crypto, limits
from node.app import Ledger
from node.blocks import InvalidBlock
from node.state import EMPTY_ACCOUNT, StaleStateView, State
from node.storage.chain import ChainStore
from node.storage.kv import MemoryStore
from node.transactions import InvalidTransaction, RechargePost, RechargeRequest, Transfer, open_transaction
from tests.support import DOMAIN, certify, keys, make_chain, make_genesis, other_network, sign
from tests.support import TestChain as Chain  # aliased: pytest would try to collect a Test* class

ALICE, BOB, GATEWAY = (keys(n).address for n in ("alice", "bob", "gateway"))
STRANGER = keys("stranger").address
VALIDATOR = keys("validator-0")


def admission_error(chain, raw: bytes) -> InvalidTransaction:
    with pytest.raises(InvalidTransaction) as caught:
        chain.ledger.check_tx(raw)
    return caught.value


def snapshot(chain) -> tuple:
    ledger = chain.ledger
    return ledger.head, ledger.committed.root, dict(ledger.committed.records), len(ledger.mempool)


# --- admission -----------------------------------------------------------------------------------

def test_check_tx_admits_and_returns_the_hash():
    chain = make_chain()
    raw = sign("alice", 0, Transfer(BOB, "CNY", 5))
    assert chain.ledger.check_tx(raw) == open_transaction(raw, DOMAIN).hash
    assert chain.ledger.has_pending()


def test_invalid_check_tx_records_the_rule_for_tx_get():
    chain = make_chain()
    raw = sign("alice", 0, Transfer(BOB, "CNY", 10**9))
    assert admission_error(chain, raw).code == "insufficient_funds"
    code, message = chain.ledger.recent_rejections[open_transaction(raw, DOMAIN).hash]
    assert code == "insufficient_funds" and "cannot pay" in message
    assert chain.ledger.rejections == {"insufficient_funds": 1}
    assert not chain.ledger.has_pending()


def test_invalid_check_tx_malformed_bytes_are_recorded_by_hash():
    chain = make_chain()
    assert admission_error(chain, b"\x01\x02").code == "malformed"
    assert chain.ledger.rejections == {"malformed": 1}


def test_invalid_check_tx_transaction_for_another_chain():
    chain = make_chain()
    other_chain = crypto.SigningDomain("paychain-other", DOMAIN.genesis_hash)
    error = admission_error(chain, sign("alice", 0, Transfer(BOB, "CNY", 5), domain=other_chain))
    assert error.code == "wrong_chain"


def test_invalid_check_tx_transaction_for_another_genesis_with_the_same_chain_id():
    chain = make_chain()
    error = admission_error(chain, sign("alice", 0, Transfer(BOB, "CNY", 5), domain=other_network()))
    assert error.code == "bad_signature"
    assert chain.ledger.rejections == {"bad_signature": 1} and len(chain.ledger.mempool) == 0


def test_invalid_check_tx_already_known_is_not_counted_as_a_rejection():
    chain = make_chain()
    raw = sign("alice", 0, Transfer(BOB, "CNY", 5))
    chain.submit(raw)
    assert admission_error(chain, raw).code == "already_known"
    assert chain.ledger.rejections == {} and len(chain.ledger.mempool) == 1


def test_invalid_check_tx_already_committed():
    chain = make_chain()
    raw = sign("alice", 0, Transfer(BOB, "CNY", 5))
    chain.submit(raw)
    chain.commit_pending()
    assert admission_error(chain, raw).code == "already_committed"
    assert chain.ledger.rejections == {}


def test_invalid_check_tx_replay_with_the_next_nonce_slot_taken():
    chain = make_chain()
    chain.submit(sign("alice", 0, Transfer(BOB, "CNY", 5)))
    chain.commit_pending()
    assert admission_error(chain, sign("alice", 0, Transfer(BOB, "CNY", 6))).code == "nonce_used"


# --- blocks --------------------------------------------------------------------------------------

def test_commit_moves_funds_and_records_everything():
    chain = make_chain()
    seen = []
    chain.ledger.listeners.append(seen.append)
    transfer = sign("alice", 0, Transfer(BOB, "CNY", 250))
    failing = sign("bob", 0, Transfer(STRANGER, "CNY", 5))
    tx_hashes = chain.submit(transfer, failing)
    committed = chain.commit_pending()
    ledger = chain.ledger
    assert ledger.head.height == 1 and ledger.head.block_hash == blocks.header_hash(committed.block.header)
    assert ledger.head.state_root == committed.block.header.state_root == ledger.committed.root
    assert [r.success for r in committed.receipts] == [True, False]
    state = ledger.state()
    assert state.account(ALICE).balance_of("CNY") == 100_000 - 251
    assert state.account(BOB).balance_of("CNY") == 100_000 + 250 - 1
    assert state.account(STRANGER) == EMPTY_ACCOUNT
    assert seen == [committed]
    assert not ledger.has_pending()
    record = ledger.store.get_tx(tx_hashes[1])
    assert (record.height, record.index, record.receipt.code) == (1, 1, "not_registered")
    assert ledger.store.get_receipts(1) == list(committed.receipts)
    assert committed.touched[0] == (ALICE, BOB)


def test_empty_block_commits_and_keeps_the_state_root():
    chain = make_chain()
    root = chain.ledger.committed.root
    committed = chain.commit_pending()
    assert committed.block.transactions == () and chain.ledger.head.height == 1
    assert chain.ledger.committed.root == root


def test_state_views_from_before_a_commit_are_not_readable_after_it():
    chain = make_chain()
    view = chain.ledger.state()
    chain.commit_pending()
    with pytest.raises(StaleStateView):
        view.account(ALICE)


def test_follower_validates_and_commits_the_leaders_block_to_the_same_state():
    leader, follower = make_chain(), make_chain()
    leader.submit(sign("alice", 0, RechargeRequest(GATEWAY, "USD", 900, "bank 7")),
                  sign("bob", 0, Transfer(ALICE, "USD", 40), fee=2, fee_asset="USD"))
    first = leader.commit_pending()
    request_id = first.envelopes[0].hash
    leader.submit(sign("gateway", 0, RechargePost(request_id, "arrived")))
    second = leader.commit_pending()
    for committed in (first, second):
        block = leader.ledger.store.get_block(committed.block.header.height)
        follower.ledger.process_proposal(block)
        follower.ledger.commit(block, leader.ledger.store.get_certificate(block.header.height))
    assert follower.ledger.head == leader.ledger.head
    assert follower.ledger.committed.records == leader.ledger.committed.records
    assert follower.ledger.state().account(ALICE).balance_of("USD") == 100_000 + 40 + 900


def test_commit_without_prior_validation_validates_first():
    leader, follower = make_chain(), make_chain()
    leader.submit(sign("alice", 0, Transfer(BOB, "CNY", 5)))
    committed = leader.commit_pending()
    follower.ledger.commit(committed.block, committed.certificate)
    assert follower.ledger.head == leader.ledger.head


def test_proposal_timestamp_never_goes_back():
    chain = make_chain()
    chain.commit_pending()
    parent_ms = chain.ledger.head.timestamp_ms
    block = chain.ledger.prepare_proposal(2, 0, VALIDATOR.address, parent_ms - 10_000)
    assert block.header.timestamp_ms == parent_ms


def test_proposer_drops_and_reports_what_can_no_longer_be_included():
    chain = make_chain()
    funded = State(chain.ledger.committed)
    # Admitted against a view in which the stranger looked registered and funded; the real state disagrees.
    funded.set_account(STRANGER, dataclasses.replace(EMPTY_ACCOUNT, role=1).with_balance("CNY", 100))
    stray = open_transaction(sign("stranger", 0, Transfer(BOB, "CNY", 5)), DOMAIN)
    chain.ledger.mempool.add(stray, funded)
    good = chain.submit(sign("alice", 0, Transfer(BOB, "CNY", 5)))[0]
    committed = chain.commit_pending()
    assert [e.hash for e in committed.envelopes] == [good]
    assert chain.ledger.recent_rejections[stray.hash][0] == "cannot_pay_fee"
    assert "dropped by the proposer" in chain.ledger.recent_rejections[stray.hash][1]
    assert stray.hash not in chain.ledger.mempool


def test_mempool_is_rechecked_after_a_block_from_another_proposer():
    leader, follower = make_chain(), make_chain()
    follower.submit(sign("alice", 0, Transfer(BOB, "CNY", 5)), sign("alice", 1, Transfer(BOB, "CNY", 5)))
    leader.submit(sign("alice", 0, Transfer(BOB, "CNY", 99_000)))
    committed = leader.commit_pending()
    follower.ledger.commit(committed.block, committed.certificate)
    # nonce 0 was used by the other block; nonce 1 is still payable and stays.
    assert len(follower.ledger.mempool) == 1
    assert follower.commit_pending().receipts[0].success


# --- every rule that makes a proposed block invalid ----------------------------------------------------

FOLLOWER_NOW_MS = 1_700_000_100_000


def proposed(chain_transactions=()):
    """A block proposed by a leader chain, and a fresh follower on the same genesis whose clock reads FOLLOWER_NOW_MS."""
    leader = make_chain()
    follower = Chain(Ledger(ChainStore(MemoryStore(), make_genesis()), clock_ms=lambda: FOLLOWER_NOW_MS))
    leader.submit(*chain_transactions)
    leader.now_ms += 1000
    block = leader.ledger.prepare_proposal(1, 0, VALIDATOR.address, leader.now_ms)
    return block, follower


def rejected_by_follower(block, follower, message: str) -> None:
    before = snapshot(follower)
    with pytest.raises(InvalidBlock, match=message):
        follower.ledger.process_proposal(block)
    with pytest.raises(InvalidBlock, match=message):
        follower.ledger.commit(block, certify(block, VALIDATOR, DOMAIN))
    assert snapshot(follower) == before


def with_header(block, **changes):
    return dataclasses.replace(block, header=dataclasses.replace(block.header, **changes))


def test_invalid_block_timestamp_too_far_in_the_future_for_a_vote():
    block, follower = proposed()
    latest_ms = FOLLOWER_NOW_MS + limits.timestamp_skew_ms_max
    with pytest.raises(InvalidBlock, match="block timestamp is too far in the future"):
        follower.ledger.process_proposal(with_header(block, timestamp_ms=latest_ms + 1))
    follower.ledger.process_proposal(with_header(block, timestamp_ms=latest_ms))  # at the limit: accepted


def test_a_certified_block_commits_whatever_the_local_clock_says():
    """The clock rule is for voting: a node whose clock lags still applies blocks 2f+1 validators certified."""
    block, follower = proposed()
    ahead = with_header(block, timestamp_ms=FOLLOWER_NOW_MS + limits.timestamp_skew_ms_max + 60_000)
    follower.ledger.commit(ahead, certify(ahead, VALIDATOR, DOMAIN))
    assert follower.ledger.head.height == 1


def test_invalid_block_a_known_header_with_another_body():
    """The executed-block cache is keyed by header hash: the same header with another body is not that block."""
    block, follower = proposed([sign("alice", 0, Transfer(BOB, "CNY", 5)), sign("bob", 0, Transfer(ALICE, "CNY", 7))])
    follower.ledger.process_proposal(block)
    shortened = dataclasses.replace(block, transactions=block.transactions[:1])
    before = snapshot(follower)
    with pytest.raises(InvalidBlock, match="body differs"):
        follower.ledger.process_proposal(shortened)
    with pytest.raises(InvalidBlock, match="body differs"):
        follower.ledger.commit(shortened, certify(shortened, VALIDATOR, DOMAIN))
    assert snapshot(follower) == before
    fresh = Chain(Ledger(ChainStore(MemoryStore(), make_genesis()), clock_ms=lambda: FOLLOWER_NOW_MS))
    with pytest.raises(InvalidBlock, match="tx_count"):  # not executed before: the body is checked against the header
        fresh.ledger.commit(shortened, certify(shortened, VALIDATOR, DOMAIN))
    assert fresh.ledger.head.height == 0


def test_invalid_block_state_root_mismatch():
    block, follower = proposed([sign("alice", 0, Transfer(BOB, "CNY", 5))])
    rejected_by_follower(with_header(block, state_root=bytes(32)), follower, "state root does not match execution")


def test_invalid_block_wrong_chain():
    block, follower = proposed()
    rejected_by_follower(with_header(block, chain_id="paychain-other"), follower, "block is for chain")


def test_invalid_block_wrong_height():
    block, follower = proposed()
    rejected_by_follower(with_header(block, height=2), follower, "block height 2, expected 1")


def test_invalid_block_wrong_parent():
    block, follower = proposed()
    rejected_by_follower(with_header(block, parent_hash=bytes(32)), follower, "parent hash")


def test_invalid_block_receipts_root_mismatch():
    block, follower = proposed([sign("alice", 0, Transfer(BOB, "CNY", 5))])
    rejected_by_follower(with_header(block, receipts_root=bytes(32)), follower, "receipts root")


def test_invalid_block_with_a_forged_transaction():
    block, follower = proposed([sign("alice", 0, Transfer(BOB, "CNY", 5))])
    raw = bytearray(block.transactions[0])
    raw[-1] ^= 1  # flip a signature bit
    forged = dataclasses.replace(block, transactions=(bytes(raw),))
    rejected_by_follower(forged, follower, "the body's transactions do not match the header's tx root")
    # … and with a header that commits to the forged body, the signature check catches it
    rejected_by_follower(with_header(forged, tx_root=blocks.tx_root([crypto.hash_bytes(bytes(raw))])), follower,
                         "transaction 0 is invalid: signature does not verify")


def test_invalid_commit_with_a_bad_certificate_writes_nothing():
    chain = make_chain()
    chain.submit(sign("alice", 0, Transfer(BOB, "CNY", 5)))
    block = chain.ledger.prepare_proposal(1, 0, VALIDATOR.address, chain.now_ms + 1000)
    before = snapshot(chain)
    outsider = certify(block, keys("not-a-validator"), DOMAIN)
    with pytest.raises(InvalidBlock, match="does not verify"):
        chain.ledger.commit(block, outsider)
    replayed = certify(block, VALIDATOR, other_network())  # the same validator, on another local network
    with pytest.raises(InvalidBlock, match="does not verify"):
        chain.ledger.commit(block, replayed)
    other_block = certify(with_header(block, view=1), VALIDATOR, DOMAIN)
    with pytest.raises(InvalidBlock, match="different block hash"):
        chain.ledger.commit(block, other_block)
    assert snapshot(chain) == before and chain.ledger.store.get_block(1) is None
    chain.ledger.commit(block, certify(block, VALIDATOR, DOMAIN))
    assert chain.ledger.head.height == 1


def test_invalid_certificate_needs_a_quorum_of_the_genesis_validators():
    chain = make_chain(make_genesis(validators=4))
    block = chain.ledger.prepare_proposal(1, 0, VALIDATOR.address, chain.now_ms + 1000)
    with pytest.raises(InvalidBlock, match="certificate has 1 signatures, needs 3"):
        chain.ledger.commit(block, certify(block, VALIDATOR, DOMAIN))
    assert chain.ledger.head.height == 0
