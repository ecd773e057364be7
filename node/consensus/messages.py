"""Consensus and service messages, their signatures, and the certificates built from them.

A frame on the wire is one of two kinds:

- a `SignedMessage`: a consensus message (PrePrepare, Prepare, Commit, ViewChange, NewView)
  signed by the validator that sends it. Votes are signed exactly as the certificates need
  them: a Commit's signature *is* a signature of the CommitVote that a CommitCertificate
  collects, and a Prepare's signature is what a PreparedCertificate collects, so certificates
  are assembled from messages without re-signing.
- a `ServiceFrame`: status, block sync or forwarded transactions, exchanged between any two
  allowed peers, validators and non-voting full nodes alike. It is not signed: the transport
  authenticates the sender (Noise, peer id = node key), and what it carries proves itself —
  blocks by their commit certificates, transactions by their own signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from node import crypto, encoding, limits
from node.blocks import (Block, CommitCertificate, CommitSignature, CommitVote, InvalidBlock, check_body, header_hash,
                         quorum_size, verify_certificate)
from node.encoding import HASH, SIGNATURE, U64, Bytes, Optional, Seq, Struct, Tagged, UInt, check_schema


class InvalidMessage(Exception):
    """A consensus message that breaks a rule; the message names the rule. Dropped and counted."""


VALIDATOR_INDEX = UInt(limits.validators_max)


@check_schema
@dataclass(frozen=True, slots=True)
class PrepareVote:
    """What a validator signs to say it accepted the primary's block for (height, view)."""

    SCHEMA: ClassVar = (U64, U64, HASH)
    height: int
    view: int
    block_hash: bytes


VoteSignature = CommitSignature
"""(validator index, signature): the same entry serves prepared and commit certificates."""


@check_schema
@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """2f+1 Prepare signatures for one block at (height, view): the block may have been committed."""

    SCHEMA: ClassVar = (U64, U64, HASH, Seq(Struct(VoteSignature), limits.validators_max))
    height: int
    view: int
    block_hash: bytes
    signatures: tuple[VoteSignature, ...]


# --- messages -------------------------------------------------------------------------------

@check_schema
@dataclass(frozen=True, slots=True)
class PrePrepare:
    """The primary's proposal for (height, view)."""

    TAG: ClassVar[int] = 1
    SCHEMA: ClassVar = (U64, U64, Struct(Block))
    height: int
    view: int
    block: Block


@check_schema
@dataclass(frozen=True, slots=True)
class Prepare:
    TAG: ClassVar[int] = 2
    SCHEMA: ClassVar = (U64, U64, HASH)
    height: int
    view: int
    block_hash: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class Commit:
    TAG: ClassVar[int] = 3
    SCHEMA: ClassVar = (U64, U64, HASH)
    height: int
    view: int
    block_hash: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class ViewChange:
    """"Move to `new_view` at `height`", with the highest prepared certificate and its block."""

    TAG: ClassVar[int] = 4
    SCHEMA: ClassVar = (U64, U64, Optional(Struct(PreparedCertificate)), Optional(Struct(Block)))
    height: int
    new_view: int
    prepared: PreparedCertificate | None
    prepared_block: Block | None


@check_schema
@dataclass(frozen=True, slots=True)
class Status:
    """Where a node is: lets peers that are behind ask for blocks."""

    TAG: ClassVar[int] = 7
    SCHEMA: ClassVar = (U64, U64)
    height: int
    view: int


@check_schema
@dataclass(frozen=True, slots=True)
class SyncRequest:
    TAG: ClassVar[int] = 8
    SCHEMA: ClassVar = (U64, UInt(limits.sync_blocks_per_response_max))
    from_height: int
    count: int


@check_schema
@dataclass(frozen=True, slots=True)
class CertifiedBlock:
    SCHEMA: ClassVar = (Struct(Block), Struct(CommitCertificate))
    block: Block
    certificate: CommitCertificate


@check_schema
@dataclass(frozen=True, slots=True)
class SyncResponse:
    TAG: ClassVar[int] = 9
    SCHEMA: ClassVar = (Seq(Struct(CertifiedBlock), limits.sync_blocks_per_response_max),)
    blocks: tuple[CertifiedBlock, ...]


