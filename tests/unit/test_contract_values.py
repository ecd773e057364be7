"""Canonical encoding of contract values (node/encoding.py, "contract values"): round trips and every rule."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from node import limits
from node.encoding import (
    EXT_BIG_INT, EXT_DICT, EXT_TUPLE, DecodeError, EncodeError, _ext_header, contract_value_depth_max, decode_value,
    encode_value,
)

MAX_BYTES = 1 << 20
INT_LIMIT = 1 << limits.contract_int_bits_max

scalars = (st.none() | st.booleans()
           | st.integers(-INT_LIMIT + 1, INT_LIMIT - 1)
           | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, INT_LIMIT - 1,
                              -INT_LIMIT + 1, -(2**255), 2**255])
           | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
           | st.binary(max_size=20))
keys = st.booleans() | st.integers(-(2**61 - 2), 2**61 - 2) | st.text(max_size=8) | st.binary(max_size=8)
values = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=4) | st.lists(children, max_size=4).map(tuple)
                      | st.dictionaries(keys, children, max_size=4)),
    max_leaves=20,
)


def ext(code: int, payload: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, payload))


def nested_lists(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --- round trips -----------------------------------------------------------------------------

@settings(max_examples=300)
@given(value=values)
def test_every_value_round_trips_with_its_types(value):
    encoded = encode_value(value)
    decoded = decode_value(encoded, MAX_BYTES)
    assert repr(decoded) == repr(value)   # tuple vs list, True vs 1, dict order
    assert encode_value(decoded) == encoded


def test_known_encodings():
    assert encode_value(None) == b"\xc0"
    assert encode_value([1, "a", b"b", True]) == bytes.fromhex("9401a161c40162c3")
    assert encode_value((1, 2)) == bytes.fromhex("c70302920102")   # ext 2 around the array [1, 2]
    assert encode_value({"k": None}) == bytes.fromhex("d60392a16bc0")   # ext 3 around ["k", None]
    assert encode_value(2**64) == bytes.fromhex("c70901" "01" + "00" * 8)
    assert encode_value(-(2**63) - 1) == bytes.fromhex("c70901ff7fffffffffffffff")


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 8, 15, 16, 17, 255, 256, 65535, 65536])
def test_ext_header_is_the_one_msgpack_writes(size):
    payload = b"\x01" * size
    assert _ext_header(EXT_DICT, size) + payload == msgpack.packb(msgpack.ExtType(EXT_DICT, payload))


def test_lists_tuples_and_dict_orders_are_distinct_encodings():
    assert encode_value([1]) != encode_value((1,))
    assert encode_value([]) != encode_value(()) != encode_value({})
    assert encode_value({1: 2, 3: 4}) != encode_value({3: 4, 1: 2})
    assert encode_value(True) != encode_value(1)
    assert decode_value(encode_value({True: 1, 2: False}), MAX_BYTES) == {True: 1, 2: False}


def test_the_deepest_and_largest_values_round_trip():
    deepest = nested_lists(contract_value_depth_max)
    assert decode_value(encode_value(deepest), MAX_BYTES) == deepest
    largest = ["a" * 3] * limits.contract_container_items_max
    assert decode_value(encode_value(largest), MAX_BYTES) == largest
    text = "é" * (limits.contract_text_bytes_max // 2)
    assert decode_value(encode_value(text), MAX_BYTES) == text


# --- encode refuses what is not a contract value ---------------------------------------------------

@pytest.mark.parametrize("value", [
    1.5, {1}, range(3), object(), [1.0], {(1,): 2}, {None: 1}, INT_LIMIT, -INT_LIMIT, "\ud800",
    nested_lists(contract_value_depth_max + 1), [0] * (limits.contract_container_items_max + 1),
    "a" * (limits.contract_text_bytes_max + 1), b"a" * (limits.contract_text_bytes_max + 1),
], ids=lambda value: type(value).__name__)
def test_invalid_value_is_not_encoded(value):
    with pytest.raises(EncodeError):
        encode_value(value)


# --- decode accepts only the canonical encoding ---------------------------------------------------

NON_CANONICAL = {
    "wide int": b"\xcf" + struct.pack(">Q", 1),
    "wide str": b"\xda\x00\x01a",
    "wide array": b"\xdc\x00\x01\x01",
    "big int that fits 64 bits": ext(EXT_BIG_INT, (5).to_bytes(9, "big", signed=True)),
    "big int with a redundant byte": ext(EXT_BIG_INT, (2**64).to_bytes(10, "big", signed=True)),
    "dict with a duplicate key": ext(EXT_DICT, msgpack.packb([1, 2, 1, 3])),
    "dict with equal keys True and 1": ext(EXT_DICT, msgpack.packb([True, 2, 1, 3])),
}
INVALID = {
    "map": msgpack.packb({"a": 1}),
    "float": msgpack.packb(1.5),
    "trailing bytes": encode_value(1) + b"\x00",
    "empty": b"",
    "truncated": encode_value([1, 2])[:-1],
    "unknown ext": ext(9, b"\x90"),
    "timestamp": msgpack.packb(msgpack.Timestamp(1)),
    "odd dict payload": ext(EXT_DICT, msgpack.packb([1, 2, 3])),
    "dict payload not an array": ext(EXT_DICT, msgpack.packb(5)),
    "tuple payload not an array": ext(EXT_TUPLE, msgpack.packb("x")),
    "tuple payload with trailing bytes": ext(EXT_TUPLE, msgpack.packb([1]) + b"\x01"),
    "list as dict key": ext(EXT_DICT, msgpack.packb([[1], 2])),
    "tuple as dict key": ext(EXT_DICT, msgpack.packb([msgpack.ExtType(EXT_TUPLE, b"\x90"), 2])),
    "None as dict key": ext(EXT_DICT, msgpack.packb([None, 2])),
    "big int over the cap": ext(EXT_BIG_INT, INT_LIMIT.to_bytes(33, "big", signed=True)),
    "big int payload too long": ext(EXT_BIG_INT, b"\x00" * 34),
    "big int payload empty": ext(EXT_BIG_INT, b""),
    "invalid UTF-8": b"\xa1\xff",
    "surrogate": b"\xa3\xed\xa0\x80",
    "too deep": msgpack.packb(nested_lists(contract_value_depth_max + 1)),
    "too deep through a tuple": ext(EXT_TUPLE, msgpack.packb([nested_lists(contract_value_depth_max)])),
    "too many items": msgpack.packb([0] * (limits.contract_container_items_max + 1)),
    "too many dict items": ext(EXT_DICT, msgpack.packb(list(range(2 * limits.contract_container_items_max + 2)))),
    "text too long": msgpack.packb("a" * (limits.contract_text_bytes_max + 1)),
    "bytes too long": msgpack.packb(b"a" * (limits.contract_text_bytes_max + 1), use_bin_type=True),
}


@pytest.mark.parametrize("name", sorted(NON_CANONICAL) + sorted(INVALID))
def test_invalid_value_encoding_is_rejected(name):
    data = NON_CANONICAL.get(name) or INVALID[name]
    with pytest.raises(DecodeError):
        decode_value(data, MAX_BYTES)


def test_non_canonical_inputs_decode_to_values_but_are_rejected_for_their_form():
    assert msgpack.unpackb(NON_CANONICAL["wide int"]) == 1   # valid msgpack, one value, wrong form


def test_invalid_value_over_the_byte_limit_or_not_bytes():
    data = encode_value("a" * 100)
    assert decode_value(data, len(data)) == "a" * 100
    with pytest.raises(DecodeError, match="more than the limit"):
        decode_value(data, len(data) - 1)
    with pytest.raises(DecodeError):
        decode_value(bytearray(data), MAX_BYTES)
