"""Bad input from peers never crashes a node, never changes its chain, and is counted.

Fuzzes the consensus frame decoder and every driver handler — consensus messages (PrePrepare,
Prepare, Commit, ViewChange, NewView) and service messages (Status, SyncRequest, SyncResponse,
TxBatch) — with random, mutated, oversized, replayed, mis-signed and validly signed but wrong
frames, against a real Ledger. A frame the node drops is counted in the driver's or the replica's
`dropped` table (exported as `paychain_consensus_messages_dropped{reason}`); a forwarded
transaction it refuses is counted by the ledger (`paychain_txs_rejected{rule}`). The few inputs a
node keeps without counting are named in `kept_reason`: a vote or view change it collects, a
height claim, a duplicate of what it already holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from prometheus_client.parser import text_string_to_metric_families

from node import limits
from node.app import Ledger
from node.blocks import Block, CommitCertificate, CommitSignature, CommitVote, header_hash, sign_commit
from node.consensus.core import Replica
from node.consensus.driver import SYNC_TIMER, Driver
from node.consensus.messages import (CertifiedBlock, Commit, InvalidMessage, NewView, PreparedCertificate, Prepare,
                                     PrePrepare, SignedMessage, Status, SyncRequest, SyncResponse, TxBatch,
                                     ViewChange, VoteSignature, decode_frame, encode_message, encode_service,
                                     sign_message, sign_view_change)
from node.consensus.runner import PbftRunner
from node.consensus.sync import sync_hedge_ms
from node.consensus.wal import MemoryVoteLog
from node.p2p.memory import MemoryHub, MemoryNetwork
from node.rpc.server import Metrics
from node.storage.chain import ChainStore
from node.storage.kv import MemoryStore
from node.transactions import transaction_hash
from node.verifier import BatchVerifier
from tests.support import keys, make_chain, make_genesis, other_network, transfer
from tests.unit.strategies import instances

GENESIS = make_genesis(validators=4)
DOMAIN = GENESIS.signing_domain
"""What the node's votes and transactions are signed for (chain id and genesis hash)."""
OTHER_CHAIN = make_genesis(validators=4, chain_id="paychain-other")
"""Another chain with the same validator keys."""
VALIDATORS = [keys(f"validator-{i}") for i in range(4)]
OUTSIDER = keys("outsider")
NODE_INDEX = 0
"""The node under test is validator 0: at height 1 the primary of view 0 is validator 1, of view 1 validator 2."""
PEER = VALIDATORS[1].public_key
NOW_MS = 1_700_000_100_000
FUTURE_VIEWS_MAX = limits.pbft_future_views_max
U64_MAX = 2**64 - 1

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
"""Bounded and reproducible: the whole file runs in well under a minute on two shared cores."""


# --- a node with recording ports ---------------------------------------------------------------

class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []
        """(peer, frame); peer None for a broadcast."""

    def send(self, peer: bytes, data: bytes) -> None:
        self.sent.append((peer, data))

    def broadcast(self, data: bytes) -> None:
        self.sent.append((None, data))


class RecordingTimers:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int]] = []

    def set(self, name: str, delay_ms: int, height: int, view: int) -> None:
        self.calls.append((name, delay_ms, height, view))


def new_ledger(genesis=GENESIS) -> Ledger:
    return Ledger(ChainStore(MemoryStore(), genesis), clock_ms=lambda: NOW_MS)


def new_node(clock_ms=lambda: NOW_MS) -> Driver:
    """Validator 0 of a 4-validator chain at height 0, started, with nothing in its mempool."""
    ledger = new_ledger()
    replica = Replica(NODE_INDEX, VALIDATORS[NODE_INDEX], DOMAIN, ledger.validator_keys, ledger.head.height + 1)
    driver = Driver(replica, ledger, RecordingTransport(), RecordingTimers(), MemoryVoteLog(), clock_ms,
                    VALIDATORS[NODE_INDEX])
    driver.start()
    return driver


def drop_counts(driver: Driver) -> Counter:
    """Everything the runner exports as dropped (node/consensus/runner.py `info()`)."""
    return Counter(driver.stats.dropped) + Counter(driver.replica.dropped)


def chain_state(driver: Driver) -> tuple[int, bytes, bytes]:
    head = driver.app.head
    return head.height, head.block_hash, head.state_root


def sent_messages(driver: Driver, since: int = 0) -> list[tuple[bytes | None, object]]:
    return [(peer, decode_frame(data)) for peer, data in driver.transport.sent[since:]]


# --- valid frames of every kind ------------------------------------------------------------------

def signed(index: int, message, signer=None, domain=DOMAIN) -> SignedMessage:
    """`message` from validator `index`, signed with its key (or with `signer`'s: a forgery)."""
    return sign_message(signer or VALIDATORS[index], domain, index, message)


def frame(index: int, message, signer=None, domain=DOMAIN) -> bytes:
    return encode_message(signed(index, message, signer, domain))


def payment(nonce: int) -> bytes:
    """A transfer from alice to bob on GENESIS' network."""
    return transfer(nonce=nonce, domain=DOMAIN)


def make_proposal() -> Block:
    """What the primary of (height 1, view 0), validator 1, honestly proposes: one transfer."""
    ledger = new_ledger()
    ledger.check_tx(payment(0))
    return ledger.prepare_proposal(1, 0, VALIDATORS[1].address, NOW_MS - 1_000)


