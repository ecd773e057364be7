"""Blocks, headers, Merkle roots and commit certificates (node/blocks.py)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, strategies as st

from node import blocks, crypto, limits
from node.blocks import CommitCertificate, CommitSignature, CommitVote, Header, InvalidBlock
from tests.support import CHAIN_ID, DOMAIN, keys, other_network

VALIDATORS = [keys(f"validator-{i}") for i in range(4)]
VALIDATOR_KEYS = [v.public_key for v in VALIDATORS]
HEADER = Header(CHAIN_ID, 5, 2, b"\x01" * 32, VALIDATORS[0].address, 1_700_000_000_000, 0, bytes(32), bytes(32),
                b"\x02" * 32)
HASHES = st.binary(min_size=32, max_size=32)


def certificate(header: Header, signers, domain: crypto.SigningDomain = DOMAIN, tag: bytes = crypto.TAG_COMMIT_VOTE):
    vote = CommitVote(header.height, header.view, blocks.header_hash(header))
    payload = blocks.encoding.encode(vote)
    return CommitCertificate(vote.height, vote.view, vote.block_hash, tuple(
        CommitSignature(index, crypto.sign(VALIDATORS[index], domain, tag, payload)) for index in signers))


# --- hashes and roots ----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("chain_id", "other"), ("height", 6), ("view", 3), ("parent_hash", bytes(32)), ("proposer", bytes(20)),
    ("timestamp_ms", 1), ("tx_count", 1), ("tx_root", b"\x03" * 32), ("receipts_root", b"\x03" * 32),
    ("state_root", bytes(32)),
])
def test_header_hash_covers_every_field(field, value):
    assert blocks.header_hash(dataclasses.replace(HEADER, **{field: value})) != blocks.header_hash(HEADER)


def test_merkle_root_of_nothing_and_of_one():
    assert blocks.merkle_root([]) == bytes(32)
    assert blocks.merkle_root([b"\x05" * 32]) == b"\x05" * 32


@given(st.lists(HASHES, min_size=1, max_size=20), st.data())
def test_merkle_root_changes_when_any_leaf_changes(leaves, data):
    position = data.draw(st.integers(0, len(leaves) - 1))
    replacement = data.draw(HASHES.filter(lambda leaf: leaf != leaves[position]))
    changed = leaves[:position] + [replacement] + leaves[position + 1:]
    assert blocks.merkle_root(changed) != blocks.merkle_root(leaves)


@given(st.lists(HASHES, min_size=2, max_size=20, unique=True))
def test_merkle_root_depends_on_order(leaves):
    assert blocks.merkle_root(list(reversed(leaves))) != blocks.merkle_root(leaves)


def test_merkle_root_inner_node_is_not_a_leaf_hash():
    left, right = b"\x01" * 32, b"\x02" * 32
    assert blocks.merkle_root([left, right]) == crypto.hash_pair(left, right) != crypto.hash_bytes(left + right)


def test_receipts_root_covers_failure_codes():
    ok = blocks.Receipt(bytes(32), True, "", "", "CNY", 1, ())
    failed = blocks.Receipt(bytes(32), False, "insufficient_funds", "no", "CNY", 1, ())
    assert blocks.receipts_root([ok]) != blocks.receipts_root([failed])


@pytest.mark.parametrize("validators, quorum", [(1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (6, 5), (7, 5), (10, 7),
                                                (100, 67)])
def test_quorum_is_more_than_two_thirds(validators, quorum):
    assert blocks.quorum_size(validators) == quorum
    assert 3 * quorum > 2 * validators and 3 * (quorum - 1) <= 2 * validators


# --- certificates ----------------------------------------------------------------------------

def test_certificate_with_a_quorum_verifies():
    blocks.verify_certificate(certificate(HEADER, [0, 1, 2]), HEADER, DOMAIN, VALIDATOR_KEYS)
    blocks.verify_certificate(certificate(HEADER, [3, 1, 0, 2]), HEADER, DOMAIN, VALIDATOR_KEYS)


def test_certificate_survives_encoding():
    cert = certificate(HEADER, [0, 2, 3])
    decoded = blocks.encoding.decode(CommitCertificate, blocks.encoding.encode(cert), blocks.CERTIFICATE_BYTES_MAX)
    blocks.verify_certificate(decoded, HEADER, DOMAIN, VALIDATOR_KEYS)


def test_invalid_certificate_for_another_block_hash():
    other = dataclasses.replace(HEADER, state_root=bytes(32))
    with pytest.raises(InvalidBlock, match="certificate is for a different block hash"):
        blocks.verify_certificate(certificate(other, [0, 1, 2]), HEADER, DOMAIN, VALIDATOR_KEYS)


@pytest.mark.parametrize("change", [{"height": 6}, {"view": 1}])
def test_invalid_certificate_height_or_view_mismatch(change):
    cert = dataclasses.replace(certificate(HEADER, [0, 1, 2]), **change)
    with pytest.raises(InvalidBlock, match="certificate height/view do not match the header"):
        blocks.verify_certificate(cert, HEADER, DOMAIN, VALIDATOR_KEYS)


def test_invalid_certificate_lists_a_validator_twice():
    cert = certificate(HEADER, [0, 1, 1])
    with pytest.raises(InvalidBlock, match="lists a validator twice"):
        blocks.verify_certificate(cert, HEADER, DOMAIN, VALIDATOR_KEYS)


def test_invalid_certificate_without_quorum():
    with pytest.raises(InvalidBlock, match="certificate has 2 signatures, needs 3"):
        blocks.verify_certificate(certificate(HEADER, [0, 1]), HEADER, DOMAIN, VALIDATOR_KEYS)
    with pytest.raises(InvalidBlock, match="certificate has 0 signatures, needs 3"):
        blocks.verify_certificate(certificate(HEADER, []), HEADER, DOMAIN, VALIDATOR_KEYS)


def test_invalid_certificate_signer_not_a_validator():
    cert = certificate(HEADER, [0, 1, 2])
    outsider = dataclasses.replace(cert.signatures[2], validator_index=4)
    cert = dataclasses.replace(cert, signatures=cert.signatures[:2] + (outsider,))
    with pytest.raises(InvalidBlock, match="certificate signer 4 is not a validator"):
        blocks.verify_certificate(cert, HEADER, DOMAIN, VALIDATOR_KEYS)


def test_invalid_certificate_signature_does_not_verify():
    cert = certificate(HEADER, [0, 1, 2])
    swapped = (cert.signatures[0], CommitSignature(1, cert.signatures[2].signature), cert.signatures[2])
    with pytest.raises(InvalidBlock, match="signature of validator 1 does not verify"):
        blocks.verify_certificate(dataclasses.replace(cert, signatures=swapped), HEADER, DOMAIN, VALIDATOR_KEYS)


def test_invalid_certificate_signed_for_another_chain():
    other_chain = crypto.SigningDomain("other-chain", DOMAIN.genesis_hash)
    with pytest.raises(InvalidBlock, match="does not verify"):
        blocks.verify_certificate(certificate(HEADER, [0, 1, 2], other_chain), HEADER, DOMAIN, VALIDATOR_KEYS)


def test_invalid_certificate_signed_for_another_genesis_with_the_same_chain_id():
    # A block certified on one local network ("paychain-local") is not final on another.
    with pytest.raises(InvalidBlock, match="does not verify"):
        blocks.verify_certificate(certificate(HEADER, [0, 1, 2], other_network()), HEADER, DOMAIN, VALIDATOR_KEYS)
    blocks.verify_certificate(certificate(HEADER, [0, 1, 2], other_network()), HEADER, other_network(),
                              VALIDATOR_KEYS)


def test_invalid_certificate_for_a_header_of_another_chain():
    header = dataclasses.replace(HEADER, chain_id="other-chain")
    with pytest.raises(InvalidBlock, match="block is for chain 'other-chain'"):
        blocks.verify_certificate(certificate(header, [0, 1, 2]), header, DOMAIN, VALIDATOR_KEYS)


def test_invalid_certificate_signed_with_the_transaction_tag():
    with pytest.raises(InvalidBlock, match="does not verify"):
        blocks.verify_certificate(certificate(HEADER, [0, 1, 2], tag=crypto.TAG_TRANSACTION), HEADER, DOMAIN,
                                  VALIDATOR_KEYS)


def test_invalid_certificate_against_another_validator_set():
    others = [keys(f"other-{i}").public_key for i in range(4)]
    with pytest.raises(InvalidBlock, match="does not verify"):
        blocks.verify_certificate(certificate(HEADER, [0, 1, 2]), HEADER, DOMAIN, others)


def test_sign_commit_matches_the_certificate_payload():
    vote = CommitVote(HEADER.height, HEADER.view, blocks.header_hash(HEADER))
    signature = blocks.sign_commit(VALIDATORS[0], DOMAIN, vote)
    cert = CommitCertificate(vote.height, vote.view, vote.block_hash, (CommitSignature(0, signature),))
    blocks.verify_certificate(cert, HEADER, DOMAIN, VALIDATOR_KEYS[:1])


def test_a_full_block_of_largest_transactions_reads_back_from_the_store():
    """block_bytes_max counts raw tx bytes; the stored encoding adds per-tx headers and must still decode."""
    from node import encoding
    from node.blocks import BLOCK_ENCODING_BYTES_MAX, Block, Header
    size = limits.block_bytes_max // limits.block_txs_max  # fills both limits at once
    transactions = tuple(bytes([i % 251]) * size for i in range(limits.block_txs_max))
    assert sum(map(len, transactions)) <= limits.block_bytes_max
    header = Header("c", 1, 0, bytes(32), bytes(20), 0, len(transactions), bytes(32), bytes(32), bytes(32))
    block = Block(header, transactions)
    data = encoding.encode(block)
    assert len(data) <= BLOCK_ENCODING_BYTES_MAX
    assert encoding.decode(Block, data, BLOCK_ENCODING_BYTES_MAX) == block


def test_a_block_reproposed_after_a_view_change_commits_in_the_later_view():
    vote = CommitVote(HEADER.height, HEADER.view + 2, blocks.header_hash(HEADER))
    signatures = tuple(CommitSignature(i, blocks.sign_commit(VALIDATORS[i], DOMAIN, vote)) for i in (0, 1, 2))
    blocks.verify_certificate(CommitCertificate(vote.height, vote.view, vote.block_hash, signatures), HEADER, DOMAIN,
                              VALIDATOR_KEYS)
