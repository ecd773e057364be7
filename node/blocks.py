"""Blocks, headers, receipts, commit certificates, and the Merkle roots that bind them.

A block is final when it carries a CommitCertificate: signatures of more than two
thirds of the validators over (signing domain, height, view, block hash), the signing
domain being the chain id and the genesis hash. Anyone with the genesis can check a
certificate with `verify_certificate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from node import crypto, encoding, limits
from node.encoding import ADDRESS, AMOUNT, ASSET, CHAIN_ID, HASH, SIGNATURE, U64, Bool, Bytes, Seq, Struct, Text, \
    UInt, check_schema


class InvalidBlock(Exception):
    """A block (or certificate) that breaks a rule; the message names the rule."""


@check_schema
@dataclass(frozen=True, slots=True)
class Header:
    SCHEMA: ClassVar = (CHAIN_ID, U64, U64, HASH, ADDRESS, U64, UInt(limits.block_txs_max), HASH, HASH, HASH)
    chain_id: str
    height: int
    view: int
    """Consensus view (round) in which the block was proposed."""
    parent_hash: bytes
    proposer: bytes
    """Address of the proposing validator."""
    timestamp_ms: int
    """Proposer's clock, Unix milliseconds; never earlier than the parent's."""
    tx_count: int
    tx_root: bytes
    receipts_root: bytes
    state_root: bytes
    """State commitment after executing this block."""


@check_schema
@dataclass(frozen=True, slots=True)
class Block:
    SCHEMA: ClassVar = (Struct(Header), Seq(Bytes(max_size=limits.tx_bytes_max), limits.block_txs_max))
    header: Header
    transactions: tuple[bytes, ...]
    """Encoded signed transactions, in execution order."""


@check_schema
@dataclass(frozen=True, slots=True)
class Event:
    """Something a transaction did that wallets and gateways follow (e.g. a balance change)."""

    SCHEMA: ClassVar = (Text(32, ascii_only=True), Seq(Bytes(max_size=limits.event_field_bytes_max), 8))
    name: str
    fields: tuple[bytes, ...]


NATIVE_EVENTS = frozenset({
    "transfer", "registered", "recharge_requested", "recharge_voided", "mint", "burn", "contract_deployed",
    "escrow_held", "escrow_released", "escrow_refunded", "merchant_suspended", "merchant_activated",
    "proposal_created", "proposal_approved", "proposal_executed", "allowance_set",
})
"""Events the ledger itself emits (their 20-byte fields are accounts); a contract may not use these names."""


@check_schema
@dataclass(frozen=True, slots=True)
class Receipt:
    SCHEMA: ClassVar = (HASH, Bool(), Text(32, ascii_only=True), Text(256), ASSET, AMOUNT,
                        Seq(Struct(Event), limits.receipt_events_max), UInt(limits.contract_gas_max))
    tx_hash: bytes
    success: bool
    code: str
    """Stable failure code ("" on success), e.g. "insufficient_funds"."""
    message: str
    """Human explanation naming the rule that failed ("" on success)."""
    fee_asset: str
    fee_paid: int
    events: tuple[Event, ...]
    gas_used: int = 0
    """Contract gas the transaction used (0 for kinds that run no contract code)."""


@check_schema
@dataclass(frozen=True, slots=True)
class Receipts:
    SCHEMA: ClassVar = (Seq(Struct(Receipt), limits.block_txs_max),)
    items: tuple[Receipt, ...]


@check_schema
@dataclass(frozen=True, slots=True)
class CommitVote:
    """What a validator signs to commit a block."""

    SCHEMA: ClassVar = (U64, U64, HASH)
    height: int
    view: int
    block_hash: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class CommitSignature:
    SCHEMA: ClassVar = (UInt(limits.validators_max), SIGNATURE)
    validator_index: int
    signature: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class CommitCertificate:
    SCHEMA: ClassVar = (U64, U64, HASH, Seq(Struct(CommitSignature), limits.certificate_signatures_max))
    height: int
    view: int
    block_hash: bytes
    signatures: tuple[CommitSignature, ...]


BLOCK_HEADER_BYTES_MAX = 1024
_TX_FIELD_OVERHEAD_BYTES = 3
"""A transaction inside an encoded block carries a msgpack bin header of up to 3 bytes."""
BLOCK_ENCODING_BYTES_MAX = (limits.block_bytes_max + _TX_FIELD_OVERHEAD_BYTES * limits.block_txs_max
                            + BLOCK_HEADER_BYTES_MAX)
"""Largest encoded Block: `block_bytes_max` counts only the transactions' own bytes."""
CERTIFICATE_BYTES_MAX = 128 * limits.certificate_signatures_max + 128