def prepared_certificate(block: Block, view: int = 0, signers=(0, 1, 2), forger=None) -> PreparedCertificate:
    """2f+1 Prepare signatures for `block` (a Prepare's signature is what the certificate collects)."""
    block_hash = header_hash(block.header)
    prepare = Prepare(block.header.height, view, block_hash)
    return PreparedCertificate(block.header.height, view, block_hash,
                               tuple(VoteSignature(i, signed(i, prepare, forger).signature) for i in signers))


def view_changes(new_view: int, senders=(1, 2, 3), forger=None, prepared=None, prepared_block=None):
    return tuple(sign_view_change(forger or VALIDATORS[i], DOMAIN, i,
                                  ViewChange(1, new_view, prepared, prepared_block)) for i in senders)


def certified_chain(genesis=GENESIS, with_transfer: bool = True) -> list[CertifiedBlock]:
    """Blocks 1 and 2 of `genesis`' chain with their commit certificates (block 1 holds a transfer)."""
    chain = make_chain(genesis)
    if with_transfer:
        chain.submit(payment(0))
    committed = [chain.commit_pending(), chain.commit_pending()]
    return [CertifiedBlock(c.block, c.certificate) for c in committed]


PROPOSAL = make_proposal()
PROPOSAL_HASH = header_hash(PROPOSAL.header)
CERTIFIED = certified_chain()
assert len(CERTIFIED[0].block.transactions) == 1

VALID_FRAMES = {
    "PrePrepare": frame(1, PrePrepare(1, 0, PROPOSAL)),
    "Prepare": frame(2, Prepare(1, 0, PROPOSAL_HASH)),
    "Commit": frame(3, Commit(1, 0, PROPOSAL_HASH)),
    "ViewChange": frame(3, ViewChange(1, 1, None, None)),
    "ViewChange with prepared certificate": frame(3, ViewChange(1, 1, prepared_certificate(PROPOSAL), PROPOSAL)),
    "NewView": frame(2, NewView(1, 1, view_changes(1), None)),
    "Status": encode_service(Status(1, 0)),
    "SyncRequest": encode_service(SyncRequest(1, limits.sync_blocks_per_response_max)),
    "SyncResponse": encode_service(SyncResponse(tuple(CERTIFIED))),
    "TxBatch": encode_service(TxBatch((payment(0), payment(1)))),
}
FRAME_NAMES = sorted(VALID_FRAMES)
DECODED_TYPES = (SignedMessage, Status, SyncRequest, SyncResponse, TxBatch)


def decode_or_none(data: bytes):
    """The decoded frame, or None if decode_frame refused it; anything but InvalidMessage escapes (a bug)."""
    try:
        message = decode_frame(data)
    except InvalidMessage:
        return None
    assert isinstance(message, DECODED_TYPES), type(message)
    return message


# --- how a node dealt with one frame -------------------------------------------------------------

def deliver(driver: Driver, data: bytes, sender: bytes = PEER) -> str:
    """Hand one frame to the driver and say what became of it: "dropped: <reasons>" (counted),
    "rejected: <rules>" (forwarded transactions the ledger refused, counted) or "kept: <why>".
    Fails if the frame was neither counted nor kept, or if it armed a timer beyond the node's bounds."""
    decoded = decode_or_none(data)
    drops_before = drop_counts(driver)
    rejections_before = Counter(driver.app.rejections)
    sent_before = len(driver.transport.sent)
    head_before = driver.app.head.height
    timers_before = len(driver.timers.calls)
    driver.on_frame(sender, data)
    longest_ms = max(driver.replica.timeout_ms_max, limits.sync_request_timeout_ms)
    assert all(0 <= delay <= longest_ms for _, delay, _, _ in driver.timers.calls[timers_before:])
    dropped = drop_counts(driver) - drops_before
    rejected = Counter(driver.app.rejections) - rejections_before
    if decoded is None:
        assert dropped == Counter(malformed=1), dropped
        return "dropped: malformed"
    if dropped:
        return "dropped: " + ", ".join(sorted(dropped))
    if rejected:
        assert isinstance(decoded, TxBatch)
        return "rejected: " + ", ".join(sorted(rejected))
    why = kept_reason(driver, decoded, sender, sent_messages(driver, sent_before), head_before)
    assert why is not None, f"neither counted nor kept: {decoded!r}"
    return "kept: " + why


