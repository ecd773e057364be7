"""Canonical bytes: the only place Paychain turns values into bytes and back.

Anything signed, hashed or stored is a frozen dataclass with a `SCHEMA`: one field
codec per dataclass field, in order. It is encoded as a msgpack array of its fields
(never a map, so there is exactly one encoding). Decoding is strict: wrong types,
out-of-range integers, oversize fields and trailing bytes are rejected, and the
decoded value is re-encoded and compared with the input so that only the canonical
encoding of a value is ever accepted.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

import msgpack

from node import limits


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of the expected type; the message names the rule."""


Path = str | tuple
"""Where a value sits while decoding: a name, or (parent path, field name)."""


def render_path(where: Path) -> str:
    """"SignedTransaction.transaction.body.amount" from the nested tuple form."""
    parts = []
    while isinstance(where, tuple):
        where, name = where
        parts.append(name)
    parts.append(where)
    return ".".join(reversed(parts))


class FieldCodec(Protocol):
    def to_wire(self, value: Any) -> Any: ...
    def from_wire(self, wire: Any, where: Path) -> Any: ...


class Encodable(Protocol):
    SCHEMA: ClassVar[tuple[FieldCodec, ...]]


# --- field codecs --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class UInt:
    """A non-negative integer up to `max`."""

    max: int = 2**64 - 1

    def to_wire(self, value: int) -> int:
        assert type(value) is int and 0 <= value <= self.max, value
        return value

    def from_wire(self, wire: Any, where: Path) -> int:
        if type(wire) is not int:
            raise DecodeError(f"{render_path(where)}: expected an integer")
        if not 0 <= wire <= self.max:
            raise DecodeError(f"{render_path(where)}: integer out of range 0..{self.max}")
        return wire


@dataclasses.dataclass(frozen=True, slots=True)
class Bytes:
    """A byte string of exactly `size` bytes, or of at most `max_size` bytes."""

    size: int | None = None
    max_size: int | None = None

    def to_wire(self, value: bytes) -> bytes:
        assert type(value) is bytes, type(value)
        return value

    def from_wire(self, wire: Any, where: Path) -> bytes:
        if type(wire) is not bytes:
            raise DecodeError(f"{render_path(where)}: expected bytes")
        if self.size is not None and len(wire) != self.size:
            raise DecodeError(f"{render_path(where)}: expected {self.size} bytes, got {len(wire)}")
        if self.max_size is not None and len(wire) > self.max_size:
            raise DecodeError(f"{render_path(where)}: at most {self.max_size} bytes, got {len(wire)}")
        return wire


@dataclasses.dataclass(frozen=True, slots=True)
class Text:
    """A UTF-8 string of at most `max_bytes` bytes, optionally limited to printable ASCII."""

    max_bytes: int
    ascii_only: bool = False

    def to_wire(self, value: str) -> str:
        assert type(value) is str, type(value)
        return value

    def from_wire(self, wire: Any, where: Path) -> str:
        if type(wire) is not str:
            raise DecodeError(f"{render_path(where)}: expected a string")
        if len(wire.encode()) > self.max_bytes:
            raise DecodeError(f"{render_path(where)}: at most {self.max_bytes} bytes")
        if self.ascii_only and not (wire.isascii() and wire.isprintable()):
            raise DecodeError(f"{render_path(where)}: printable ASCII only")
        return wire


@dataclasses.dataclass(frozen=True, slots=True)
class Bool:
    def to_wire(self, value: bool) -> bool:
        assert type(value) is bool
        return value

    def from_wire(self, wire: Any, where: Path) -> bool:
        if type(wire) is not bool:
            raise DecodeError(f"{render_path(where)}: expected a boolean")
        return wire


@dataclasses.dataclass(frozen=True, slots=True)
class Seq:
    """A tuple of up to `max_items` items of one codec."""

    item: FieldCodec
    max_items: int

    def to_wire(self, value: tuple) -> list:
        assert type(value) is tuple, type(value)
        return [self.item.to_wire(v) for v in value]

    def from_wire(self, wire: Any, where: Path) -> tuple:
        if type(wire) is not tuple:
            raise DecodeError(f"{render_path(where)}: expected an array")
        if len(wire) > self.max_items:
            raise DecodeError(f"{render_path(where)}: at most {self.max_items} items")
        item = self.item
        return tuple(item.from_wire(w, where) for w in wire)


