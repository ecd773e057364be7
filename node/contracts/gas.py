"""Gas and run-time bounds of the contract VM.

Owns the contract error types, the gas schedule (the table in docs/CONTRACTS.md mirrors it),
the meter, and the metered checks that enforce every run-time cap: integer size, text size,
container size and value nesting. A size-dependent charge is made *before* the work it pays
for whenever the size is known in advance, so no contract can make the node allocate or loop
beyond what its gas and the caps allow. Every message here is fixed text plus small numbers,
so that the same failure reads the same on every validator and every Python build.
"""

from __future__ import annotations

import itertools

from node import limits
from node.encoding import DICT_INT_KEY_LIMIT, contract_value_depth_max


# --- errors ------------------------------------------------------------------------------

class ContractError(Exception):
    """Base of expected contract failures; `code` is a stable snake_case string, `message` names the rule."""

    code: str = "contract_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.gas_used = 0
        """Gas consumed up to the failure (set by call_function; 0 for load-time errors)."""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class HostUnavailable(Exception):
    """The host cannot answer now (a query's state moved on under it): not the contract's failure, so not
    a ContractError; it leaves call_function as it is, for the caller to run the call again."""


class InvalidContract(ContractError):
    """Rejected at load or deploy: syntax, a forbidden construct, or a size cap."""

    code = "invalid_contract"


class Revert(ContractError):
    """The contract called revert(reason); `message` is the reason."""

    code = "reverted"


class OutOfGas(ContractError):
    """The call used its whole gas limit."""

    code = "out_of_gas"


class VMFault(ContractError):
    """A run-time rule was broken; `code` names which (see docs/CONTRACTS.md, "Errors")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- the schedule (static costs are summed per statement and charged when it starts) ------

statement_gas = 1
"""Every statement executed (and every `elif` test reached)."""
leaf_gas = 1
"""A constant or a name read."""
store_gas = 1
"""Each name, subscript or unpacking target written."""
unary_gas = 2
"""-x, +x, ~x, not x."""
binary_gas = 3
"""+ - * // % ** << >> & | ^ (before size costs)."""
compare_gas = 3
"""Each comparison in a chain, including `in` and `is`."""
bool_op_gas = 1
"""`and` / `or`, per operator."""
if_expression_gas = 1
"""`a if c else b`."""
subscript_gas = 3
"""x[i], and each subscript target written or deleted."""
slice_gas = 5
"""x[a:b:c], before the items or bytes copied."""
display_gas = 2
"""A list, tuple or dict display, plus 1 per item (static)."""
call_gas = 20
"""A call of a contract function, plus 1 per argument."""
builtin_gas = 5
"""A call of a VM builtin or a method, plus the builtin's own size costs."""
host_call_gas = 10
"""A call of a host function, plus the host's base gas and the size units of arguments and result."""
iteration_gas = 2
"""Each iteration of a for or while loop (a while loop's test is charged on top)."""

text_bytes_per_gas = 32
"""str/bytes produced or copied: 1 gas per this many bytes (UTF-8), rounded up."""
int_bits_per_gas = 64
"""Integers produced: 1 gas per this many bits beyond the first 64."""
value_bytes_per_unit_max = 36
"""The canonical encoding of a value takes at most this many bytes per size unit of charge_value
(a str of n bytes: 1 + n // 32 units, at most n + 5 bytes; a big int: 36 bytes and at least 16 units;
a container: 16 units, an ext and an array header)."""

container_units = 16
"""Size units of each list, tuple and dict crossing the VM boundary (arguments, results, host values):
encoding or decoding one costs Python work of its own (an ext type, a nested msgpack pass), about
1-2 µs to write and up to 10 µs to read back from storage, against well under 1 µs per plain item."""
big_int_units = 16
"""Size units of an integer beyond 64 bits crossing the VM boundary (it travels as an ext type too)."""