def kept_reason(driver: Driver, message, sender: bytes, sent, head_before: int) -> str | None:
    """Why an uncounted frame is fine to keep, checked against the node's state; None if it is not."""
    replica = driver.replica
    if isinstance(message, Status):
        return "height claim" if driver.peer_heights.get(sender) == message.height else None
    if isinstance(message, SyncRequest):
        answered = any(peer == sender and isinstance(m, SyncResponse) for peer, m in sent)
        return "answered" if answered else None
    if isinstance(message, SyncResponse):
        if driver.app.head.height > head_before:
            return "blocks applied"
        if all(c.block.header.height != head_before + 1 for c in message.blocks):
            return "nothing at the next height (uncounted: see test_sync_response_without_the_next_block_is_counted)"
        return None
    if isinstance(message, TxBatch):
        # Already known transactions are not rejections (Ledger.check_tx): a re-forward is normal.
        known = all(driver.app.has_transaction(transaction_hash(raw)) for raw in message.transactions)
        return "transactions in the mempool" if known else None
    content, index = message.message, message.validator_index
    key = driver.replica.validator_keys[index]
    if driver.app.head.height > head_before:
        return "block committed"  # the message completed a commit quorum
    if isinstance(content, (Commit, NewView)) and content.height > head_before + 1:
        # Signed proof that the chain is ahead: the node asks that validator for blocks (block sync).
        return "evidence of a later height" if driver.peer_heights.get(key, 0) > head_before else None
    if isinstance(content, (Prepare, Commit)):
        kind = "prepare" if isinstance(content, Prepare) else "commit"
        collected = replica.round.votes.get((kind, index), {}).get(content.view) == content.block_hash
        return f"{kind} collected" if collected else None
    if isinstance(content, ViewChange):
        collected = index in replica.round.view_changes.get(content.new_view, {})
        return "view change collected" if collected else None
    if isinstance(content, PrePrepare):
        return "proposal accepted" if replica.round.proposals.get(content.view) == content.block else None
    if isinstance(content, NewView):
        return "view entered" if replica.view == content.view and not replica.view_changing else None
    return None


# --- 1. the frame decoder ------------------------------------------------------------------------

def pack(wire) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)


WIRE_LEAVES = (st.none() | st.booleans() | st.integers(-2**63, U64_MAX) | st.floats(allow_nan=False)
               | st.binary(max_size=70) | st.text(max_size=12))
WIRE_VALUES = st.recursive(WIRE_LEAVES, lambda children: st.lists(children, max_size=5), max_leaves=24)
"""msgpack values of any shape (no maps or ext types: the decoder refuses those before any schema)."""
FRAME_SHAPED = st.tuples(st.sampled_from([1, 2, 3]), st.tuples(st.integers(0, 11), WIRE_VALUES)).map(
    lambda content: pack([list(content)]))
"""[kind, [message tag, anything]]: past the outer tags, into every message schema."""


@st.composite
def byte_mutations(draw, names=FRAME_NAMES) -> tuple[str, bytes]:
    """A valid frame of some kind, truncated, extended, or with a byte flipped, replaced, inserted or deleted."""
    name = draw(st.sampled_from(names))
    data = VALID_FRAMES[name]
    kind = draw(st.sampled_from(["truncate", "extend", "flip", "replace", "insert", "delete"]))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        mutated = data[:at]
    elif kind == "extend":
        mutated = data + draw(st.binary(min_size=1, max_size=40))
    elif kind == "flip":
        mutated = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
    elif kind == "replace":
        mutated = data[:at] + bytes([draw(st.integers(0, 255).filter(lambda b: b != data[at]))]) + data[at + 1:]
    elif kind == "insert":
        mutated = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at:]
    else:
        mutated = data[:at] + data[at + 1:]
    return f"{name}/{kind}", mutated


@st.composite
def wire_mutations(draw, names=FRAME_NAMES) -> tuple[str, bytes]:
    """A valid frame with one element, anywhere in its tree, replaced by a value of any type and shape."""
    name = draw(st.sampled_from(names))
    wire = msgpack.unpackb(VALID_FRAMES[name], raw=False, use_list=True)
    parent, index, node, depth = None, 0, wire, 0
    while isinstance(node, list) and node and draw(st.integers(0, 3)) > 0:
        parent, index = node, draw(st.integers(0, len(node) - 1))
        node, depth = node[index], depth + 1
    replacement = draw(WIRE_VALUES)
    if parent is None:
        return f"{name}/whole", pack(replacement)
    parent[index] = replacement
    return f"{name}/depth {depth}", pack(wire)


MUTATED_FRAMES = byte_mutations() | wire_mutations()


def test_every_valid_frame_decodes_to_its_kind():
    for name, data in VALID_FRAMES.items():
        message = decode_frame(data)
        content = message.message if isinstance(message, SignedMessage) else message
        assert name.split()[0] == type(content).__name__


@settings(FUZZ, max_examples=500)
@given(st.binary(max_size=2_048) | FRAME_SHAPED | WIRE_VALUES.map(pack))
def test_decode_frame_returns_a_message_or_raises_invalid_message_on_any_bytes(data):
    decode_or_none(data)


@settings(FUZZ, max_examples=500)
@given(MUTATED_FRAMES)
def test_decode_frame_returns_a_message_or_raises_invalid_message_on_mutated_frames(mutation):
    name, data = mutation
    event(f"{name.split('/')[1]}: {'refused' if decode_or_none(data) is None else 'decoded'}")


def test_invalid_every_truncation_and_extension_of_a_valid_frame():
    for name, data in VALID_FRAMES.items():
        for end in range(len(data)):
            with pytest.raises(InvalidMessage):
                decode_frame(data[:end])
        for extra in (b"\x00", b"\xc0", data[:1], data):
            with pytest.raises(InvalidMessage, match="trailing bytes"):
                decode_frame(data + extra)