@check_schema
@dataclass(frozen=True, slots=True)
class TxBatch:
    """Signed transactions a validator admitted, forwarded so every validator (and so every
    future primary) has them."""

    TAG: ClassVar[int] = 10
    SCHEMA: ClassVar = (Seq(Bytes(max_size=limits.tx_bytes_max), limits.rpc_send_batch_txs_max),)
    transactions: tuple[bytes, ...]


@check_schema
@dataclass(frozen=True, slots=True)
class SignedViewChange:
    SCHEMA: ClassVar = (VALIDATOR_INDEX, Struct(ViewChange), SIGNATURE)
    validator_index: int
    view_change: ViewChange
    signature: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class NewView:
    """The new primary's proof (2f+1 ViewChanges) that `view` started, and its proposal for it."""

    TAG: ClassVar[int] = 5
    SCHEMA: ClassVar = (U64, U64, Seq(Struct(SignedViewChange), limits.validators_max), Optional(Struct(Block)))
    height: int
    view: int
    view_changes: tuple[SignedViewChange, ...]
    block: Block | None
    """The highest prepared block among the view changes (which must be re-proposed), or a new
    proposal, or None: the view starts and the primary proposes when there is work."""


# --- what a validator keeps durable (its write-ahead log) ------------------------------------

@check_schema
@dataclass(frozen=True, slots=True)
class PreparedState:
    """This validator saw 2f+1 Prepares for `block`: it may Commit, and every later ViewChange it
    signs at this height must carry this certificate (or a later one) with its block."""

    TAG: ClassVar[int] = 2
    SCHEMA: ClassVar = (Struct(PreparedCertificate), Struct(Block))
    certificate: PreparedCertificate
    block: Block


@check_schema
@dataclass(frozen=True, slots=True)
class ViewEntered:
    """This validator accepted a NewView: the view change to `view` at `height` is over."""

    TAG: ClassVar[int] = 3
    SCHEMA: ClassVar = (U64, U64)
    height: int
    view: int


MESSAGE_CLASSES = (PrePrepare, Prepare, Commit, ViewChange, NewView)
Message = PrePrepare | Prepare | Commit | ViewChange | NewView
SERVICE_CLASSES = (Status, SyncRequest, SyncResponse, TxBatch)
ServiceMessage = Status | SyncRequest | SyncResponse | TxBatch


@check_schema
@dataclass(frozen=True, slots=True)
class SignedMessage:
    """A consensus message and its sender's signature (Prepare/Commit: the vote signature)."""

    TAG: ClassVar[int] = 1
    SCHEMA: ClassVar = (VALIDATOR_INDEX, Tagged({cls.TAG: cls for cls in MESSAGE_CLASSES}), SIGNATURE)
    validator_index: int
    message: Message
    signature: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class ServiceFrame:
    """A service message between two allowed peers; the transport names the sender."""

    TAG: ClassVar[int] = 2
    SCHEMA: ClassVar = (Tagged({cls.TAG: cls for cls in SERVICE_CLASSES}),)
    message: ServiceMessage


@check_schema
@dataclass(frozen=True, slots=True)
class Frame:
    """What one network frame holds."""

    SCHEMA: ClassVar = (Tagged({SignedMessage.TAG: SignedMessage, ServiceFrame.TAG: ServiceFrame}),)
    content: SignedMessage | ServiceFrame


# --- signing ----------------------------------------------------------------------------------

def signing_payload(message: Message) -> tuple[bytes, bytes]:
    """(type tag, payload) a message's signature covers."""
    if isinstance(message, Prepare):
        return crypto.TAG_PREPARE_VOTE, encoding.encode(PrepareVote(message.height, message.view, message.block_hash))
    if isinstance(message, Commit):
        return crypto.TAG_COMMIT_VOTE, encoding.encode(CommitVote(message.height, message.view, message.block_hash))
    return crypto.TAG_CONSENSUS, encoding.pack([message.TAG, encoding.wire_of(message)])


def sign_message(keys: crypto.KeyPair, domain: crypto.SigningDomain, validator_index: int,
                 message: Message) -> SignedMessage:
    """`message` signed for the network `domain` (the value a Replica is given as its `chain_id`)."""
    tag, payload = signing_payload(message)
    return SignedMessage(validator_index, message, crypto.sign(keys, domain, tag, payload))