INT_LIMIT = 1 << limits.contract_int_bits_max
"""Every integer a contract holds has a magnitude below this."""
SMALL_INT_LIMIT = 1 << int_bits_per_gas
"""Integers with a magnitude below this cost no size gas (and skip the cap check)."""
TEXT_BYTES_MAX = limits.contract_text_bytes_max
ITEMS_MAX = limits.contract_container_items_max
VALUE_DEPTH_MAX = contract_value_depth_max

KEY_TYPES = frozenset({int, bool, str, bytes})
"""Types a dict key may have (hashing them is cheap and never recurses)."""
SCALAR_TYPES = frozenset({int, bool, str, bytes, type(None)})
CONTAINER_TYPES = frozenset({list, tuple, dict})

_TYPE_NAMES = {type(None): "None", bool: "bool", int: "int", str: "str", bytes: "bytes",
               list: "list", tuple: "tuple", dict: "dict", range: "range"}


def type_name(value: object) -> str:
    """The name a contract developer knows a value's type by (iterators are just "iterator")."""
    return _TYPE_NAMES.get(type(value), "iterator")


# --- the meter -----------------------------------------------------------------------------

class Meter:
    """Remaining gas of one call (the VM's per-call context extends it)."""

    __slots__ = ("gas",)

    def __init__(self, gas: int) -> None:
        self.gas = gas

    def refuel(self) -> None:
        """Called once `gas` went below zero: raises OutOfGas (a query's run refills from its reserve first)."""
        raise out_of_gas(self)


def out_of_gas(meter: Meter) -> OutOfGas:
    """The error to raise once `meter` went below zero; all of the limit counts as used."""
    meter.gas = 0
    return OutOfGas("the call used its whole gas limit")


def charge(meter: Meter, gas: int) -> None:
    meter.gas -= gas
    if meter.gas < 0:
        meter.refuel()


# --- caps --------------------------------------------------------------------------------------