def test_invalid_frame_over_the_size_limit_is_refused_before_parsing():
    count_max = limits.p2p_frame_bytes_max // limits.tx_bytes_max  # every field within its own limits
    largest = encode_service(TxBatch((bytes(limits.tx_bytes_max),) * count_max))
    too_large = encode_service(TxBatch((bytes(limits.tx_bytes_max),) * (count_max + 1)))
    assert len(largest) <= limits.p2p_frame_bytes_max < len(too_large)
    assert isinstance(decode_frame(largest), TxBatch)
    with pytest.raises(InvalidMessage, match="more than the limit"):
        decode_frame(too_large)
    with pytest.raises(InvalidMessage, match="more than the limit"):
        decode_frame(VALID_FRAMES["Prepare"] + bytes(limits.p2p_frame_bytes_max))
    driver = new_node()
    assert deliver(driver, too_large) == "dropped: malformed"


def test_invalid_deeply_nested_or_lying_length_frames():
    for data in (b"\x91" * 100_000 + b"\xc0",  # nesting deeper than the parser's stack
                 b"\xdd\xff\xff\xff\xff",  # an array header claiming 2**32 - 1 items
                 b"\xc6\xff\xff\xff\xff",  # a bin header claiming 4 GiB
                 b"\xc7\x00\xff",  # an empty timestamp extension
                 b"\x81\xa1a\x00", b"\xa1\xff"):  # a map; invalid UTF-8
        with pytest.raises(InvalidMessage):
            decode_frame(data)


# --- 2. the driver's handlers --------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=512) | FRAME_SHAPED)
def test_driver_counts_random_frames_and_keeps_its_chain(data):
    driver = new_node()
    before = chain_state(driver)
    event(deliver(driver, data))
    assert chain_state(driver) == before


@FUZZ
@given(MUTATED_FRAMES)
def test_driver_counts_mutated_frames_of_every_kind_and_keeps_its_chain(mutation):
    name, data = mutation
    driver = new_node()
    before = chain_state(driver)
    outcome = deliver(driver, data)
    event(f"{name.split('/')[0]}: {outcome}")
    assert chain_state(driver) == before  # not even a SyncResponse: nobody asked for one
    if isinstance(decode_or_none(data), SignedMessage) and data != VALID_FRAMES[name.split("/")[0]]:
        assert outcome.startswith("dropped"), outcome  # a changed byte breaks the signature


@settings(FUZZ, max_examples=100)
@given(byte_mutations(["SyncResponse"]) | wire_mutations(["SyncResponse"]))
def test_driver_applies_only_what_checks_out_from_a_mutated_sync_response_it_asked_for(mutation):
    _, data = mutation
    driver = new_node()
    deliver(driver, encode_service(Status(2, 0)))  # PEER claims height 2: the node asks it for blocks
    assert driver.sync.is_awaited(PEER)
    outcome = deliver(driver, data)
    height = driver.app.head.height
    assert height == 0 or driver.app.head.block_hash == header_hash(CERTIFIED[height - 1].block.header)
    event(outcome.split(":")[0] + (" (some applied)" if height and outcome.startswith("dropped") else ""))


HEIGHTS = st.one_of(st.just(1), st.just(1), st.sampled_from([0, 2, U64_MAX]), st.integers(0, U64_MAX))
"""Mostly the node's height 1 (where messages reach the core's checks), else stale, next, or any."""
VIEWS = st.one_of(st.integers(0, 3), st.sampled_from([FUTURE_VIEWS_MAX, FUTURE_VIEWS_MAX + 1, U64_MAX]),
                  st.integers(0, U64_MAX))
HASHES = st.sampled_from([PROPOSAL_HASH, bytes(32)]) | st.binary(min_size=32, max_size=32)
NAMED_BLOCKS = [
    PROPOSAL,
    dataclasses.replace(PROPOSAL, transactions=()),  # body shortened under the same header
    dataclasses.replace(PROPOSAL, header=dataclasses.replace(PROPOSAL.header, view=1)),
    dataclasses.replace(PROPOSAL, header=dataclasses.replace(PROPOSAL.header, proposer=VALIDATORS[2].address)),
    dataclasses.replace(PROPOSAL, header=dataclasses.replace(PROPOSAL.header, state_root=bytes(32))),
    CERTIFIED[0].block,  # a real block, by the wrong proposer for (1, 0)
]
BLOCKS = st.sampled_from(NAMED_BLOCKS) | instances(Block)
CERTIFICATES = st.sampled_from([
    prepared_certificate(PROPOSAL),
    prepared_certificate(PROPOSAL, signers=(1, 2)),
    prepared_certificate(PROPOSAL, signers=(1, 1, 2)),
    prepared_certificate(PROPOSAL, forger=OUTSIDER),
    prepared_certificate(PROPOSAL, view=1),
]) | instances(PreparedCertificate)
VIEW_CHANGE_SETS = st.sampled_from([(), view_changes(1), view_changes(1, senders=(1, 2)), view_changes(2),
                                    view_changes(1, forger=OUTSIDER), view_changes(1, senders=(1, 1, 2)),
                                    view_changes(1, prepared=prepared_certificate(PROPOSAL), prepared_block=PROPOSAL)])
