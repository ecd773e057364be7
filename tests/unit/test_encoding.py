"""Canonical encoding (node/encoding.py): round trips, and every rule the strict decoder enforces."""

from __future__ import annotations

import dataclasses
import struct

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from node import encoding
from node.blocks import Block, CommitCertificate, CommitSignature, CommitVote, Event, Header, Receipt, Receipts
from node.encoding import DecodeError, decode, encode, pack
from node.genesis import AssetParams, ChainParams
from node.state import ValidatorInfo
from node.state import Account, AccountProof, Balance, ProofEntry, RechargeRecord, Supply
from node.storage.chain import ChainHead, TxRecord
from node.transactions import BODY_CLASSES, RechargePost, SignedTransaction, Transaction, Transfer
from tests.unit.strategies import instances

ENCODABLE_CLASSES = [
    Transaction, SignedTransaction, *BODY_CLASSES, Header, Block, Event, Receipt, Receipts, CommitVote,
    CommitSignature, CommitCertificate, Account, Balance, RechargeRecord, Supply, ProofEntry, AccountProof,
    ChainHead, TxRecord, AssetParams, ValidatorInfo, ChainParams,
]
LIMIT_BYTES = 16 * 1024 * 1024


def wide_pack(wire) -> bytes:
    """A valid msgpack encoding of `wire` that uses the widest form of every value (never canonical)."""
    if wire is None:
        return b"\xc0"
    if wire is True or wire is False:
        return b"\xc3" if wire else b"\xc2"
    if isinstance(wire, int):
        return b"\xcf" + struct.pack(">Q", wire)
    if isinstance(wire, str):
        data = wire.encode()
        return b"\xdb" + struct.pack(">I", len(data)) + data
    if isinstance(wire, bytes):
        return b"\xc6" + struct.pack(">I", len(wire)) + wire
    if isinstance(wire, (list, tuple)):
        return b"\xdd" + struct.pack(">I", len(wire)) + b"".join(wide_pack(item) for item in wire)
    raise AssertionError(type(wire))


# --- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ENCODABLE_CLASSES, ids=lambda cls: cls.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_every_encodable_dataclass_round_trips(cls, data):
    value = data.draw(instances(cls))
    encoded = encode(value)
    assert decode(cls, encoded, LIMIT_BYTES) == value
    assert encode(decode(cls, encoded, LIMIT_BYTES)) == encoded