def header_hash(header: Header) -> bytes:
    return crypto.hash_bytes(encoding.encode(header))


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Binary Merkle root of 32-byte leaves; an odd node is paired with itself; empty = zeros."""
    if not leaves:
        return bytes(32)
    level = list(leaves)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [crypto.hash_pair(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def tx_root(tx_hashes: Sequence[bytes]) -> bytes:
    return merkle_root(tx_hashes)


def check_body(block: Block) -> None:
    """Raise InvalidBlock unless the body is the one the header commits to (count and tx root).

    A header hash, and so every vote and certificate, covers only the header: whoever accepts a
    block on the strength of a hash or a certificate must check this too, or a peer could pair a
    real certificate with a shortened or swapped body.
    """
    if block.header.tx_count != len(block.transactions):
        raise InvalidBlock(f"block {block.header.height}: header tx_count {block.header.tx_count} does not match "
                           f"the body's {len(block.transactions)} transactions")
    if tx_root([crypto.hash_bytes(raw) for raw in block.transactions]) != block.header.tx_root:
        raise InvalidBlock(f"block {block.header.height}: the body's transactions do not match the header's tx root")


def receipts_root(receipts: Sequence[Receipt]) -> bytes:
    return receipts_root_of_encoded([encoding.encode(r) for r in receipts])


def receipts_root_of_encoded(encoded_receipts: Sequence[bytes]) -> bytes:
    return merkle_root([crypto.hash_bytes(r) for r in encoded_receipts])


def sign_commit(keys: crypto.KeyPair, domain: crypto.SigningDomain, vote: CommitVote) -> bytes:
    return crypto.sign(keys, domain, crypto.TAG_COMMIT_VOTE, encoding.encode(vote))


def quorum_size(validator_count: int) -> int:
    """Smallest number of votes that is more than two thirds: 2f+1 when n = 3f+1."""
    return validator_count * 2 // 3 + 1


def verify_certificate(certificate: CommitCertificate, header: Header, domain: crypto.SigningDomain,
                       validator_keys: Sequence[bytes]) -> None:
    """Raise InvalidBlock unless `certificate` proves `header` final for this validator set on the network `domain`."""
    if header.chain_id != domain.chain_id:
        raise InvalidBlock(f"block is for chain {header.chain_id!r}, not {domain.chain_id!r}")
    block_hash = header_hash(header)
    if certificate.block_hash != block_hash:
        raise InvalidBlock("certificate is for a different block hash")
    # A block proposed in view v and re-proposed after a view change commits in a later view.
    if certificate.height != header.height or certificate.view < header.view:
        raise InvalidBlock("certificate height/view do not match the header")
    signers = [s.validator_index for s in certificate.signatures]
    if len(set(signers)) != len(signers):
        raise InvalidBlock("certificate lists a validator twice")
    if len(signers) < quorum_size(len(validator_keys)):
        raise InvalidBlock(f"certificate has {len(signers)} signatures, needs {quorum_size(len(validator_keys))}")
    payload = encoding.encode(CommitVote(certificate.height, certificate.view, certificate.block_hash))
    for entry in certificate.signatures:
        if entry.validator_index >= len(validator_keys):
            raise InvalidBlock(f"certificate signer {entry.validator_index} is not a validator")
        if not crypto.verify(validator_keys[entry.validator_index], domain, crypto.TAG_COMMIT_VOTE, payload,
                             entry.signature):
            raise InvalidBlock(f"certificate signature of validator {entry.validator_index} does not verify")


@check_schema
@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where the chain stands after its last committed block."""

    SCHEMA: ClassVar = (U64, HASH, HASH, U64)
    height: int
    block_hash: bytes
    """Hash of the last committed header (the genesis hash at height 0)."""
    state_root: bytes
    timestamp_ms: int