MESSAGES = st.one_of(
    st.builds(Prepare, HEIGHTS, VIEWS, HASHES),
    st.builds(Commit, HEIGHTS, VIEWS, HASHES),
    st.builds(PrePrepare, HEIGHTS, VIEWS, BLOCKS),
    st.builds(ViewChange, HEIGHTS, VIEWS, st.none() | CERTIFICATES, st.none() | BLOCKS),
    st.builds(NewView, HEIGHTS, VIEWS, VIEW_CHANGE_SETS, st.none() | BLOCKS),
)
SETUPS = {
    "fresh": [],
    "proposal seen": [VALID_FRAMES["PrePrepare"]],
    "in view 1": [VALID_FRAMES["NewView"]],
}
"""Frames (all valid) that put the node in a state before the fuzzed one arrives."""


def node_after(setup: str) -> Driver:
    driver = new_node()
    for data in SETUPS[setup]:
        assert deliver(driver, data).startswith("kept")
    return driver


@settings(FUZZ, max_examples=400)
@given(st.sampled_from(sorted(SETUPS)), st.integers(1, 3), MESSAGES)
def test_driver_counts_or_keeps_validly_signed_messages_with_any_height_view_hash_or_block(setup, sender, message):
    """Validators 1-3 sign what they like (a Byzantine validator may); one message never changes the chain."""
    driver = node_after(setup)
    before = chain_state(driver)
    outcome = deliver(driver, frame(sender, message))
    event(f"{type(message).__name__}: {outcome}")
    assert chain_state(driver) == before


FORGERIES = {
    "outsider signs as a validator": lambda index, message: frame(index, message, signer=OUTSIDER),
    "validator signs as another": lambda index, message: frame(index, message, signer=VALIDATORS[(index % 3) + 1]),
    "index beyond the validators": lambda index, message: encode_message(
        dataclasses.replace(signed(index, message), validator_index=4 + index)),
    "signed for another network with the same chain id": lambda index, message: frame(
        index, message, domain=other_network(DOMAIN)),
    "signed for another chain id": lambda index, message: frame(index, message, domain=OTHER_CHAIN.signing_domain),
}


@settings(FUZZ, max_examples=150)
@given(st.sampled_from(sorted(SETUPS)), st.sampled_from(sorted(FORGERIES)), st.integers(0, 3), MESSAGES)
def test_driver_counts_every_mis_signed_message_as_bad_signature_or_stale(setup, forgery, index, message):
    driver = node_after(setup)
    before = chain_state(driver)
    outcome = deliver(driver, FORGERIES[forgery](index, message))
    expected = "dropped: stale" if message.height < driver.replica.height else "dropped: bad_signature"
    assert outcome == expected
    assert chain_state(driver) == before


def block_for(view: int, proposer: int, **header_changes) -> Block:
    """PROPOSAL's body with a header for another (view, proposer)."""
    header = dataclasses.replace(PROPOSAL.header, view=view, proposer=VALIDATORS[proposer].address, **header_changes)
    return dataclasses.replace(PROPOSAL, header=header)


WRONG_SIGNED_MESSAGES = [
    # (what it is, setup, [(sender, message)] delivered in order, outcome of the last one)
    ("prepare for a committed height", "fresh", [(2, Prepare(0, 0, PROPOSAL_HASH))], "dropped: stale"),
    ("prepare for a later height", "fresh", [(2, Prepare(2, 0, PROPOSAL_HASH))], "dropped: future"),
    ("commit for a later height", "fresh", [(2, Commit(2, 0, PROPOSAL_HASH))], "kept: evidence of a later height"),
    ("prepare beyond the future views kept", "fresh", [(2, Prepare(1, FUTURE_VIEWS_MAX + 1, PROPOSAL_HASH))],
     "dropped: far_future_view"),
    ("view change to view 2**64-1", "fresh", [(2, ViewChange(1, U64_MAX, None, None))], "dropped: far_future_view"),
    ("new view for view 2**64-1", "fresh", [(2, NewView(1, U64_MAX, (), None))], "dropped: far_future_view"),
    ("prepare at the last future view kept", "fresh", [(2, Prepare(1, FUTURE_VIEWS_MAX, PROPOSAL_HASH))],
     "kept: prepare collected"),
    ("a second, lower future view", "fresh", [(2, Prepare(1, 9, PROPOSAL_HASH)), (2, Prepare(1, 8, PROPOSAL_HASH))],
     "dropped: superseded_future_vote"),
    ("prepare for a block never seen", "fresh", [(2, Prepare(1, 0, bytes(32)))], "kept: prepare collected"),
    ("two prepares for one view", "fresh", [(2, Prepare(1, 0, PROPOSAL_HASH)), (2, Prepare(1, 0, bytes(32)))],
     "dropped: conflicting_vote"),
    ("prepare for a view the node left", "in view 1", [(3, Prepare(1, 0, PROPOSAL_HASH))], "dropped: stale_view"),
    ("proposal from a validator that is not primary", "fresh", [(2, PrePrepare(1, 0, block_for(0, 2)))],
     "dropped: not_primary"),
    ("proposal for another view than the node's", "fresh", [(2, PrePrepare(1, 1, block_for(1, 2)))],
     "dropped: wrong_view"),
    ("proposal whose header names another view", "fresh", [(1, PrePrepare(1, 0, block_for(1, 1)))],
     "dropped: malformed_proposal"),
    ("proposal with a shortened body", "fresh", [(1, PrePrepare(1, 0, NAMED_BLOCKS[1]))],
     "dropped: malformed_proposal"),
    ("proposal whose execution does not match its header", "fresh", [(1, PrePrepare(1, 0, NAMED_BLOCKS[4]))],
     "dropped: invalid_block"),
    ("a second proposal for one view", "proposal seen", [(1, PrePrepare(1, 0, block_for(0, 1, timestamp_ms=1)))],
     "dropped: equivocation"),
    ("view change carrying a block without a certificate", "fresh", [(2, ViewChange(1, 1, None, PROPOSAL))],
     "dropped: bad_prepared_certificate"),
    ("view change with a certificate of two signatures", "fresh",
     [(2, ViewChange(1, 1, prepared_certificate(PROPOSAL, signers=(1, 2)), PROPOSAL))],
     "dropped: bad_prepared_certificate"),
    ("view change with a forged certificate", "fresh",
     [(2, ViewChange(1, 1, prepared_certificate(PROPOSAL, forger=OUTSIDER), PROPOSAL))],
     "dropped: bad_prepared_certificate"),
    ("view change with a certificate of its own view", "fresh",
     [(2, ViewChange(1, 1, prepared_certificate(PROPOSAL, view=1), PROPOSAL))], "dropped: bad_prepared_certificate"),
    ("view change to a view the node left", "in view 1", [(3, ViewChange(1, 0, None, None))],
     "dropped: stale_view_change"),
    ("new view from a validator that is not its primary", "fresh", [(3, NewView(1, 1, view_changes(1), None))],
     "dropped: not_primary"),
    ("new view for the current view", "fresh", [(1, NewView(1, 0, view_changes(0), None))],
     "dropped: stale_new_view"),
    ("new view with two view changes", "fresh", [(2, NewView(1, 1, view_changes(1, senders=(1, 2)), None))],
     "dropped: bad_new_view"),
    ("new view with a forged view change", "fresh", [(2, NewView(1, 1, view_changes(1, forger=OUTSIDER), None))],
     "dropped: bad_new_view"),
    ("new view listing a validator twice", "fresh",
     [(2, NewView(1, 1, view_changes(1, senders=(1, 1, 3)), None))], "dropped: bad_new_view"),
    ("new view dropping the prepared block", "fresh",
     [(2, NewView(1, 1, view_changes(1, prepared=prepared_certificate(PROPOSAL), prepared_block=PROPOSAL), None))],
     "dropped: new_view_drops_prepared_block"),
    ("new view with a block its primary did not make", "fresh",
     [(2, NewView(1, 1, view_changes(1), block_for(1, 1)))], "dropped: malformed_proposal"),
]