@pytest.mark.parametrize("body_class", BODY_CLASSES, ids=lambda cls: cls.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_transaction_with_each_body_kind_round_trips(body_class, data):
    template = data.draw(instances(Transaction))
    transaction = dataclasses.replace(template, body=data.draw(instances(body_class)))
    signed = SignedTransaction(transaction, data.draw(st.binary(min_size=64, max_size=64)))
    assert decode(Transaction, encode(transaction), LIMIT_BYTES) == transaction
    decoded = decode(SignedTransaction, encode(signed), LIMIT_BYTES)
    assert decoded == signed and type(decoded.transaction.body) is body_class


@pytest.mark.parametrize("cls", [Transaction, Header, Account, RechargeRecord, Receipt, CommitCertificate],
                         ids=lambda cls: cls.__name__)
@settings(max_examples=30)
@given(data=st.data())
def test_invalid_non_canonical_wide_encoding_of_any_value(cls, data):
    value = data.draw(instances(cls))
    wide = wide_pack(encoding.wire_of(value))
    assert msgpack.unpackb(wide, raw=False) is not None  # it is valid msgpack, just not the canonical form
    with pytest.raises(DecodeError, match="not the canonical encoding"):
        decode(cls, wide, LIMIT_BYTES)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(data):
    for cls in (SignedTransaction, Header, Block, Receipt, CommitCertificate, Account, RechargeRecord,
                AccountProof):
        try:
            value = decode(cls, data, LIMIT_BYTES)
        except DecodeError:
            continue
        assert encode(value) == data


@settings(max_examples=300)
@given(instances(SignedTransaction), st.data())
def test_mutated_encodings_raise_only_decode_error_or_decode_canonically(signed, data):
    encoded = bytearray(encode(signed))
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            encoded[position] = data.draw(st.integers(0, 255))
        elif action == "delete" and len(encoded) > 1:
            del encoded[position]
        else:
            encoded.insert(position, data.draw(st.integers(0, 255)))
    try:
        value = decode(SignedTransaction, bytes(encoded), LIMIT_BYTES)
    except DecodeError:
        return
    assert encode(value) == bytes(encoded)


def test_encoding_is_a_fixed_order_array_not_a_map():
    assert encode(Balance("CNY", 5)) == b"\x92\xa3CNY\x05"


# --- decoder rules: one test per rule ------------------------------------------------------------

def test_invalid_wrong_type_string_for_integer():
    with pytest.raises(DecodeError, match=r"Balance.amount: expected an integer"):
        decode(Balance, pack(["CNY", "5"]), 100)


def test_invalid_wrong_type_float_for_integer():
    with pytest.raises(DecodeError, match="expected an integer"):
        decode(Balance, pack(["CNY", 5.0]), 100)


def test_invalid_wrong_type_boolean_is_not_an_integer():
    with pytest.raises(DecodeError, match="expected an integer"):
        decode(Supply, pack([True]), 100)


def test_invalid_wrong_type_string_for_bytes():
    with pytest.raises(DecodeError, match="Transfer.recipient: expected bytes"):
        decode(Transfer, pack(["a" * 20, "CNY", 5]), 100)


def test_invalid_wrong_type_bytes_for_string():
    with pytest.raises(DecodeError, match="Balance.asset: expected a string"):
        decode(Balance, pack([b"CNY", 5]), 100)


def test_invalid_wrong_type_integer_for_boolean():
    receipt = Receipt(bytes(32), True, "", "", "CNY", 1, ())
    wire = encoding.wire_of(receipt)
    wire[1] = 1
    with pytest.raises(DecodeError, match="Receipt.success: expected a boolean"):
        decode(Receipt, pack(wire), 1000)


def test_invalid_wrong_type_nil_for_field():
    with pytest.raises(DecodeError, match="expected bytes"):
        decode(ProofEntry, pack([None, bytes(32)]), 100)


def test_invalid_wrong_type_sequence_not_an_array():
    with pytest.raises(DecodeError, match="expected an array"):
        decode(Receipts, pack([b"not an array"]), 100)


def test_invalid_struct_not_an_array():
    with pytest.raises(DecodeError, match="Supply must be an array"):
        decode(Supply, pack(5), 100)


@pytest.mark.parametrize("wire", [[], ["CNY"], ["CNY", 5, 6]])
def test_invalid_struct_wrong_number_of_fields(wire):
    with pytest.raises(DecodeError, match=f"Balance has 2 fields, got {len(wire)}"):
        decode(Balance, pack(wire), 100)


@pytest.mark.parametrize("amount", [2**63, 2**64 - 1, -1])
def test_invalid_integer_out_of_range(amount):
    with pytest.raises(DecodeError, match=r"integer out of range 0\.\.9223372036854775807"):
        decode(Balance, pack(["CNY", amount]), 100)


def test_largest_amount_is_accepted():
    assert decode(Balance, pack(["CNY", 2**63 - 1]), 100).amount == 2**63 - 1


def test_invalid_oversize_fixed_size_bytes():
    for size in (19, 21, 0):
        with pytest.raises(DecodeError, match=f"Transfer.recipient: expected 20 bytes, got {size}"):
            decode(Transfer, pack([bytes(size), "CNY", 5]), 100)


def test_invalid_oversize_bytes_field():
    with pytest.raises(DecodeError, match="Account.kyc_hash: at most 32 bytes, got 33"):
        decode(Account, pack([0, 0, bytes(33), bytes(20), []]), 1000)


def test_invalid_oversize_text_field():
    with pytest.raises(DecodeError, match="Balance.asset: at most 8 bytes"):
        decode(Balance, pack(["ABCDEFGHI", 5]), 100)


def test_invalid_oversize_text_counts_utf8_bytes_not_characters():
    memo = "é" * 65  # 65 characters, 130 bytes
    with pytest.raises(DecodeError, match="reference: at most 128 bytes"):
        decode(RechargePost, pack([bytes(32), memo]), 1000)


def test_invalid_oversize_sequence():
    signatures = [[i, bytes(64)] for i in range(257)]
    with pytest.raises(DecodeError, match="at most 256 items"):
        decode(CommitCertificate, pack([1, 0, bytes(32), signatures]), 10**6)


def test_invalid_oversize_whole_encoding():
    encoded = encode(Balance("CNY", 5))
    with pytest.raises(DecodeError, match="more than the limit of 5"):
        decode(Balance, encoded, 5)
    assert decode(Balance, encoded, len(encoded)) == Balance("CNY", 5)


def test_invalid_non_printable_ascii_text():
    for asset in ("C\nY", "CN\x00", "CNÝ"):
        with pytest.raises(DecodeError, match="printable ASCII only"):
            decode(Balance, pack([asset, 5]), 100)


def test_invalid_trailing_bytes():
    encoded = encode(Balance("CNY", 5))
    for extra in (b"\x00", b"\xc0", encoded):
        with pytest.raises(DecodeError, match="trailing bytes"):
            decode(Balance, encoded + extra, 100)


def test_invalid_truncated_encoding():
    encoded = encode(Balance("CNY", 5))
    for end in range(len(encoded)):
        with pytest.raises(DecodeError):
            decode(Balance, encoded[:end], 100)


def test_invalid_non_canonical_integer_wider_than_needed():
    canonical = encode(Supply(5))
    assert canonical == b"\x91\x05"
    for wide in (b"\x91\xcc\x05", b"\x91\xcd\x00\x05", b"\x91\xce\x00\x00\x00\x05", b"\x91\xcf" + bytes(7) + b"\x05",
                 b"\x91\xd0\x05"):
        with pytest.raises(DecodeError, match="Supply: not the canonical encoding"):
            decode(Supply, wide, 100)


def test_invalid_non_canonical_string_and_bytes_headers():
    # "CNY" as str8 instead of fixstr.
    with pytest.raises(DecodeError, match="not the canonical encoding"):
        decode(Balance, b"\x92\xd9\x03CNY\x05", 100)
    # a 32-byte value as bin16 instead of bin8.
    with pytest.raises(DecodeError, match="not the canonical encoding"):
        decode(ProofEntry, b"\x92\xc5\x00\x01k\xc5\x00\x20" + bytes(32), 100)


def test_invalid_non_canonical_array_header():
    with pytest.raises(DecodeError, match="not the canonical encoding"):
        decode(Balance, b"\xdc\x00\x02\xa3CNY\x05", 100)


def test_invalid_map_is_rejected():
    for data in (msgpack.packb({"asset": "CNY", "amount": 5}), msgpack.packb(["CNY", {"a": 1}])):
        with pytest.raises(DecodeError, match="malformed msgpack"):
            decode(Balance, data, 100)
    with pytest.raises(DecodeError, match="must be an array"):
        decode(Balance, msgpack.packb({}), 100)
    with pytest.raises(DecodeError, match="expected an integer"):
        decode(Balance, msgpack.packb(["CNY", {}]), 100)


def test_invalid_ext_type_is_rejected():
    with pytest.raises(DecodeError, match="malformed msgpack"):
        decode(Balance, msgpack.packb(["CNY", msgpack.ExtType(1, b"\x05")]), 100)


def test_invalid_utf8_in_string_is_rejected():
    with pytest.raises(DecodeError, match="malformed msgpack"):
        decode(Balance, b"\x92\xa2\xff\xfe\x05", 100)


@pytest.mark.parametrize("data", [bytearray(b"\x91\x05"), memoryview(b"\x91\x05"), "\x91\x05", None])
def test_invalid_input_that_is_not_bytes(data):
    with pytest.raises(DecodeError, match="expected bytes"):
        decode(Supply, data, 100)


def test_invalid_tagged_body_not_a_pair():
    transfer = encoding.wire_of(Transfer(bytes(20), "CNY", 5))
    wire = ["c", bytes(32), 0, "CNY", 1, [Transfer.TAG, transfer, 0]]
    with pytest.raises(DecodeError, match=r"Transaction.body: expected \[tag, fields\]"):
        decode(Transaction, pack(wire), 1000)


@pytest.mark.parametrize("tag", [0, max(cls.TAG for cls in BODY_CLASSES) + 1, 99, True, "1", None])
def test_invalid_tagged_body_unknown_kind(tag):
    transfer = encoding.wire_of(Transfer(bytes(20), "CNY", 5))
    wire = ["c", bytes(32), 0, "CNY", 1, [tag, transfer]]
    with pytest.raises(DecodeError, match="Transaction.body: unknown kind"):
        decode(Transaction, pack(wire), 1000)


def test_invalid_tagged_body_fields_of_another_kind():
    wire = ["c", bytes(32), 0, "CNY", 1, [Transfer.TAG, [bytes(32), "ref"]]]
    with pytest.raises(DecodeError, match="Transfer has 3 fields, got 2"):
        decode(Transaction, pack(wire), 1000)


def test_nested_error_names_the_field_path():
    header = encoding.wire_of(Header("c", 1, 0, bytes(32), bytes(20), 0, 0, bytes(32), bytes(32), bytes(32)))
    header[3] = bytes(31)
    with pytest.raises(DecodeError, match=r"Block\.header\.parent_hash: expected 32 bytes, got 31"):
        decode(Block, pack([header, []]), 10_000)


# --- helpers ------------------------------------------------------------------------------------

@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_fixed_width_integers_sort_like_numbers(a, b):
    assert encoding.decode_uint_be(encoding.encode_uint_be(a, 8)) == a
    assert (encoding.encode_uint_be(a, 8) < encoding.encode_uint_be(b, 8)) == (a < b)


def test_parse_hex_accepts_plain_and_prefixed():
    assert encoding.parse_hex("0xdead", "tx", 10) == b"\xde\xad"
    assert encoding.parse_hex("DEAD", "tx", 10) == b"\xde\xad"


def test_invalid_hex_not_a_string():
    with pytest.raises(DecodeError, match="tx must be a hex string"):
        encoding.parse_hex(b"dead", "tx", 10)


def test_invalid_hex_too_long():
    with pytest.raises(DecodeError, match="tx is longer than 2 bytes"):
        encoding.parse_hex("aabbcc", "tx", 2)


@pytest.mark.parametrize("text", ["abc", "zz", "0x0g"])
def test_invalid_hex_characters(text):
    with pytest.raises(DecodeError, match="tx is not valid hex"):
        encoding.parse_hex(text, "tx", 10)


@settings(max_examples=50)
@given(instances(TxRecord))
def test_array_with_an_encoded_tail_is_the_canonical_encoding(record):
    spliced = encoding.pack_array_with_encoded_tail([record.height, record.index, record.raw], encode(record.receipt))
    assert spliced == encode(record)
    assert decode(TxRecord, spliced, LIMIT_BYTES) == record