def verify_message(signed: SignedMessage, domain: crypto.SigningDomain, validator_keys: Sequence[bytes]) -> None:
    """Raise InvalidMessage unless a validator signed this message for the network `domain`."""
    if signed.validator_index >= len(validator_keys):
        raise InvalidMessage(f"sender {signed.validator_index} is not a validator")
    tag, payload = signing_payload(signed.message)
    if not crypto.verify(validator_keys[signed.validator_index], domain, tag, payload, signed.signature):
        raise InvalidMessage(f"signature of validator {signed.validator_index} does not verify")


def sign_view_change(keys: crypto.KeyPair, domain: crypto.SigningDomain, validator_index: int,
                     view_change: ViewChange) -> SignedViewChange:
    signed = sign_message(keys, domain, validator_index, view_change)
    return SignedViewChange(validator_index, view_change, signed.signature)


MESSAGE_BYTES_MAX = limits.p2p_frame_bytes_max


def encode_message(signed: SignedMessage) -> bytes:
    """The frame for a signed consensus message."""
    return encoding.encode(Frame(signed))


def encode_service(message: ServiceMessage) -> bytes:
    """The frame for a service message."""
    return encoding.encode(Frame(ServiceFrame(message)))


def decode_frame(data: bytes) -> SignedMessage | ServiceMessage:
    """A frame's consensus message (still to be verified) or service message."""
    try:
        content = encoding.decode(Frame, data, MESSAGE_BYTES_MAX).content
    except encoding.DecodeError as error:
        raise InvalidMessage(f"malformed message: {error}") from error
    return content.message if isinstance(content, ServiceFrame) else content


# --- certificates -------------------------------------------------------------------------------

def check_prepared_certificate(certificate: PreparedCertificate, block: Block | None, domain: crypto.SigningDomain,
                               validator_keys: Sequence[bytes]) -> None:
    """Raise InvalidMessage unless 2f+1 distinct validators prepared `block` at the certificate's view."""
    signers = [s.validator_index for s in certificate.signatures]
    if len(set(signers)) != len(signers):
        raise InvalidMessage("prepared certificate lists a validator twice")
    if len(signers) < quorum_size(len(validator_keys)):
        raise InvalidMessage(f"prepared certificate has {len(signers)} signatures, needs "
                             f"{quorum_size(len(validator_keys))}")
    if block is None or header_hash(block.header) != certificate.block_hash:
        raise InvalidMessage("prepared certificate comes without its block")
    if block.header.height != certificate.height or block.header.view > certificate.view:
        raise InvalidMessage("prepared block does not belong to the certificate's height and view")
    check_block_body(block)
    payload = encoding.encode(PrepareVote(certificate.height, certificate.view, certificate.block_hash))
    for entry in certificate.signatures:
        if entry.validator_index >= len(validator_keys) or not crypto.verify(
                validator_keys[entry.validator_index], domain, crypto.TAG_PREPARE_VOTE, payload, entry.signature):
            raise InvalidMessage(f"prepared certificate signature of validator {entry.validator_index} is invalid")


def check_block_body(block: Block) -> None:
    """Raise InvalidMessage unless the block's body is the one its header commits to."""
    try:
        check_body(block)
    except InvalidBlock as error:
        raise InvalidMessage(str(error)) from error


def check_certified_block(certified: CertifiedBlock, domain: crypto.SigningDomain,
                          validator_keys: Sequence[bytes]) -> None:
    """Raise InvalidMessage unless the certificate proves the block, header and body, final on the network `domain`."""
    try:
        verify_certificate(certified.certificate, certified.block.header, domain, validator_keys)
        check_body(certified.block)
    except InvalidBlock as error:
        raise InvalidMessage(f"block {certified.block.header.height}: {error}") from error


def commit_certificate(height: int, view: int, block_hash: bytes,
                       commits: dict[int, bytes]) -> CommitCertificate:
    """A CommitCertificate from Commit signatures by validator index (sorted for one encoding)."""
    return CommitCertificate(height, view, block_hash,
                             tuple(CommitSignature(index, commits[index]) for index in sorted(commits)))