def checked_int(meter: Meter, value: int) -> int:
    """`value` if it is within the integer cap, after charging its size gas."""
    if -SMALL_INT_LIMIT < value < SMALL_INT_LIMIT:
        return value
    if not -INT_LIMIT < value < INT_LIMIT:
        raise VMFault("int_too_large", f"integers are limited to {limits.contract_int_bits_max} bits")
    charge(meter, (value.bit_length() - 1) // int_bits_per_gas)
    return value


def text_size(value: str | bytes) -> int:
    """Size in bytes (UTF-8 for str)."""
    if type(value) is bytes or value.isascii():
        return len(value)
    return len(value.encode())


def charge_text(meter: Meter, size: int) -> None:
    """Check and pay for producing `size` bytes of str or bytes."""
    if size > TEXT_BYTES_MAX:
        raise VMFault("text_too_large", f"str and bytes values are limited to {TEXT_BYTES_MAX} bytes")
    charge(meter, (size + text_bytes_per_gas - 1) // text_bytes_per_gas)


def charge_items(meter: Meter, count: int) -> None:
    """Check and pay for producing a list, tuple or dict of `count` items."""
    if count > ITEMS_MAX:
        raise VMFault("container_too_large", f"lists, tuples and dicts are limited to {ITEMS_MAX} items")
    charge(meter, count)


def check_room(container: list | dict, added: int = 1) -> None:
    """Check that `added` more items fit into `container` (gas for them is static or charged by the caller)."""
    if len(container) + added > ITEMS_MAX:
        raise VMFault("container_too_large", f"lists, tuples and dicts are limited to {ITEMS_MAX} items")


def check_key(key: object) -> None:
    """A key a dict may be searched for."""
    if type(key) not in KEY_TYPES:
        raise VMFault("type_error", f"dict keys are int, str, bytes or bool, not {type_name(key)}")


def check_new_key(key: object) -> None:
    """A key that may go into a dict (a search may use any key: none stored collides with it)."""
    check_key(key)
    if type(key) is int and not -DICT_INT_KEY_LIMIT < key < DICT_INT_KEY_LIMIT:
        raise VMFault("key_error", "dict int keys have a magnitude below 2**61 - 1 (docs/CONTRACTS.md)")


def too_deep() -> VMFault:
    return VMFault("value_too_deep", f"lists, tuples and dicts nest at most {VALUE_DEPTH_MAX} deep")


# --- walking values ---------------------------------------------------------------------------

def charge_walk(meter: Meter, value: object, depth: int = 0) -> int:
    """Pay for Python comparing or sorting `value`, check its nesting, and return the units paid.

    1 unit per item of every list, tuple and dict inside, plus 1 per 32 bytes of the str and bytes
    items. Python's own comparison of nested containers recurses in C and visits a shared item once
    per reference; this walk bounds both before Python starts (a cyclic list is reported too deep).
    """
    kind = type(value)
    if kind is list or kind is tuple:
        items = value
    elif kind is dict:
        items = value.values()
    else:
        return 0
    if depth >= VALUE_DEPTH_MAX:
        raise too_deep()
    units = len(value)
    nested = []
    for item in items:
        kind = type(item)
        if kind is str or kind is bytes:
            units += len(item) // text_bytes_per_gas   # code points: the bytes compared, within 4x
        elif kind is list or kind is tuple or kind is dict:
            nested.append(item)
    charge(meter, units)
    for item in nested:
        units += charge_walk(meter, item, depth + 1)
    return units


def charge_value(meter: Meter, value: object) -> int:
    """Check that `value` is a contract value within every cap, pay its size units, return them.

    Used for what crosses the VM boundary (call arguments, return values, host arguments and
    results): 1 unit per value, plus 1 per 32 bytes of text and 1 per 64 bits of integer
    beyond the first 64. Each container is paid for before its nested containers are walked.
    Raises VMFault type_error for anything that is not a contract value.
    """
    kind = type(value)
    if kind is list or kind is tuple or kind is dict:
        return charge_container(meter, value, 0)
    units = scalar_units(value)
    charge(meter, units)
    return units


def charge_container(meter: Meter, value: list | tuple | dict, depth: int) -> int:
    """charge_value of a list, tuple or dict nested `depth` deep."""
    if depth >= VALUE_DEPTH_MAX:
        raise too_deep()
    if len(value) > ITEMS_MAX:
        raise VMFault("container_too_large", f"lists, tuples and dicts are limited to {ITEMS_MAX} items")
    units = container_units
    nested = []
    if type(value) is dict:
        for key in value:
            check_new_key(key)
        items = itertools.chain(value, value.values())
    else:
        items = value
    for item in items:
        kind = type(item)
        if (kind is str and item.isascii()) or kind is bytes:
            if len(item) > TEXT_BYTES_MAX:
                raise VMFault("text_too_large", f"str and bytes values are limited to {TEXT_BYTES_MAX} bytes")
            units += 1 + len(item) // text_bytes_per_gas
        elif kind is int and -SMALL_INT_LIMIT < item < SMALL_INT_LIMIT:
            units += 1
        elif kind is list or kind is tuple or kind is dict:
            nested.append(item)
        else:
            units += scalar_units(item)
    charge(meter, units)
    for item in nested:
        units += charge_container(meter, item, depth + 1)
    return units


def scalar_units(value: object) -> int:
    """Size units of a value that is not a container (not charged here); type_error if it is no value."""
    kind = type(value)
    if kind is str or kind is bytes:
        if kind is str and not value.isascii():
            try:
                size = len(value.encode())
            except UnicodeEncodeError:
                raise VMFault("type_error", "str values are valid Unicode (no lone surrogates)") from None
        else:
            size = len(value)
        if size > TEXT_BYTES_MAX:
            raise VMFault("text_too_large", f"str and bytes values are limited to {TEXT_BYTES_MAX} bytes")
        return 1 + size // text_bytes_per_gas
    if kind is int:
        if not -INT_LIMIT < value < INT_LIMIT:
            raise VMFault("int_too_large", f"integers are limited to {limits.contract_int_bits_max} bits")
        if -SMALL_INT_LIMIT < value < SMALL_INT_LIMIT:
            return 1
        return big_int_units + (value.bit_length() - 1) // int_bits_per_gas
    if value is None or kind is bool:
        return 1
    raise VMFault("type_error", f"a {type_name(value)} is not a contract value")
