"""Transactions (node/transactions.py): signing, opening, and every stateless rule."""

from __future__ import annotations

import pytest

from node import blocks, crypto, encoding, limits
from node.transactions import (ApproveSpend, CallContract, DeployContract, InvalidTransaction, RechargePost,
                               RechargeRequest, RechargeVoid, Register, Role, SignedTransaction, Transaction, Transfer,
                               Withdraw, kind_name, open_transaction, parse_role, sign_transaction, transaction_hash,
                               validate_transaction)
from tests.support import CHAIN_ID, DOMAIN, keys, other_network, sign

BOB = keys("bob").address
GATEWAY = keys("gateway").address
ANY_BODIES = [
    Transfer(BOB, "CNY", 5),
    Register(BOB, int(Role.MERCHANT), bytes(32)),
    RechargeRequest(GATEWAY, "CNY", 500, "bank memo 42"),
    RechargePost(bytes(32), "posted"),
    RechargeVoid(bytes(32), "no funds arrived"),
    Withdraw(GATEWAY, "USD", 7, "payout 9"),
]


def rejection(raw: bytes, domain: crypto.SigningDomain = DOMAIN) -> InvalidTransaction:
    with pytest.raises(InvalidTransaction) as caught:
        open_transaction(raw, domain)
    return caught.value


@pytest.mark.parametrize("body", ANY_BODIES, ids=lambda body: type(body).__name__)
def test_signed_transaction_opens_with_sender_hash_and_fields(body):
    raw = sign("alice", 3, body, fee=2, fee_asset="USD")
    envelope = open_transaction(raw, DOMAIN)
    assert envelope.sender == keys("alice").address
    assert envelope.hash == transaction_hash(raw) == crypto.hash_bytes(raw)
    assert envelope.nonce == 3 and envelope.transaction.fee == 2 and envelope.transaction.fee_asset == "USD"
    assert envelope.transaction.body == body
    assert envelope.raw == raw


def test_kind_names_are_stable():
    names = [kind_name(Transaction(CHAIN_ID, bytes(32), 0, "CNY", 1, body)) for body in ANY_BODIES]
    assert names == ["transfer", "register", "recharge_request", "recharge_post", "recharge_void", "withdraw"]


def test_parse_role():
    assert parse_role("gateway") is Role.GATEWAY
    with pytest.raises(ValueError, match="unknown role 'admin'"):
        parse_role("admin")


def test_signing_key_must_match_sender():
    transaction = Transaction(CHAIN_ID, keys("alice").public_key, 0, "CNY", 1, Transfer(BOB, "CNY", 5))
    with pytest.raises(AssertionError):
        sign_transaction(keys("bob"), DOMAIN, transaction)


# --- every stateless rule ----------------------------------------------------------------------

def test_invalid_malformed_bytes():
    error = rejection(b"\x92\x01\x02")
    assert error.code == "malformed" and "malformed transaction" in error.message


def test_invalid_malformed_trailing_bytes():
    assert rejection(sign("alice", 0, Transfer(BOB, "CNY", 5)) + b"\x00").code == "malformed"


def test_invalid_malformed_oversize_transaction():
    transaction = Transaction(CHAIN_ID, keys("alice").public_key, 0, "CNY", 1,
                              RechargeRequest(GATEWAY, "CNY", 5, "x" * limits.tx_bytes_max))
    raw = sign_transaction(keys("alice"), DOMAIN, transaction)
    error = rejection(raw)
    assert error.code == "malformed" and "limit" in error.message


def test_invalid_malformed_oversize_memo():
    error = rejection(sign("alice", 0, Withdraw(GATEWAY, "CNY", 5, "x" * (limits.memo_bytes_max + 1))))
    assert error.code == "malformed" and "payout_reference: at most 128 bytes" in error.message


def test_invalid_bad_signature_tampered_amount():
    raw = sign("alice", 0, Transfer(BOB, "CNY", 5))
    signed = encoding.decode(SignedTransaction, raw, limits.tx_bytes_max)
    tampered = SignedTransaction(
        Transaction(CHAIN_ID, keys("alice").public_key, 0, "CNY", 1, Transfer(BOB, "CNY", 5000)), signed.signature)
    error = rejection(encoding.encode(tampered))
    assert error.code == "bad_signature" and "does not verify" in error.message


def test_invalid_bad_signature_claims_another_sender():
    # Bob signs, but names Alice's key as the sender: the chain must not debit Alice.
    transaction = Transaction(CHAIN_ID, keys("alice").public_key, 0, "CNY", 1, Transfer(BOB, "CNY", 5))
    signature = crypto.sign(keys("bob"), DOMAIN, crypto.TAG_TRANSACTION, encoding.encode(transaction))
    assert rejection(encoding.encode(SignedTransaction(transaction, signature))).code == "bad_signature"


def test_unverified_open_skips_only_the_signature():
    transaction = Transaction(CHAIN_ID, keys("alice").public_key, 0, "CNY", 1, Transfer(BOB, "CNY", 5))
    raw = encoding.encode(SignedTransaction(transaction, bytes(64)))
    assert open_transaction(raw, DOMAIN, verify_signature=False).sender == keys("alice").address
    assert rejection(raw).code == "bad_signature"


def test_invalid_wrong_chain_transaction_for_chain_a_fails_on_chain_b():
    chain_a = crypto.SigningDomain("chain-a", DOMAIN.genesis_hash)
    chain_b = crypto.SigningDomain("chain-b", DOMAIN.genesis_hash)
    raw = sign("alice", 0, Transfer(BOB, "CNY", 5), domain=chain_a)
    assert open_transaction(raw, chain_a).sender == keys("alice").address
    error = rejection(raw, chain_b)
    assert error.code == "wrong_chain" and "'chain-a'" in error.message and "'chain-b'" in error.message