@dataclasses.dataclass(frozen=True, slots=True)
class Optional:
    """Either nil or a value of `item`."""

    item: FieldCodec

    def to_wire(self, value: Any) -> Any:
        return None if value is None else self.item.to_wire(value)

    def from_wire(self, wire: Any, where: Path) -> Any:
        return None if wire is None else self.item.from_wire(wire, where)


@dataclasses.dataclass(frozen=True, slots=True)
class Struct:
    """A nested encodable dataclass."""

    cls: type

    def to_wire(self, value: Any) -> list:
        assert type(value) is self.cls, (type(value), self.cls)
        return _struct_to_wire(value)

    def from_wire(self, wire: Any, where: Path) -> Any:
        return _struct_from_wire(self.cls, wire, where)


@dataclasses.dataclass(frozen=True, slots=True)
class Tagged:
    """One of several encodable dataclasses, encoded as [tag, fields]."""

    classes_by_tag: dict[int, type]

    def to_wire(self, value: Any) -> list:
        return [value.TAG, _struct_to_wire(value)]

    def from_wire(self, wire: Any, where: Path) -> Any:
        if type(wire) is not tuple or len(wire) != 2:
            raise DecodeError(f"{render_path(where)}: expected [tag, fields]")
        cls = self.classes_by_tag.get(wire[0]) if type(wire[0]) is int else None
        if cls is None:
            raise DecodeError(f"{render_path(where)}: unknown kind {wire[0]!r}")
        return _struct_from_wire(cls, wire[1], where)


# Common codecs.
HASH = Bytes(size=32)
ADDRESS = Bytes(size=20)
PUBLIC_KEY = Bytes(size=32)
SIGNATURE = Bytes(size=64)
U64 = UInt()
AMOUNT = UInt(limits.amount_max)
ASSET = Text(limits.asset_code_chars_max, ascii_only=True)
MEMO = Text(limits.memo_bytes_max)
CHAIN_ID = Text(limits.chain_id_chars_max, ascii_only=True)


def check_schema(cls: type) -> type:
    """Class decorator: assert the SCHEMA matches the dataclass fields one to one."""
    names = [f.name for f in dataclasses.fields(cls)]
    assert len(cls.SCHEMA) == len(names), f"{cls.__name__}: SCHEMA has {len(cls.SCHEMA)} codecs for {names}"
    return cls


def _struct_to_wire(value: Any) -> list:
    schema = value.SCHEMA
    return [codec.to_wire(getattr(value, name)) for codec, name in zip(schema, _field_names(type(value)))]


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _FIELD_NAMES[cls] = names
    return names


def _struct_from_wire(cls: type, wire: Any, where: Path) -> Any:
    schema = cls.SCHEMA
    if type(wire) is not tuple:
        raise DecodeError(f"{render_path(where)}: {cls.__name__} must be an array")
    if len(wire) != len(schema):
        raise DecodeError(f"{render_path(where)}: {cls.__name__} has {len(schema)} fields, got {len(wire)}")
    names = _field_names(cls)
    # The path is a nested tuple, rendered only if an error is raised (formatting it for
    # every field of every decoded value was a measurable share of transaction admission).
    values = [codec.from_wire(w, (where, name)) for codec, w, name in zip(schema, wire, names)]
    return cls(*values)


# --- top level ---------------------------------------------------------------------

def pack(wire: Any) -> bytes:
    """msgpack bytes of plain wire values (lists, ints, bytes, str, bool, None)."""
    return msgpack.packb(wire, use_bin_type=True)


def unpack(data: bytes, max_bytes: int) -> Any:
    """Strictly parse msgpack: no maps, no ext types, no trailing bytes, bounded size."""
    if type(data) is not bytes:
        raise DecodeError("expected bytes")
    if len(data) > max_bytes:
        raise DecodeError(f"encoding is {len(data)} bytes, more than the limit of {max_bytes}")
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=False, strict_map_key=True, max_map_len=0, max_ext_len=0,
        )
    except msgpack.ExtraData as error:
        raise DecodeError("trailing bytes after the value") from error
    except (ValueError, msgpack.UnpackException, TypeError) as error:
        raise DecodeError(f"malformed msgpack: {error}") from error