@pytest.mark.parametrize("case", WRONG_SIGNED_MESSAGES, ids=[case[0] for case in WRONG_SIGNED_MESSAGES])
def test_invalid_validly_signed_messages_are_dropped_with_their_reason(case):
    _, setup, messages, expected = case
    driver = node_after(setup)
    before = chain_state(driver)
    outcomes = [deliver(driver, frame(sender, message)) for sender, message in messages]
    assert outcomes[-1] == expected
    assert chain_state(driver) == before


def consensus_frames() -> list[bytes]:
    """What validators 1 and 2 send for the node to commit PROPOSAL at height 1 (with its own votes)."""
    return [VALID_FRAMES["PrePrepare"], frame(1, Prepare(1, 0, PROPOSAL_HASH)), frame(2, Prepare(1, 0, PROPOSAL_HASH)),
            frame(1, Commit(1, 0, PROPOSAL_HASH)), frame(2, Commit(1, 0, PROPOSAL_HASH))]


def test_replayed_frames_change_nothing_before_the_commit_and_are_counted_stale_after():
    driver = new_node()
    frames = consensus_frames()
    for data in frames[:-1]:
        assert deliver(driver, data).startswith("kept")
        sent, votes = len(driver.transport.sent), repr(driver.replica.round)
        # A replay of what the node holds already is silent: not a fault (links duplicate), and nothing is re-sent.
        assert deliver(driver, data).startswith("kept")
        assert (len(driver.transport.sent), repr(driver.replica.round)) == (sent, votes)
    deliver(driver, frames[-1])
    assert driver.app.head.height == 1 and driver.app.head.block_hash == PROPOSAL_HASH
    for data in frames:
        assert deliver(driver, data) == "dropped: stale"
    assert driver.app.head.height == 1


def test_replayed_view_change_messages():
    driver = new_node()
    assert deliver(driver, VALID_FRAMES["ViewChange"]) == "kept: view change collected"
    assert deliver(driver, VALID_FRAMES["ViewChange"]) == "kept: view change collected"  # silent, nothing re-sent
    assert deliver(driver, VALID_FRAMES["NewView"]) == "kept: view entered"
    assert deliver(driver, VALID_FRAMES["NewView"]) == "dropped: stale_new_view"


def test_replayed_transaction_batch_is_known_not_rejected():
    driver = new_node()
    assert deliver(driver, VALID_FRAMES["TxBatch"]) == "kept: transactions in the mempool"
    assert deliver(driver, VALID_FRAMES["TxBatch"]) == "kept: transactions in the mempool"
    assert driver.app.rejections == {}


@FUZZ
@given(st.lists(st.binary(max_size=300) | st.just(payment(0)[:-1] + b"\x00"),
                min_size=1, max_size=5))
