"""Keys, addresses, hashing and domain-separated signatures (node/crypto.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from node import crypto
from tests.support import keys

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


# --- signatures ------------------------------------------------------------------------------

GENESIS_A = crypto.hash_bytes(b"genesis a")
CHAIN_A = crypto.SigningDomain("chain-a", GENESIS_A)


def test_signature_verifies_for_same_key_domain_tag_and_payload():
    pair = keys("alice")
    signature = crypto.sign(pair, CHAIN_A, crypto.TAG_TRANSACTION, b"payload")
    assert len(signature) == crypto.SIGNATURE_BYTES
    assert crypto.verify(pair.public_key, crypto.SigningDomain("chain-a", GENESIS_A), crypto.TAG_TRANSACTION,
                         b"payload", signature)


def test_invalid_signature_for_another_chain():
    pair = keys("alice")
    signature = crypto.sign(pair, CHAIN_A, crypto.TAG_TRANSACTION, b"payload")
    other = crypto.SigningDomain("chain-b", GENESIS_A)
    assert not crypto.verify(pair.public_key, other, crypto.TAG_TRANSACTION, b"payload", signature)


@pytest.mark.parametrize("tag", [crypto.TAG_TRANSACTION, crypto.TAG_PREPARE_VOTE, crypto.TAG_COMMIT_VOTE,
                                 crypto.TAG_CONSENSUS, crypto.TAG_KYC_ATTESTATION, crypto.TAG_CONTRACT_MESSAGE])
def test_invalid_signature_for_another_genesis_with_the_same_chain_id(tag):
    # Two local networks are both "paychain-local": only the genesis hash tells them apart.
    pair = keys("alice")
    signature = crypto.sign(pair, CHAIN_A, tag, b"payload")
    other = crypto.SigningDomain("chain-a", crypto.hash_bytes(b"genesis b"))
    assert not crypto.verify(pair.public_key, other, tag, b"payload", signature)


def test_invalid_signature_commit_vote_tag_is_not_a_transaction_signature():
    pair = keys("validator-0")
    signature = crypto.sign(pair, CHAIN_A, crypto.TAG_COMMIT_VOTE, b"payload")
    assert crypto.verify(pair.public_key, CHAIN_A, crypto.TAG_COMMIT_VOTE, b"payload", signature)
    assert not crypto.verify(pair.public_key, CHAIN_A, crypto.TAG_TRANSACTION, b"payload", signature)
    assert not crypto.verify(pair.public_key, CHAIN_A, crypto.TAG_KYC_ATTESTATION, b"payload", signature)


def test_invalid_signature_for_other_payload_or_key():
    alice, bob = keys("alice"), keys("bob")
    signature = crypto.sign(alice, CHAIN_A, crypto.TAG_TRANSACTION, b"payload")
    assert not crypto.verify(alice.public_key, CHAIN_A, crypto.TAG_TRANSACTION, b"payload!", signature)
    assert not crypto.verify(bob.public_key, CHAIN_A, crypto.TAG_TRANSACTION, b"payload", signature)


def test_invalid_signature_tampered_bit_does_not_verify():
    pair = keys("alice")
    signature = bytearray(crypto.sign(pair, CHAIN_A, crypto.TAG_TRANSACTION, b"payload"))
    signature[10] ^= 1
    assert not crypto.verify(pair.public_key, CHAIN_A, crypto.TAG_TRANSACTION, b"payload", bytes(signature))


@pytest.mark.parametrize("public_key_size, signature_size", [(31, 64), (33, 64), (32, 63), (32, 65), (0, 0)])
def test_invalid_signature_wrong_lengths_are_rejected_not_raised(public_key_size, signature_size):
    assert not crypto.verify(bytes(public_key_size), CHAIN_A, crypto.TAG_TRANSACTION, b"x", bytes(signature_size))


def test_invalid_signature_chain_id_and_payload_boundary_is_unambiguous():
    # Without length prefixes, ("ab", "c...") and ("a", "bc...") would sign the same bytes.
    pair = keys("alice")
    signature = crypto.sign(pair, crypto.SigningDomain("ab", GENESIS_A), crypto.TAG_TRANSACTION, b"cd")
    assert not crypto.verify(pair.public_key, crypto.SigningDomain("a", GENESIS_A), crypto.TAG_TRANSACTION, b"bcd",
                             signature)
    assert not crypto.verify(pair.public_key, crypto.SigningDomain("abc", GENESIS_A), crypto.TAG_TRANSACTION, b"d",
                             signature)


def test_signing_message_layout():
    # The browser signer (web/src/signer.js) builds these bytes too: the layout is a format, not a detail.
    message = crypto._signing_message(CHAIN_A, crypto.TAG_TRANSACTION, b"payload")
    assert message == (bytes([len(crypto.TAG_TRANSACTION)]) + crypto.TAG_TRANSACTION + bytes([len("chain-a")])
                       + b"chain-a" + GENESIS_A + b"payload")


@pytest.mark.parametrize("chain_id, genesis_hash", [("chain-a", bytes(31)), ("chain-a", bytes(33)), ("", bytes(32)),
                                                    ("chaîne", bytes(32)), ("c" * 256, bytes(32)),
                                                    ("chain-a", "00" * 32)])
def test_invalid_signing_domain(chain_id, genesis_hash):
    with pytest.raises(ValueError):
        crypto.SigningDomain(chain_id, genesis_hash)


def test_signing_is_deterministic():
    pair = keys("alice")
    assert crypto.sign(pair, CHAIN_A, crypto.TAG_TRANSACTION, b"x") == crypto.sign(pair, CHAIN_A,
                                                                                  crypto.TAG_TRANSACTION, b"x")


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=200),
       st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32),
       st.binary(min_size=32, max_size=32))
def test_any_seed_signs_anything_verifiably(seed, payload, chain_id, genesis_hash):
    pair = crypto.KeyPair.from_seed(seed)
    domain = crypto.SigningDomain(chain_id, genesis_hash)
    signature = crypto.sign(pair, domain, crypto.TAG_TRANSACTION, payload)
    assert crypto.verify(pair.public_key, domain, crypto.TAG_TRANSACTION, payload, signature)


# --- keys ---------------------------------------------------------------------------------------

def test_key_pair_from_seed_is_reproducible():
    first = crypto.KeyPair.generate()
    assert crypto.KeyPair.from_seed(first.seed) == first
    assert crypto.KeyPair.generate() != first


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_invalid_seed_length(size):
    with pytest.raises(ValueError, match="32 bytes"):
        crypto.KeyPair.from_seed(bytes(size))


def test_key_pair_repr_never_shows_the_seed():
    pair = keys("alice")
    text = repr(pair)
    assert pair.seed.hex() not in text
    assert crypto.format_address(pair.address) in text


def test_hash_functions_are_domain_separated():
    data = bytes(64)
    assert crypto.hash_pair(data[:32], data[32:]) != crypto.hash_bytes(data)
    assert len(crypto.hash_bytes(b"")) == crypto.HASH_BYTES
    assert crypto.hash_pair(b"a" * 32, b"b" * 32) != crypto.hash_pair(b"b" * 32, b"a" * 32)


# --- addresses ------------------------------------------------------------------------------------

@given(st.binary(min_size=32, max_size=32))
def test_address_text_round_trips(public_key):
    address = crypto.address_from_public_key(public_key)
    text = crypto.format_address(address)
    assert text.startswith("pay1") and text == text.lower()
    assert crypto.parse_address(text) == address
    assert crypto.parse_address(f"  {text}\n") == address


def test_different_keys_have_different_addresses():
    assert keys("alice").address != keys("bob").address
    assert len(keys("alice").address) == crypto.ADDRESS_BYTES


@pytest.mark.parametrize("name", ["alice", "bob", "gateway"])
def test_invalid_address_every_single_character_typo_is_detected(name):
    text = crypto.format_address(keys(name).address)
    for position in range(len(crypto.ADDRESS_PREFIX), len(text)):
        for char in ALPHABET:
            if char == text[position]:
                continue
            typo = text[:position] + char + text[position + 1:]
            with pytest.raises(crypto.InvalidAddress, match="checksum|canonical"):
                crypto.parse_address(typo)


def test_invalid_address_adjacent_transpositions_are_detected():
    text = crypto.format_address(keys("alice").address)
    for position in range(len(crypto.ADDRESS_PREFIX), len(text) - 1):
        swapped = text[:position] + text[position + 1] + text[position] + text[position + 2:]
        if swapped != text:
            with pytest.raises(crypto.InvalidAddress):
                crypto.parse_address(swapped)


def test_invalid_address_bad_prefix():
    text = crypto.format_address(keys("alice").address)
    for bad in ["pay2" + text[4:], "bc1" + text[4:], text[4:], "PAY1" + text[4:]]:
        with pytest.raises(crypto.InvalidAddress, match="starts with 'pay1'"):
            crypto.parse_address(bad)


@pytest.mark.parametrize("change", [lambda t: t[:-1], lambda t: t + "a", lambda t: t[:20], lambda t: "pay1"])
def test_invalid_address_wrong_length(change):
    text = crypto.format_address(keys("alice").address)
    with pytest.raises(crypto.InvalidAddress, match="43 characters"):
        crypto.parse_address(change(text))


@pytest.mark.parametrize("char", ["0", "1", "8", "9", "=", "-", "é", " "])
def test_invalid_address_bad_characters(char):
    text = crypto.format_address(keys("alice").address)
    with pytest.raises(crypto.InvalidAddress, match="a-z and 2-7"):
        crypto.parse_address(text[:10] + char + text[11:])


def test_invalid_address_non_canonical_last_character():
    # The last character carries 3 unused bits; setting one keeps the bytes but changes the text.
    text = crypto.format_address(keys("alice").address)
    last = ALPHABET.index(text[-1])
    variant = text[:-1] + ALPHABET[last ^ 1]
    with pytest.raises(crypto.InvalidAddress, match="not in canonical form"):
        crypto.parse_address(variant)


@pytest.mark.parametrize("value", [None, 42, b"pay1", ["pay1"]])
def test_invalid_address_not_a_string(value):
    with pytest.raises(crypto.InvalidAddress, match="must be a string"):
        crypto.parse_address(value)