def encode(value: Any) -> bytes:
    """Canonical bytes of an encodable dataclass."""
    return pack(_struct_to_wire(value))


def decode(cls: type, data: bytes, max_bytes: int) -> Any:
    """Parse the canonical bytes of `cls`; raises DecodeError naming the rule broken."""
    wire = unpack(data, max_bytes)
    value = _struct_from_wire(cls, wire, cls.__name__)
    # Every field codec accepted its wire value unchanged, so re-packing the wire form is the
    # canonical encoding of `value` (and much cheaper than re-encoding the dataclass).
    if pack(wire) != data:
        raise DecodeError(f"{cls.__name__}: not the canonical encoding")
    return value


def pack_array_with_encoded_tail(leading: list, encoded_tail: bytes) -> bytes:
    """msgpack of the array `leading + [tail]` where the tail element is given already encoded.

    A msgpack array is its header followed by its elements' encodings, so an element
    encoded earlier (e.g. a receipt, for the receipts root) is spliced in, not encoded again.
    """
    assert len(leading) + 1 <= 15, "fixarray header only"
    return bytes([0x90 | (len(leading) + 1)]) + pack(leading)[1:] + encoded_tail


def wire_of(value: Any) -> list:
    """The wire form (nested lists) of an encodable dataclass."""
    return _struct_to_wire(value)


def encode_uint_be(value: int, size: int) -> bytes:
    """Fixed-width big-endian integer, for sortable storage keys and hashing."""
    return value.to_bytes(size, "big")


def decode_uint_be(data: bytes) -> int:
    return int.from_bytes(data, "big")


def parse_hex(text: Any, what: str, max_bytes: int) -> bytes:
    """Bytes from a hex string (optional 0x prefix); raises DecodeError naming `what`."""
    if not isinstance(text, str):
        raise DecodeError(f"{what} must be a hex string")
    if text.startswith(("0x", "0X")):
        text = text[2:]
    if len(text) > 2 * max_bytes:
        raise DecodeError(f"{what} is longer than {max_bytes} bytes")
    try:
        return bytes.fromhex(text)
    except ValueError as error:
        raise DecodeError(f"{what} is not valid hex") from error


# --- contract values -----------------------------------------------------------------

contract_value_depth_max = 32
"""Deepest nesting of lists, tuples and dicts inside one contract value (a list of ints is 1 deep).
The contract VM enforces the same bound at run time whenever it walks a value."""

EXT_BIG_INT = 1
"""msgpack ext type of an integer outside -2**63 .. 2**64-1: minimal big-endian two's complement."""
EXT_TUPLE = 2
"""msgpack ext type of a tuple: the payload is the msgpack array of its items."""
EXT_DICT = 3
"""msgpack ext type of a dict: the payload is the msgpack array [key1, value1, key2, value2, ...]
in insertion order (never a msgpack map, whose order and key types msgpack does not pin down)."""

DICT_INT_KEY_LIMIT = 2**61 - 1
"""A dict's int keys have a magnitude below this: there CPython hashes an int to itself (bar -1), so
no set of keys can be chosen to collide in a dict's hash table and make each lookup scan the others."""

_NATIVE_INT_MIN = -(2**63)
_NATIVE_INT_MAX = 2**64 - 1
_VALUE_INT_LIMIT = 1 << limits.contract_int_bits_max
_VALUE_KEY_TYPES = (bool, int, str, bytes)
_BIG_INT_BYTES_MAX = limits.contract_int_bits_max // 8 + 1
_TEXT_CHARS_SAFE = limits.contract_text_bytes_max // 4
"""A str of at most this many characters is within the text cap whatever its characters (UTF-8 <= 4 bytes each)."""


class EncodeError(ValueError):
    """A Python value that is not a contract value (wrong type, too deep, over a size cap)."""