def test_invalid_signature_made_for_chain_a_does_not_verify_on_chain_b():
    # The body claims chain B, but the signature binds chain A: a replay with an edited chain id fails.
    transaction = Transaction("chain-b", keys("alice").public_key, 0, "CNY", 1, Transfer(BOB, "CNY", 5))
    signature = crypto.sign(keys("alice"), crypto.SigningDomain("chain-a", DOMAIN.genesis_hash),
                            crypto.TAG_TRANSACTION, encoding.encode(transaction))
    chain_b = crypto.SigningDomain("chain-b", DOMAIN.genesis_hash)
    assert rejection(encoding.encode(SignedTransaction(transaction, signature)), chain_b).code == "bad_signature"


def test_invalid_transaction_signed_for_another_genesis_with_the_same_chain_id():
    # Every local network is "paychain-local": a transaction signed for one must not replay on another.
    raw = sign("alice", 0, Transfer(BOB, "CNY", 5), domain=other_network())
    assert open_transaction(raw, other_network()).sender == keys("alice").address
    error = rejection(raw)
    assert other_network().chain_id == DOMAIN.chain_id
    assert error.code == "bad_signature" and "genesis hash" in error.message


def test_signing_domain_must_name_the_transactions_chain():
    transaction = Transaction("chain-b", keys("alice").public_key, 0, "CNY", 1, Transfer(BOB, "CNY", 5))
    with pytest.raises(AssertionError):
        sign_transaction(keys("alice"), DOMAIN, transaction)


def test_invalid_commit_vote_signature_is_not_a_transaction_signature():
    transaction = Transaction(CHAIN_ID, keys("alice").public_key, 0, "CNY", 1, Transfer(BOB, "CNY", 5))
    payload = encoding.encode(transaction)
    vote_signature = crypto.sign(keys("alice"), DOMAIN, crypto.TAG_COMMIT_VOTE, payload)
    assert rejection(encoding.encode(SignedTransaction(transaction, vote_signature))).code == "bad_signature"
    # ... and a transaction signature is not a commit vote.
    vote = blocks.CommitVote(1, 0, bytes(32))
    tx_signature = crypto.sign(keys("alice"), DOMAIN, crypto.TAG_TRANSACTION, encoding.encode(vote))
    assert not crypto.verify(keys("alice").public_key, DOMAIN, crypto.TAG_COMMIT_VOTE, encoding.encode(vote),
                             tx_signature)


@pytest.mark.parametrize("body", [Transfer(BOB, "CNY", 0), RechargeRequest(GATEWAY, "CNY", 0, "ref"),
                                  Withdraw(GATEWAY, "CNY", 0, "ref")], ids=lambda body: type(body).__name__)
def test_invalid_zero_amount(body):
    error = rejection(sign("alice", 0, body))
    assert error.code == "zero_amount" and "positive" in error.message


def test_invalid_self_transfer():
    error = rejection(sign("alice", 0, Transfer(keys("alice").address, "CNY", 5)))
    assert error.code == "self_transfer" and "recipient must differ" in error.message


def test_invalid_unknown_role():
    error = rejection(sign("gateway", 0, Register(BOB, 0, bytes(32))))
    assert error.code == "unknown_role" and error.message == "role 0 is not one of 1 (user), 2 (merchant), 3 (gateway)"


def test_invalid_role_beyond_the_codec_is_malformed():
    transaction = Transaction(CHAIN_ID, keys("gateway").public_key, 0, "CNY", 1, Register(BOB, 3, bytes(32)))
    wire = encoding.wire_of(SignedTransaction(transaction, bytes(64)))
    wire[0][5][1][1] = 4
    error = rejection(encoding.pack(wire))
    assert error.code == "malformed" and "role: integer out of range 0..3" in error.message


def test_invalid_missing_reference():
    error = rejection(sign("alice", 0, Withdraw(GATEWAY, "CNY", 5, "")))
    assert error.code == "missing_reference" and "payout reference" in error.message


@pytest.mark.parametrize("kind", [CallContract, DeployContract], ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("asset, value, code, message", [
    ("CNY", 0, "value_asset_without_value", "value_asset must be empty when no value is attached"),
    ("", 5, "value_without_asset", "an attached value needs its value_asset"),
])
def test_invalid_attached_value_and_its_asset_disagree(kind, asset, value, code, message):
    head = (BOB, "pay") if kind is CallContract else ("",)
    error = rejection(sign("alice", 0, kind(*head, encoding.encode_value(()), 1_000, asset, value), fee=2))
    assert error.code == code and message in error.message


def test_contract_transactions_carry_their_attached_value():
    body = CallContract(BOB, "pay", encoding.encode_value(()), 1_000, "USD", 250)
    assert open_transaction(sign("alice", 0, body, fee=2), DOMAIN).transaction.body == body
    approval = ApproveSpend(BOB, "CNY", 0)  # 0 revokes: a valid transaction
    assert kind_name(open_transaction(sign("alice", 0, approval), DOMAIN).transaction) == "contract_approve"


def test_validate_transaction_checks_the_chain_first():
    transaction = Transaction("other", keys("alice").public_key, 0, "CNY", 1, Transfer(BOB, "CNY", 0))
    with pytest.raises(InvalidTransaction) as caught:
        validate_transaction(transaction, CHAIN_ID)
    assert caught.value.code == "wrong_chain"
