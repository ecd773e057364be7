"""Contract values as JSON, for RPC, genesis files and the wallet (one codec, below all of them).

JSON has no bytes, tuples or non-string dict keys, so those travel as one-key objects:
  {"bytes": "0x…"}  {"address": "pay1…"} (in only: 20 bytes)  {"tuple": [...]}  {"dict": [[key, value], ...]}
Any other object is a dict with string keys; numbers must be integers.
"""

from __future__ import annotations

from typing import Any

from node import crypto, encoding, limits

_TYPED_FORMS = frozenset({"bytes", "address", "tuple", "dict"})


class InvalidValue(ValueError):
    """JSON that is not a contract value; the message says where."""


def value_from_json(value: Any, where: str = "value", depth: int = 0) -> Any:
    """A contract value from its JSON form."""
    if depth > 32:
        raise InvalidValue(f"{where}: nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        raise InvalidValue(f"{where}: numbers must be integers (contracts have no floats)")
    if isinstance(value, list):
        return [value_from_json(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in _TYPED_FORMS:
            return _typed_from_json(next(iter(value)), next(iter(value.values())), where, depth)
        return {key: value_from_json(item, f"{where}.{key}", depth + 1) for key, item in value.items()}
    raise InvalidValue(f"{where}: {type(value).__name__} is not a contract value")


def _typed_from_json(form: str, content: Any, where: str, depth: int) -> Any:
    if form == "bytes":
        try:
            return encoding.parse_hex(content, where, limits.contract_value_bytes_max)
        except encoding.DecodeError as error:
            raise InvalidValue(str(error)) from error
    if form == "address":
        try:
            return crypto.parse_address(content)
        except crypto.InvalidAddress as error:
            raise InvalidValue(f"{where}: {error}") from error
    if not isinstance(content, list):
        raise InvalidValue(f"{where}: {{\"{form}\": ...}} takes a list")
    if form == "tuple":
        return tuple(value_from_json(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(content))
    result = {}
    for i, pair in enumerate(content):
        if not isinstance(pair, list) or len(pair) != 2:
            raise InvalidValue(f"{where}[{i}]: a dict entry is [key, value]")
        result[value_from_json(pair[0], f"{where}[{i}][0]", depth + 1)] = value_from_json(
            pair[1], f"{where}[{i}][1]", depth + 1)
    return result


def value_json(value: Any) -> Any:
    """The JSON form of a contract value (see above)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return {"bytes": "0x" + value.hex()}
    if isinstance(value, list):
        return [value_json(item) for item in value]
    if isinstance(value, tuple):
        return {"tuple": [value_json(item) for item in value]}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and not (len(value) == 1 and next(iter(value)) in _TYPED_FORMS):
            return {key: value_json(item) for key, item in value.items()}
        return {"dict": [[value_json(key), value_json(item)] for key, item in value.items()]}
    raise AssertionError(f"not a contract value: {type(value).__name__}")


def encoded_value_json(data: bytes) -> Any:
    """JSON of an encoded contract value stored in a transaction or event."""
    return value_json(encoding.decode_value(data, limits.tx_bytes_max))