def encode_value(value: Any) -> bytes:
    """Canonical bytes of a contract value: None, bool, int, str, bytes, list, tuple or dict.

    Lists are msgpack arrays; tuples, dicts and integers beyond 64 bits are ext types, so every
    value has exactly one encoding and `decode_value(encode_value(v)) == v` with the same types.
    Raises EncodeError naming the rule if `value` is not a contract value.
    """
    try:
        if type(value) is tuple or type(value) is dict:   # the common top level: skip one msgpack pass
            code, payload = _ext_parts(value, 0)
            return _ext_header(code, len(payload)) + payload
        return pack(_value_to_wire(value, 0))
    except UnicodeEncodeError as error:
        raise EncodeError("contract value: text is not valid Unicode (lone surrogate)") from error


def decode_value(data: bytes, max_bytes: int) -> Any:
    """Parse the canonical bytes of a contract value; raises DecodeError naming the rule broken."""
    if type(data) is not bytes:
        raise DecodeError("contract value: expected bytes")
    if len(data) > max_bytes:
        raise DecodeError(f"contract value: encoding is {len(data)} bytes, more than the limit of {max_bytes}")
    value = _value_from_wire(_unpack_value_wire(data), 0)
    if encode_value(value) != data:
        raise DecodeError("contract value: not the canonical encoding")
    return value


def _value_to_wire(value: Any, depth: int) -> Any:
    kind = type(value)
    if value is None or kind is bool:
        return value
    if kind is int:
        return _int_to_wire(value)
    if kind is str or kind is bytes:
        size = len(value) if kind is bytes or value.isascii() else len(value.encode())
        if size > limits.contract_text_bytes_max:
            raise EncodeError(f"contract value: text longer than {limits.contract_text_bytes_max} bytes")
        return value
    if kind is list:
        _check_container(value, depth)
        return _items_to_wire(value, depth + 1)
    if kind is tuple or kind is dict:
        return msgpack.ExtType(*_ext_parts(value, depth))
    raise EncodeError(f"contract value: {kind.__name__} is not a contract value type")


def _check_container(value: list | tuple | dict, depth: int) -> None:
    if depth >= contract_value_depth_max:
        raise EncodeError(f"contract value: nested deeper than {contract_value_depth_max}")
    if len(value) > limits.contract_container_items_max:
        raise EncodeError(f"contract value: more than {limits.contract_container_items_max} items")


def _ext_parts(value: tuple | dict, depth: int) -> tuple[int, bytes]:
    """(ext type, payload) of a tuple or a dict."""
    _check_container(value, depth)
    if type(value) is tuple:
        return EXT_TUPLE, pack(_items_to_wire(value, depth + 1))
    for key in value:
        if type(key) not in _VALUE_KEY_TYPES:
            raise EncodeError("contract value: dict keys are int, str, bytes or bool")
        if type(key) is int and not -DICT_INT_KEY_LIMIT < key < DICT_INT_KEY_LIMIT:
            raise EncodeError("contract value: dict int keys have a magnitude below 2**61 - 1")
    return EXT_DICT, pack(_items_to_wire([part for pair in value.items() for part in pair], depth + 1))


def _ext_header(code: int, size: int) -> bytes:
    """The msgpack header of an ext value of `size` bytes (the form msgpack.packb chooses)."""
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}.get(size)
    if fixed is not None:
        return bytes((fixed, code))
    if size <= 0xFF:
        return bytes((0xC7, size, code))
    if size <= 0xFFFF:
        return b"\xc8" + size.to_bytes(2, "big") + bytes((code,))
    return b"\xc9" + size.to_bytes(4, "big") + bytes((code,))


def _items_to_wire(items: Any, depth: int) -> list:
    """The wire form of the items of a container; most items are small scalars, kept as they are."""
    wire = []
    for item in items:
        kind = type(item)
        if (kind is str and len(item) <= _TEXT_CHARS_SAFE) or item is None or kind is bool \
                or (kind is int and _NATIVE_INT_MIN <= item <= _NATIVE_INT_MAX):
            wire.append(item)
        else:
            wire.append(_value_to_wire(item, depth))
    return wire