def test_forwarded_garbage_transactions_are_each_counted_as_rejected(transactions):
    driver = new_node()
    before = chain_state(driver)
    outcome = deliver(driver, encode_service(TxBatch(tuple(transactions))))
    assert outcome.startswith("rejected")
    assert sum(driver.app.rejections.values()) == len(transactions)
    assert len(driver.app.mempool) == 0 and chain_state(driver) == before
    event(outcome)


GARBAGE_BATCH = TxBatch((b"not a transaction", payment(0)[:-1] + b"\x00"))
"""A forwarded batch of one undecodable transaction and one with a broken signature."""


def open_with_batch_verifier(raws) -> list:
    """What the runner's worker verification hands Driver.admit_forwarded (node/consensus/runner.py)."""
    verifier = BatchVerifier(DOMAIN, workers=1, processes=False)
    try:
        return asyncio.run(verifier.open_many(raws))
    finally:
        verifier.close()


def test_forwarded_garbage_refused_by_the_batch_verifier_is_counted():
    driver = new_node()
    driver.admit_forwarded(GARBAGE_BATCH, open_with_batch_verifier(GARBAGE_BATCH.transactions))
    assert len(driver.app.mempool) == 0
    assert sum(driver.app.rejections.values()) + sum(drop_counts(driver).values()) == len(GARBAGE_BATCH.transactions)


# --- block sync ----------------------------------------------------------------------------------

def node_awaiting_blocks(peer: bytes = PEER) -> Driver:
    """A node that `peer` told of height 2, so it asked `peer` for blocks."""
    driver = new_node()
    assert deliver(driver, encode_service(Status(2, 0)), peer) == "kept: height claim"
    assert any(target == peer and isinstance(m, SyncRequest) for target, m in sent_messages(driver))
    return driver


def with_certificate(certified: CertifiedBlock, **changes) -> CertifiedBlock:
    return dataclasses.replace(certified, certificate=dataclasses.replace(certified.certificate, **changes))


def forged_certificate(certified: CertifiedBlock) -> CommitCertificate:
    """The certificate's votes re-signed by the outsider under the validators' indexes."""
    certificate = certified.certificate
    vote = CommitVote(certificate.height, certificate.view, certificate.block_hash)
    return dataclasses.replace(certificate, signatures=tuple(
        CommitSignature(s.validator_index, sign_commit(OUTSIDER, DOMAIN, vote)) for s in certificate.signatures))


BAD_SYNC_BLOCKS = {
    "body shortened": dataclasses.replace(CERTIFIED[0], block=dataclasses.replace(CERTIFIED[0].block,
                                                                                  transactions=())),
    "certificate of two signatures": with_certificate(CERTIFIED[0],
                                                      signatures=CERTIFIED[0].certificate.signatures[:2]),
    "certificate listing a validator twice": with_certificate(
        CERTIFIED[0], signatures=CERTIFIED[0].certificate.signatures[:2] + CERTIFIED[0].certificate.signatures[:1]),
    "certificate signed by an outsider": dataclasses.replace(CERTIFIED[0],
                                                             certificate=forged_certificate(CERTIFIED[0])),
    "certificate of another block": with_certificate(CERTIFIED[0], block_hash=bytes(32)),
    "block of another chain": certified_chain(OTHER_CHAIN, with_transfer=False)[0],
    "block of another genesis with the same chain id": certified_chain(
        make_genesis(validators=4, users={"carol": {"CNY": 5}}), with_transfer=False)[0],
}


@pytest.mark.parametrize("name", sorted(BAD_SYNC_BLOCKS))
def test_invalid_sync_response_block_is_dropped_and_never_committed(name):
    driver = node_awaiting_blocks()
    outcome = deliver(driver, encode_service(SyncResponse((BAD_SYNC_BLOCKS[name],) + tuple(CERTIFIED[1:]))))
    assert outcome == "dropped: bad_sync_block"
    assert chain_state(driver) == chain_state(new_node())
    assert not driver.sync.is_awaited(PEER)


def test_unsolicited_or_replayed_sync_responses_are_dropped_unread():
    response = VALID_FRAMES["SyncResponse"]
    assert deliver(new_node(), response) == "dropped: unsolicited_sync_response"
    driver = node_awaiting_blocks(VALIDATORS[2].public_key)
    assert deliver(driver, response, sender=PEER) == "dropped: unsolicited_sync_response"  # not the peer asked
    assert driver.app.head.height == 0
    assert deliver(driver, response, sender=VALIDATORS[2].public_key) == "kept: blocks applied"
    assert driver.app.head.height == 2
    assert deliver(driver, response, sender=VALIDATORS[2].public_key) == "dropped: unsolicited_sync_response"
    assert driver.app.head.height == 2