def _int_to_wire(value: int) -> Any:
    if _NATIVE_INT_MIN <= value <= _NATIVE_INT_MAX:
        return value
    if not -_VALUE_INT_LIMIT < value < _VALUE_INT_LIMIT:
        raise EncodeError(f"contract value: integer larger than {limits.contract_int_bits_max} bits")
    size = ((value if value >= 0 else ~value).bit_length() + 8) // 8
    return msgpack.ExtType(EXT_BIG_INT, value.to_bytes(size, "big", signed=True))


def _unpack_value_wire(data: bytes) -> Any:
    """msgpack with arrays as lists, ext types left as ExtType, no maps, no trailing bytes."""
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, max_map_len=0)
    except msgpack.ExtraData as error:
        raise DecodeError("contract value: trailing bytes after the value") from error
    except (ValueError, msgpack.UnpackException, TypeError) as error:
        raise DecodeError(f"contract value: malformed msgpack: {error}") from error


def _value_from_wire(wire: Any, depth: int) -> Any:
    kind = type(wire)
    if wire is None or kind is bool or kind is int:
        return wire
    if kind is str or kind is bytes:
        if (len(wire) if kind is bytes else len(wire.encode())) > limits.contract_text_bytes_max:
            raise DecodeError(f"contract value: text longer than {limits.contract_text_bytes_max} bytes")
        return wire
    if kind is not list and kind is not msgpack.ExtType:
        raise DecodeError(f"contract value: msgpack {kind.__name__} is not a contract value type")
    if kind is msgpack.ExtType and wire.code == EXT_BIG_INT:
        return _big_int_from_wire(wire.data)
    if depth >= contract_value_depth_max:
        raise DecodeError(f"contract value: nested deeper than {contract_value_depth_max}")
    if kind is list:
        return _items_from_wire(wire, depth)
    if wire.code == EXT_TUPLE:
        return tuple(_items_from_wire(_ext_array(wire.data), depth))
    if wire.code == EXT_DICT:
        return _dict_from_wire(_ext_array(wire.data), depth)
    raise DecodeError(f"contract value: unknown ext type {wire.code}")


def _items_from_wire(wire: list, depth: int) -> list:
    if len(wire) > limits.contract_container_items_max:
        raise DecodeError(f"contract value: more than {limits.contract_container_items_max} items")
    values = []
    for item in wire:
        kind = type(item)
        if (kind is str and len(item) <= _TEXT_CHARS_SAFE) or item is None or kind is bool or kind is int:
            values.append(item)   # msgpack's own ints are within 64 bits
        else:
            values.append(_value_from_wire(item, depth + 1))
    return values


def _dict_from_wire(flat: list, depth: int) -> dict:
    if len(flat) % 2:
        raise DecodeError("contract value: a dict payload alternates keys and values")
    keys = _items_from_wire(flat[0::2], depth)
    for key in keys:   # all checked before any is hashed into the dict
        if type(key) not in _VALUE_KEY_TYPES:
            raise DecodeError("contract value: dict keys are int, str, bytes or bool")
        if type(key) is int and not -DICT_INT_KEY_LIMIT < key < DICT_INT_KEY_LIMIT:
            raise DecodeError("contract value: dict int keys have a magnitude below 2**61 - 1")
    result = dict(zip(keys, _items_from_wire(flat[1::2], depth)))
    if len(result) != len(keys):
        raise DecodeError("contract value: duplicate dict key")
    return result


def _ext_array(payload: bytes) -> list:
    wire = _unpack_value_wire(payload)
    if type(wire) is not list:
        raise DecodeError("contract value: a tuple or dict payload must be an array")
    return wire


def _big_int_from_wire(payload: bytes) -> int:
    if not 0 < len(payload) <= _BIG_INT_BYTES_MAX:
        raise DecodeError("contract value: big integer payload of the wrong size")
    value = int.from_bytes(payload, "big", signed=True)
    if not -_VALUE_INT_LIMIT < value < _VALUE_INT_LIMIT:
        raise DecodeError(f"contract value: integer larger than {limits.contract_int_bits_max} bits")
    return value