@pytest.mark.parametrize("late_answer, served", [("the blocks it committed", True), ("a forged body", False)])
def test_a_silent_peer_is_backed_up_after_a_hedge_and_a_late_honest_answer_is_not_a_failure(late_answer, served):
    """The first peer asked stays silent; after the hedge delay the node asks a second peer too and applies its
    answer. Then the first peer's late answer comes: the same blocks are service, a forged body is not."""
    now = [NOW_MS]
    driver = new_node(lambda: now[0])
    second = VALIDATORS[2].public_key
    assert deliver(driver, encode_service(Status(2, 0)), PEER) == "kept: height claim"
    sent_before = len(driver.transport.sent)
    assert deliver(driver, encode_service(Status(2, 0)), second) == "kept: height claim"
    assert not any(isinstance(m, SyncRequest) for _, m in sent_messages(driver, sent_before))  # too early
    now[0] += sync_hedge_ms
    driver.on_timer(SYNC_TIMER, 1, 0)
    assert [peer for peer, m in sent_messages(driver, sent_before) if isinstance(m, SyncRequest)] == [second]
    assert deliver(driver, VALID_FRAMES["SyncResponse"], second) == "kept: blocks applied"
    assert driver.app.head.height == 2 and driver.sync.is_awaited(PEER)
    late = tuple(CERTIFIED) if served else (BAD_SYNC_BLOCKS["body shortened"],)
    outcome = deliver(driver, encode_service(SyncResponse(late)), PEER)
    assert outcome == ("kept: nothing at the next height (uncounted: see test_sync_response_without_the_next_block_"
                       "is_counted)" if served else "dropped: sync_block_not_next")
    assert not driver.sync.is_awaited(PEER)
    assert (driver.sync.peers[PEER].failures == 0) == served
    assert driver.app.head.block_hash == header_hash(CERTIFIED[1].block.header)


def test_sync_response_without_the_next_block_is_counted():
    driver = node_awaiting_blocks()
    outcome = deliver(driver, encode_service(SyncResponse(tuple(CERTIFIED[1:]))))  # block 2 for a node at 0
    assert outcome.startswith("dropped")


def test_sync_requests_beyond_the_rate_limit_are_dropped():
    driver = new_node()
    burst = limits.sync_answers_per_peer_per_s_max
    outcomes = Counter(deliver(driver, encode_service(SyncRequest(1, 16))) for _ in range(burst + 1))
    assert outcomes == {"kept: answered": burst, "dropped: sync_request_rate": 1}
    for from_height in (0, 2, U64_MAX):  # nothing to serve: an empty answer, at once
        assert deliver(new_node(), encode_service(SyncRequest(from_height, 16))) == "kept: answered"


# --- 3. the counters reach /metrics --------------------------------------------------------------

METRICS_FRAMES = [
    (b"\x00garbage", "malformed"),
    (frame(1, Prepare(1, 0, PROPOSAL_HASH), signer=OUTSIDER), "bad_signature"),
    (frame(2, Prepare(0, 0, PROPOSAL_HASH)), "stale"),
    (frame(2, Prepare(1, FUTURE_VIEWS_MAX + 1, PROPOSAL_HASH)), "far_future_view"),
    (frame(2, PrePrepare(1, 0, block_for(0, 2))), "not_primary"),
    (VALID_FRAMES["SyncResponse"], "unsolicited_sync_response"),
    (frame(1, Prepare(1, 0, PROPOSAL_HASH), signer=OUTSIDER), "bad_signature"),
]


async def metrics_after_bad_frames() -> tuple[Counter, dict[str, float]]:
    """A validator's runner, wired as node/main.py wires it (batch verifier included), on the memory network;
    validator 1 sends it METRICS_FRAMES. Returns the drop counts and the dropped counter samples of /metrics."""
    hub = MemoryHub(seed=1)
    validator_keys = [v.public_key for v in VALIDATORS]
    ledger = new_ledger()
    network = MemoryNetwork(hub, VALIDATORS[0].public_key, validator_keys)
    verifier = BatchVerifier(DOMAIN, workers=1, processes=False)
    runner = PbftRunner(ledger, network, VALIDATORS[0], MemoryVoteLog(), verifier=verifier)
    peer = MemoryNetwork(hub, PEER, validator_keys)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(network.run()), group.create_task(peer.run()), group.create_task(runner.run())]
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while not hub.linked(PEER, VALIDATORS[0].public_key):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.005)
            for data, _ in METRICS_FRAMES:
                peer.send(VALIDATORS[0].public_key, data)
            while sum(drop_counts(runner.driver).values()) < len(METRICS_FRAMES):
                assert asyncio.get_running_loop().time() < deadline, drop_counts(runner.driver)
                await asyncio.sleep(0.005)
            families = {f.name: f for f in text_string_to_metric_families(Metrics(ledger, runner.info).render()
                                                                          .decode())}
        finally:
            for task in tasks:
                task.cancel()
            verifier.close()
    dropped = {s.labels["reason"]: s.value for s in families["paychain_consensus_messages_dropped"].samples
               if s.name.endswith("_total")}
    return drop_counts(runner.driver), dropped


def test_metrics_show_every_dropped_frame_by_reason():
    counts, dropped = asyncio.run(asyncio.wait_for(metrics_after_bad_frames(), 30))
    expected = Counter(reason for _, reason in METRICS_FRAMES)
    assert counts == expected  # driver and replica reasons together (the runner's info() merges the two tables)
    assert dropped == {reason: float(count) for reason, count in expected.items()}


def test_metrics_show_forwarded_transactions_refused_by_rule():
    driver = new_node()
    assert deliver(driver, encode_service(GARBAGE_BATCH)) == "rejected: bad_signature, malformed"
    families = {f.name: f for f in text_string_to_metric_families(Metrics(driver.app).render().decode())}
    rejected = {s.labels["rule"]: s.value for s in families["paychain_txs_rejected"].samples
                if s.name.endswith("_total")}
    assert rejected == {"bad_signature": 1.0, "malformed": 1.0}
