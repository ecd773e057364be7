"""The contract VM: loads a contract into a tree of closures and runs its functions with gas.

A contract is a small subset of Python (docs/CONTRACTS.md). `load_program` checks the source
(checker.py) and turns every node of the checked syntax tree into a small Python closure that
evaluates that node over the contract's own values; nothing of the contract is ever handed to
`exec`, `eval` or `compile`, and no Python object or attribute is reachable from it. The
closures charge the gas schedule of gas.py: the static cost of everything a statement
evaluates unconditionally is charged when the statement starts, conditional parts (the right
side of and/or, the branch of `x if c else y`, later links of a comparison chain) when they
are reached, and size costs (text, items, big integers) before the value is made.

This module owns the values' semantics (operators, builtins, methods), the closure compiler and
the two entry points. The chain reaches storage, balances and events only through `Host`.
"""

from __future__ import annotations

import ast
import itertools
import logging
import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from node import crypto, limits
from node.contracts import checker
from node.contracts.sandbox import run_on_vm_thread
from node.contracts.gas import (
    CONTAINER_TYPES, INT_LIMIT, ITEMS_MAX, KEY_TYPES, SCALAR_TYPES, SMALL_INT_LIMIT, TEXT_BYTES_MAX,
    ContractError, HostUnavailable, InvalidContract, Meter, OutOfGas, Revert, VMFault,
    binary_gas, bool_op_gas, builtin_gas, call_gas, charge, charge_container, charge_items, charge_text,
    charge_value,
    charge_walk, check_key, check_new_key, check_room, checked_int, compare_gas, display_gas, host_call_gas,
    if_expression_gas, iteration_gas, leaf_gas, out_of_gas, slice_gas, statement_gas, store_gas,
    scalar_units, subscript_gas, text_bytes_per_gas, text_size, type_name, unary_gas, value_bytes_per_unit_max,
)
from node.encoding import encode_value

__all__ = [
    "CallResult", "ContractError", "Host", "InvalidContract", "OutOfGas", "Program", "Revert", "VMFault",
    "Value", "call_function", "load_program",
]

logger = logging.getLogger(__name__)

Value = None | bool | int | str | bytes | list | tuple | dict
"""What a contract computes with; dict keys are int, str, bytes or bool."""

int_text_chars_max = 640
"""Longest text int() parses, in characters: Python's smallest allowed int_max_str_digits, so that
int() of a long text fails the same way whatever limit a validator's Python runs with."""

load_gas_per_node = 40
"""Loading (check and compile) costs this per syntax-tree node: about 4 µs, measured by scripts/bench_gas."""
memory_bytes_per_node = 400
"""Memory a loaded program holds per syntax-tree node (a closure and its cells), rounded up from
tracemalloc over the largest sources."""
memory_bytes_per_constant_gas = 8
"""Memory per gas of constants built: one gas per item or per 32 bytes of text."""

query_gas_slice = 10_000
"""A query's gas is handed out in slices of this much (about a millisecond of VM time); the clock is
read at each refill."""

REPEAT_COUNT_MAX = 2**63 - 1
"""Largest count `sequence * count` accepts (Python's own limit, whatever the sequence)."""
non_ascii_chars_per_gas = 4
"""upper(), lower() and strip() of a non-ASCII str cost 1 extra gas per this many characters."""
strip_comparisons_per_gas = 64
"""str.strip(chars) costs 1 gas per this many (text character, chars character) pairs it may compare."""
search_comparisons_per_gas = 128
"""find, `in`, split(sep), replace: 1 gas per this many (text position, pattern character) pairs compared."""
dict_pair_gas = 8
"""dict(pairs) pays this much per pair for unpacking, checking and inserting it (scripts/bench_gas:
about 900 ns a pair, which one gas for the item alone left at 9x the median ns/gas)."""

SIZED_TYPES = frozenset({list, tuple, dict, str, bytes, range})
"""Values with a length, which enumerate, zip and reversed accept (so iterators never nest)."""
ITERATOR_TYPES = frozenset(type(iterator) for iterator in (
    enumerate(()), zip(), reversed([]), reversed(()), reversed(range(1)), reversed(range(2**70)), reversed({}),
))
"""The iterators builtins return: usable in for loops and wherever an iterable is taken, never stored."""
INT_TYPES = frozenset({int, bool})


class Host(Protocol):
    """What the chain provides to a running contract: storage, caller, transfers, events, ..."""

    def host_functions(self) -> Mapping[str, int]:
        """Names of host functions the contract may call, each with its base gas cost."""

    def call_host(self, name: str, args: tuple[Value, ...]) -> Value:
        """Run a host function; may raise Revert or VMFault (they propagate as the call's error).

        Arguments may alias the contract's own lists and dicts: copy or encode what is kept.
        The result is handed to the contract, which may mutate it: return a fresh value.
        """


@dataclass(frozen=True, slots=True)
class CallResult:
    value: Value
    """What the function returned."""
    gas_used: int
    """Gas consumed by the call, at most its gas limit."""


class Function:
    """A compiled contract function (immutable once load_program returns)."""

    __slots__ = ("name", "parameters", "required", "line", "body", "frame_tails")

    def __init__(self, name: str, parameters: tuple[str, ...], required: int, line: int) -> None:
        self.name = name
        self.parameters = parameters
        """Parameter names in order; the last len(parameters) - required have defaults."""
        self.required = required
        self.line = line
        self.body: tuple[Callable, ...] = ()
        """Statement closures."""
        self.frame_tails: tuple[list, ...] = ()
        """By number of arguments given: the defaults still missing, then one UNBOUND per local."""


@dataclass(frozen=True, slots=True)
class Program:
    code_hash: bytes
    """node.crypto.hash_bytes(source.encode())."""
    functions: Mapping[str, Function]
    """Name -> compiled function, private ones included."""
    load_gas: int
    """What loading cost beyond reading the source: per syntax-tree node, plus building the constants
    (a deploy pays it; node/contracts/runtime.py)."""
    size_bytes: int
    """Estimated memory the loaded program holds (the program cache is bounded by this)."""

    def public_functions(self) -> tuple[str, ...]:
        """Sorted names of the functions a transaction may call (those not starting with "_")."""
        return tuple(sorted(name for name in self.functions if not name.startswith("_")))


class Run(Meter):
    """One call_function: its gas, its host and the depth of contract calls.

    A query with a deadline gets its gas in slices of `query_gas_slice`: the rest waits in `reserve`,
    and each refill first checks the clock. A transaction's run has all its gas at once and no deadline,
    so its result never depends on time.
    """

    __slots__ = ("host", "host_gas", "depth", "reserve", "deadline_ns")

    def __init__(self, gas: int, host: Host | None, deadline_ns: int | None = None) -> None:
        in_hand = gas if deadline_ns is None else min(gas, query_gas_slice)
        super().__init__(in_hand)
        self.reserve = gas - in_hand
        self.deadline_ns = deadline_ns
        self.host = host
        self.host_gas: Mapping[str, int] | None = None
        self.depth = 0

    def refuel(self) -> None:
        if self.reserve > 0:
            if time.monotonic_ns() > self.deadline_ns:
                raise VMFault("query_timeout", "the query ran out of time (see limits.contract_query_ms_max)")
            refill = min(self.reserve, query_gas_slice)
            self.reserve -= refill
            self.gas += refill
            if self.gas >= 0:
                return
        super().refuel()

    def remaining(self) -> int:
        return self.gas + self.reserve


class _Signal:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNBOUND = _Signal("UNBOUND")
"""Held by a local variable's frame slot until it is assigned."""
BREAK = _Signal("BREAK")
CONTINUE = _Signal("CONTINUE")
# A statement closure returns None to go on, BREAK or CONTINUE, or a 1-tuple holding the value returned.

# A frame is a list: [run, argument and local slots ...].


# --- entry points ----------------------------------------------------------------------

def load_program(source: str) -> Program:
    """Parse and check a contract; raises InvalidContract naming the rule (and line) broken.

    Runs on a VM thread (sandbox.py), and no other exception leaves it: the checker and compiler
    recurse at most to the nesting cap, so RecursionError or MemoryError here means the process
    itself is short of stack or memory, which is reported as the contract being too large."""
    return run_on_vm_thread(_load_program_here, source)


def _load_program_here(source: str) -> Program:
    try:
        return _load_program_checked(source)
    except RecursionError:
        raise InvalidContract(checker.DEPTH_MESSAGE) from None
    except MemoryError:
        raise InvalidContract("the contract is too large to load") from None


def _load_program_checked(source: str) -> Program:
    checked = checker.check_module(source, BUILTIN_ARITIES, METHOD_NAMES)
    # One budget for every constant and default: what they build is bounded, and paid for by the deploy.
    constants_run = Run(limits.contract_constants_gas_max, None)
    constants: dict[str, Any] = {}
    for name, expression in checked.constants:
        constants[name] = _evaluate_constant(constants_run, expression, constants, f"constant {name}")
    functions = {}
    for item in checked.functions:
        node = item.node
        functions[node.name] = Function(node.name, item.parameters, len(item.parameters) - len(item.defaults),
                                        node.lineno)
    for item in checked.functions:
        function = functions[item.node.name]
        defaults = [_evaluate_constant(constants_run, default, constants, f"default of {function.name}()")
                    for default in item.defaults]
        unbound = [UNBOUND] * len(item.local_names)
        function.frame_tails = tuple((defaults[given - function.required:] if given >= function.required else [])
                                     + unbound for given in range(len(item.parameters) + 1))
        scope = _Scope(item.parameters, item.local_names, constants, functions)
        function.body = compile_block(item.node.body, scope)
    constants_gas = limits.contract_constants_gas_max - constants_run.gas
    source_bytes = len(source.encode())
    return Program(crypto.hash_bytes(source.encode()), MappingProxyType(functions),
                   load_gas=load_gas_per_node * checked.node_count + constants_gas,
                   size_bytes=source_bytes + memory_bytes_per_node * checked.node_count
                   + memory_bytes_per_constant_gas * constants_gas)


def call_function(program: Program, function: str, args: tuple[Value, ...], host: Host,
                  gas_limit: int, deadline_ns: int | None = None) -> CallResult:
    """Call a public function; raises ContractError subclasses with .gas_used set (== gas_limit for OutOfGas).

    Private (underscore) functions cannot be called from outside. Runs on a VM thread (sandbox.py),
    and no Python exception but a ContractError leaves it. `deadline_ns` (time.monotonic_ns) is for
    read-only queries only: past it the call fails with query_timeout.
    """
    if type(gas_limit) is not int or not 0 <= gas_limit <= limits.contract_gas_max:
        raise VMFault("bad_argument", f"the gas limit is an integer from 0 to {limits.contract_gas_max}")
    return run_on_vm_thread(_call_function_here, program, function, args, host, gas_limit, deadline_ns)


def _call_function_here(program: Program, function: str, args: tuple[Value, ...], host: Host,
                        gas_limit: int, deadline_ns: int | None) -> CallResult:
    run = Run(gas_limit, host, deadline_ns)
    bind_meter = getattr(host, "bind_meter", None)
    if bind_meter is not None:   # a host that charges gas of its own (bytes stored) takes it from this run
        bind_meter(run)
    try:
        value = _call_public(run, program, function, args)
    except (ContractError, HostUnavailable) as error:
        error.gas_used = gas_limit - run.remaining()
        raise
    except RecursionError:
        # Deterministic: a VM thread always starts at the same depth (sandbox.py), and the caps keep
        # legal contracts far from the limit, so this is the same on every node.
        fault = VMFault("stack_exhausted", "the call nested deeper than the VM's stack allows")
        fault.gas_used = gas_limit
        raise fault from None
    except MemoryError:
        # Unreachable by gas: a call builds at most what its gas pays for (docs/CONTRACTS.md). Only a node
        # that is itself out of memory gets here; its state root then differs from the others', so it
        # cannot vote for this block and stops when it must commit it (a certified block it disagrees with).
        fault = VMFault("out_of_memory", "the node ran out of memory running the call")
        fault.gas_used = gas_limit
        raise fault from None
    except Exception as error:   # a VM or host bug: deterministic, so fail the call, loudly
        logger.exception("contract VM internal error in %s()", function)
        fault = VMFault("internal_error", f"the VM failed ({type(error).__name__})")
        fault.gas_used = gas_limit - run.remaining()
        raise fault from error
    return CallResult(value, gas_limit - run.remaining())


def _call_public(run: Run, program: Program, name: str, args: tuple) -> Value:
    function = program.functions.get(name) if type(name) is str else None
    if function is None or name.startswith("_"):
        raise VMFault("unknown_function", "no public function of that name")
    if type(args) is not tuple:
        raise VMFault("bad_argument", "call arguments are a tuple")
    if not function.required <= len(args) <= len(function.parameters):
        expected = f"{function.required} to {len(function.parameters)}" \
            if function.required < len(function.parameters) else str(function.required)
        raise VMFault("bad_argument", f"{name}() takes {expected} arguments, {len(args)} given")
    charge(run, call_gas + len(args))
    for argument in args:
        charge_value(run, argument)
    value = invoke(run, function, [run, *args])
    units = charge_value(run, value)
    if units * value_bytes_per_unit_max > limits.contract_value_bytes_max \
            and len(encode_value(value)) > limits.contract_value_bytes_max:
        raise VMFault("value_too_large", f"a returned value encodes to at most {limits.contract_value_bytes_max} bytes")
    return value


def invoke(run: Run, function: Function, frame: list) -> Value:
    """Run `function` on `frame` ([run, arguments...]); the caller has checked the argument count."""
    if run.depth >= limits.contract_call_depth_max:
        raise VMFault("call_depth", f"contract calls nest at most {limits.contract_call_depth_max} deep")
    frame += function.frame_tails[len(frame) - 1]
    run.depth += 1
    for statement in function.body:
        signal = statement(frame)
        if signal is not None:
            run.depth -= 1
            return signal[0]
    run.depth -= 1
    return None


def call_host(run: Run, name: str, args: tuple) -> Value:
    """Call host function `name`: base gas, then the size of the arguments, the call, the size of the result."""
    if run.host_gas is None:
        if run.host is None:
            raise VMFault("unknown_function", f"no function {name!r} (no host functions here)")
        run.host_gas = run.host.host_functions()
    gas = run.host_gas.get(name)
    if gas is None:
        raise VMFault("unknown_function", f"no function {name!r}")
    for argument in args:
        if type(argument) in CONTAINER_TYPES:
            charge_container(run, argument, 0)   # paid level by level as it is walked
        else:
            gas += scalar_units(argument)
    charge(run, gas)
    result = run.host.call_host(name, args)
    charge_value(run, result)
    return result


def _evaluate_constant(run: Run, expression: ast.expr, constants: Mapping[str, Any], what: str) -> Any:
    """Evaluate a checked constant expression once, at load, under the run-time caps, on `run`'s budget."""
    code = compile_expression(expression, _Scope((), (), constants, {}))
    try:
        charge(run, code.gas)
        return code.evaluate([run])
    except OutOfGas:
        raise checker.reject(expression, f"{what}: the constants and defaults together cost more than "
                                         f"{limits.contract_constants_gas_max} gas to build") from None
    except ContractError as error:
        raise checker.reject(expression, f"{what}: {error.message}") from None


# --- native errors ------------------------------------------------------------------------

NATIVE_ERRORS = (TypeError, ValueError, LookupError, ArithmeticError)
"""What Python's own operations raise on bad operands; a builtin or method call maps them to a VMFault."""


def native_fault(what: str, error: Exception) -> VMFault:
    """A VMFault with a fixed message for an exception raised by a Python builtin (never its text)."""
    if isinstance(error, TypeError):
        return VMFault("type_error", f"{what}: an argument has the wrong type")
    if isinstance(error, IndexError):
        return VMFault("index_error", f"{what}: index out of range")
    if isinstance(error, KeyError):
        return VMFault("key_error", f"{what}: key not found")
    if isinstance(error, ZeroDivisionError):
        return VMFault("division_by_zero", f"{what}: division by zero")
    if isinstance(error, OverflowError):
        return VMFault("value_error", f"{what}: an integer argument is out of range")
    return VMFault("value_error", f"{what}: an argument has the wrong value")


def type_error(message: str) -> VMFault:
    return VMFault("type_error", message)


def operand_error(symbol: str, left: object, right: object) -> VMFault:
    return type_error(f"unsupported operand types for {symbol}: {type_name(left)} and {type_name(right)}")


def sized_length(value: object) -> int:
    """len() of a sized value; a range too long for Python's len() counts as more than any cap."""
    try:
        return len(value)
    except OverflowError:
        return INT_LIMIT


# --- arithmetic ---------------------------------------------------------------------------

def add_values(run: Run, left: Any, right: Any) -> Any:
    left_type, right_type = type(left), type(right)
    if left_type in INT_TYPES and right_type in INT_TYPES:
        return checked_int(run, left + right)
    if left_type is right_type:
        if left_type is str or left_type is bytes:
            charge_text(run, text_size(left) + text_size(right))
            return left + right
        if left_type is list or left_type is tuple:
            charge_items(run, len(left) + len(right))
            return left + right
    raise operand_error("+", left, right)


def multiply_values(run: Run, left: Any, right: Any) -> Any:
    left_type, right_type = type(left), type(right)
    if left_type in INT_TYPES and right_type in INT_TYPES:
        if left.bit_length() + right.bit_length() - 1 > limits.contract_int_bits_max:
            raise VMFault("int_too_large", f"integers are limited to {limits.contract_int_bits_max} bits")
        return checked_int(run, left * right)
    if right_type in INT_TYPES and left_type in (str, bytes, list, tuple):
        return _repeat(run, left, right)
    if left_type in INT_TYPES and right_type in (str, bytes, list, tuple):
        return _repeat(run, right, left)
    raise operand_error("*", left, right)


def _repeat(run: Run, sequence: Any, count: int) -> Any:
    count = max(count, 0)
    if count > REPEAT_COUNT_MAX:   # Python would raise OverflowError, even for an empty sequence
        raise VMFault("value_error", "a repeat count is out of range")
    if type(sequence) is str or type(sequence) is bytes:
        charge_text(run, text_size(sequence) * count)
    else:
        charge_items(run, len(sequence) * count)
    return sequence * count


def power_values(run: Run, base: Any, exponent: Any) -> int:
    if type(base) not in INT_TYPES or type(exponent) not in INT_TYPES:
        raise operand_error("**", base, exponent)
    if exponent < 0:
        raise VMFault("value_error", "a negative exponent would make a float")
    if base in (0, 1, -1) or exponent == 0:
        return int(base ** exponent)
    # |base| >= 2**(bits-1), so the result has at least (bits-1)*exponent+1 bits: refuse before computing.
    if (abs(base).bit_length() - 1) * exponent + 1 > limits.contract_int_bits_max:
        raise VMFault("int_too_large", f"integers are limited to {limits.contract_int_bits_max} bits")
    return checked_int(run, base ** exponent)


def _integer_operands(symbol: str, left: Any, right: Any) -> None:
    if type(left) not in INT_TYPES or type(right) not in INT_TYPES:
        if symbol == "%" and type(left) in (str, bytes):
            raise type_error("string formatting with % is not supported")
        raise operand_error(symbol, left, right)


def subtract_values(run: Run, left: Any, right: Any) -> int:
    _integer_operands("-", left, right)
    return checked_int(run, left - right)


def floor_divide_values(run: Run, left: Any, right: Any) -> int:
    _integer_operands("//", left, right)
    if not right:
        raise VMFault("division_by_zero", "integer division by zero")
    return checked_int(run, left // right)


def modulo_values(run: Run, left: Any, right: Any) -> int:
    _integer_operands("%", left, right)
    if not right:
        raise VMFault("division_by_zero", "integer modulo by zero")
    return checked_int(run, left % right)


def shift_left_values(run: Run, left: Any, right: Any) -> int:
    _integer_operands("<<", left, right)
    if right < 0:
        raise VMFault("value_error", "negative shift count")
    if not left:
        return 0
    if left.bit_length() + right > limits.contract_int_bits_max:
        raise VMFault("int_too_large", f"integers are limited to {limits.contract_int_bits_max} bits")
    return checked_int(run, left << right)


def shift_right_values(run: Run, left: Any, right: Any) -> int:
    _integer_operands(">>", left, right)
    if right < 0:
        raise VMFault("value_error", "negative shift count")
    if right >= left.bit_length():
        return -1 if left < 0 else 0
    return checked_int(run, left >> right)


def _bitwise(symbol: str, native: Callable) -> Callable:
    def bitwise_values(run: Run, left: Any, right: Any) -> Any:
        _integer_operands(symbol, left, right)
        result = native(left, right)   # bool & bool stays a bool, as in Python
        return result if type(result) is bool else checked_int(run, result)
    return bitwise_values


BINARY_OPERATIONS: dict[type, Callable] = {
    ast.Add: add_values, ast.Sub: subtract_values, ast.Mult: multiply_values,
    ast.FloorDiv: floor_divide_values, ast.Mod: modulo_values, ast.Pow: power_values,
    ast.LShift: shift_left_values, ast.RShift: shift_right_values,
    ast.BitAnd: _bitwise("&", operator.and_), ast.BitOr: _bitwise("|", operator.or_),
    ast.BitXor: _bitwise("^", operator.xor),
}
"""Full semantics of each binary operator (the compiled closures try a small-int fast path first)."""
SMALL_INT_OPERATIONS: dict[type, Callable] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
}
"""Operators that are safe to apply natively to any two ints within the cap (results are checked after)."""
DIVISION_OPERATIONS: dict[type, Callable] = {ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def inplace_add(run: Run, left: Any, right: Any) -> Any:
    """`x += y`: a list is extended in place by any iterable, as in Python."""
    if type(left) is list:
        items = materialize(run, right)
        check_room(left, len(items))
        left.extend(items)
        return left
    return add_values(run, left, right)


def inplace_multiply(run: Run, left: Any, right: Any) -> Any:
    """`x *= n`: a list is repeated in place, as in Python."""
    if type(left) is list and type(right) in INT_TYPES:
        if right > REPEAT_COUNT_MAX:
            raise VMFault("value_error", "a repeat count is out of range")
        count = max(right, 0)   # Python empties the list for any count below 1 (and overflows past -2**63)
        charge_items(run, len(left) * count)
        left *= count
        return left
    return multiply_values(run, left, right)


INPLACE_OPERATIONS = {**BINARY_OPERATIONS, ast.Add: inplace_add, ast.Mult: inplace_multiply}


def negate(run: Run, value: Any) -> int:
    if type(value) not in INT_TYPES:
        raise type_error(f"bad operand type for unary -: {type_name(value)}")
    return checked_int(run, -value)


def invert(run: Run, value: Any) -> int:
    if type(value) not in INT_TYPES:
        raise type_error(f"bad operand type for unary ~: {type_name(value)}")
    return checked_int(run, ~value)


def positive(run: Run, value: Any) -> int:
    if type(value) not in INT_TYPES:
        raise type_error(f"bad operand type for unary +: {type_name(value)}")
    return +value


# --- comparisons ------------------------------------------------------------------------

def charge_comparison(run: Run, left: Any, right: Any) -> None:
    """Pay for Python comparing two values: free unless both are containers (then walk both)."""
    if type(left) in CONTAINER_TYPES and type(right) in CONTAINER_TYPES:
        charge_walk(run, left)
        charge_walk(run, right)


def equal(run: Run, left: Any, right: Any) -> bool:
    charge_comparison(run, left, right)
    return left == right


def not_equal(run: Run, left: Any, right: Any) -> bool:
    charge_comparison(run, left, right)
    return left != right


def _ordering(symbol: str, native: Callable) -> Callable:
    def compare_order(run: Run, left: Any, right: Any) -> bool:
        charge_comparison(run, left, right)
        if type(left) is type(right) and (type(left) is str or type(left) is bytes):
            # a str of 1-byte characters against one of 4-byte characters is compared one by one
            charge(run, min(len(left), len(right)) // text_bytes_per_gas)
        try:
            return native(left, right)
        except TypeError:
            raise type_error(f"'{symbol}' is not supported between {type_name(left)} and {type_name(right)}") \
                from None
    return compare_order


def contains(run: Run, item: Any, container: Any) -> bool:
    """`item in container`, with Python's result; `in` on an iterator is not allowed (it would consume it)."""
    kind = type(container)
    if kind is dict:
        check_key(item)
        return item in container
    if kind is list or kind is tuple:
        item_kind = type(item)
        if item_kind in CONTAINER_TYPES:
            charge_walk(run, container)
            charge_walk(run, item)
        elif item_kind is str or item_kind is bytes:   # each comparison may read all of item
            charge(run, len(container) * (1 + len(item) // text_bytes_per_gas))
        else:
            charge(run, len(container))
        return item in container
    if kind is str or kind is bytes:
        charge_search(run, container, item)
        try:
            return item in container
        except (TypeError, ValueError) as error:
            raise native_fault("in", error) from None
    if kind is range:   # Python would compare every element with a non-integer and find none equal
        return type(item) in INT_TYPES and item in container
    raise type_error(f"'in' needs a list, tuple, dict, str, bytes or range, not {type_name(container)}")


def not_contains(run: Run, item: Any, container: Any) -> bool:
    return not contains(run, item, container)


COMPARISONS: dict[type, Callable] = {
    ast.Eq: equal, ast.NotEq: not_equal,
    ast.Lt: _ordering("<", operator.lt), ast.LtE: _ordering("<=", operator.le),
    ast.Gt: _ordering(">", operator.gt), ast.GtE: _ordering(">=", operator.ge),
    ast.In: contains, ast.NotIn: not_contains,
    ast.Is: lambda run, left, right: left is right, ast.IsNot: lambda run, left, right: left is not right,
}
SMALL_INT_COMPARISONS: dict[type, Callable] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


# --- items ----------------------------------------------------------------------------------

def get_item(run: Run, container: Any, key: Any) -> Any:
    kind = type(container)
    if kind is dict:
        check_key(key)
        try:
            return container[key]
        except KeyError:
            raise VMFault("key_error", "key not found in dict") from None
    if kind in SIZED_TYPES:
        if type(key) not in INT_TYPES:
            raise type_error(f"{type_name(container)} indices are integers, not {type_name(key)}")
        try:
            return container[key]
        except IndexError:
            raise VMFault("index_error", f"{type_name(container)} index out of range") from None
    raise type_error(f"a {type_name(container)} is not subscriptable")


def set_item(run: Run, container: Any, key: Any, value: Any) -> None:
    kind = type(container)
    if kind is dict:
        check_new_key(key)
        if key not in container:
            check_room(container)
        container[key] = value
    elif kind is list:
        if type(key) not in INT_TYPES:
            raise type_error(f"list indices are integers, not {type_name(key)}")
        try:
            container[key] = value
        except IndexError:
            raise VMFault("index_error", "list assignment index out of range") from None
    else:
        raise type_error(f"a {type_name(container)} does not support item assignment")


def delete_item(run: Run, container: Any, key: Any) -> None:
    kind = type(container)
    if kind is dict:
        check_key(key)
        if key not in container:
            raise VMFault("key_error", "key not found in dict")
        del container[key]
    elif kind is list:
        if type(key) not in INT_TYPES:
            raise type_error(f"list indices are integers, not {type_name(key)}")
        try:
            del container[key]
        except IndexError:
            raise VMFault("index_error", "list index out of range") from None
    else:
        raise type_error(f"a {type_name(container)} does not support item deletion")


def get_slice(run: Run, container: Any, lower: Any, upper: Any, step: Any) -> Any:
    """container[lower:upper:step], paying for the items or bytes copied before copying them."""
    for bound in (lower, upper, step):
        if bound is not None and type(bound) not in INT_TYPES:
            raise type_error(f"slice indices are integers or None, not {type_name(bound)}")
    if step == 0:
        raise VMFault("value_error", "slice step cannot be zero")
    kind = type(container)
    if kind is range:
        return container[lower:upper:step]
    if kind not in SIZED_TYPES or kind is dict:
        raise type_error(f"a {type_name(container)} cannot be sliced")
    part = slice(lower, upper, step)
    if kind is list or kind is tuple:
        charge_items(run, len(range(*part.indices(len(container)))))
        return container[part]
    result = container[part]
    charge_text(run, text_size(result))
    return result


def unpack(run: Run, value: Any, count: int) -> tuple | list:
    """The `count` items of `value` for `a, b = value` (any iterable, as in Python)."""
    kind = type(value)
    if kind is tuple or kind is list:
        items = value
    elif kind in SIZED_TYPES:
        if sized_length(value) != count:
            raise VMFault("value_error", f"expected {count} values to unpack, got {sized_length(value)}")
        items = tuple(value)
    elif kind in ITERATOR_TYPES:
        items = tuple(itertools.islice(value, count + 1))
    else:
        raise type_error(f"cannot unpack a {type_name(value)}")
    if len(items) != count:
        raise VMFault("value_error", f"expected {count} values to unpack, got {len(items)}")
    return items


def iterable(value: Any) -> Any:
    """`value` if a for loop may iterate over it."""
    kind = type(value)
    if kind in SIZED_TYPES or kind in ITERATOR_TYPES:
        return value
    raise type_error(f"a {type_name(value)} is not iterable")


def materialize(run: Run, value: Any) -> list:
    """A new list of the items of an iterable, paid for and within the container cap."""
    kind = type(value)
    if kind in SIZED_TYPES:
        charge_items(run, sized_length(value))
        return list(value)
    if kind in ITERATOR_TYPES:
        items = list(itertools.islice(value, ITEMS_MAX + 1))
        charge_items(run, len(items))
        return items
    raise type_error(f"a {type_name(value)} is not iterable")


def sequence_argument(what: str, value: Any) -> Any:
    if type(value) not in SIZED_TYPES:
        raise type_error(f"{what} takes a list, tuple, dict, str, bytes or range, not {type_name(value)}")
    return value


# --- builtins --------------------------------------------------------------------------------

def builtin_len(run: Run, value: Any) -> int:
    if type(value) not in SIZED_TYPES:
        raise type_error(f"a {type_name(value)} has no len()")
    length = sized_length(value)
    if length >= INT_LIMIT:
        raise VMFault("int_too_large", "the range is too long for len()")
    return length


def builtin_range(run: Run, *bounds: Any) -> range:
    for bound in bounds:
        if type(bound) not in INT_TYPES:
            raise type_error(f"range() takes integers, not {type_name(bound)}")
    return range(*bounds)


def builtin_min(run: Run, *args: Any) -> Any:
    items = materialize(run, args[0]) if len(args) == 1 else list(args)
    if not items:
        raise VMFault("value_error", "min() of an empty sequence")
    charge_walk(run, items)
    return min(items)


def builtin_max(run: Run, *args: Any) -> Any:
    items = materialize(run, args[0]) if len(args) == 1 else list(args)
    if not items:
        raise VMFault("value_error", "max() of an empty sequence")
    charge_walk(run, items)
    return max(items)


def builtin_sum(run: Run, values: Any, start: Any = 0) -> int:
    items = materialize(run, values)
    for item in (start, *items):
        if type(item) not in INT_TYPES:
            raise type_error(f"sum() adds integers, not {type_name(item)}")
    return checked_int(run, sum(items, start))


def builtin_sorted(run: Run, values: Any) -> list:
    items = materialize(run, values)
    # Each item takes part in about log2(n) comparisons, each reading at most the item.
    charge(run, charge_walk(run, items) * len(items).bit_length())
    items.sort()
    return items


def builtin_abs(run: Run, value: Any) -> int:
    if type(value) not in INT_TYPES:
        raise type_error(f"abs() takes an integer, not {type_name(value)}")
    return checked_int(run, abs(value))


def builtin_str(run: Run, value: Any = "") -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind in INT_TYPES or value is None:
        text = str(value)
        charge_text(run, len(text))
        return text
    raise type_error(f"str() converts int, bool, str or None, not {type_name(value)}")


def builtin_int(run: Run, value: Any = 0, base: Any = None) -> int:
    if base is None and type(value) in INT_TYPES:
        return int(value)
    if type(value) is not str:
        raise type_error(f"int() converts int, bool or str, not {type_name(value)}")
    if base is not None and type(base) not in INT_TYPES:
        raise type_error(f"int() base is an integer, not {type_name(base)}")
    if len(value) > int_text_chars_max or not value.isascii():
        raise VMFault("value_error", f"int() parses at most {int_text_chars_max} ASCII characters")
    charge_text(run, len(value))
    return checked_int(run, int(value, 10 if base is None else base))


def builtin_bool(run: Run, value: Any = False) -> bool:
    return bool(value)


def builtin_list(run: Run, values: Any = ()) -> list:
    return materialize(run, values)


def builtin_tuple(run: Run, values: Any = ()) -> tuple:
    return tuple(materialize(run, values))


def builtin_dict(run: Run, source: Any = None) -> dict:
    if source is None:
        return {}
    if type(source) is dict:
        charge_items(run, len(source))
        return source.copy()
    result: dict = {}
    pairs = materialize(run, source)
    charge(run, len(pairs) * dict_pair_gas)
    for pair in pairs:
        if type(pair) not in (list, tuple, str, bytes):
            raise type_error(f"dict() takes (key, value) pairs, not {type_name(pair)}")
        key, value = unpack(run, pair, 2)
        check_new_key(key)
        result[key] = value
    return result


def builtin_enumerate(run: Run, values: Any, start: Any = 0) -> Any:
    if type(start) not in INT_TYPES or not -INT_LIMIT // 2 <= start < INT_LIMIT // 2:
        raise VMFault("value_error", f"enumerate() start is an integer below 2**{limits.contract_int_bits_max - 1}")
    return enumerate(iteration_source(run, "enumerate()", values), start)


def builtin_zip(run: Run, *sequences: Any) -> Any:
    sources = [iteration_source(run, "zip()", sequence) for sequence in sequences]
    if sources:   # each item it yields is a tuple of len(sources): paid for now, whoever consumes them
        charge(run, min(sized_length(source) for source in sources) * len(sources))
    return zip(*sources)


def builtin_reversed(run: Run, values: Any) -> Any:
    return reversed(iteration_source(run, "reversed()", values))


def iteration_source(run: Run, what: str, value: Any) -> Any:
    """What an iterator-making builtin iterates over: the value itself, or for a dict a paid copy of its
    keys, so that no iterator a contract holds ever sees a dict change size (Python would raise)."""
    sequence_argument(what, value)
    if type(value) is dict:
        charge_items(run, len(value))
        return list(value)
    return value


def builtin_revert(run: Run, reason: Any) -> None:
    if type(reason) is not str:
        raise type_error(f"revert() takes a str reason, not {type_name(reason)}")
    raise Revert(reason)


def builtin_bytes_of_hex(run: Run, text: Any) -> bytes:
    if type(text) is not str:
        raise type_error(f"bytes_of_hex() takes a str, not {type_name(text)}")
    charge_text(run, len(text) // 2)
    return bytes.fromhex(text)


BUILTINS: dict[str, tuple[Callable, int, int]] = {
    "len": (builtin_len, 1, 1), "range": (builtin_range, 1, 3),
    "min": (builtin_min, 1, ITEMS_MAX), "max": (builtin_max, 1, ITEMS_MAX),
    "sum": (builtin_sum, 1, 2), "sorted": (builtin_sorted, 1, 1), "abs": (builtin_abs, 1, 1),
    "str": (builtin_str, 0, 1), "int": (builtin_int, 0, 2), "bool": (builtin_bool, 0, 1),
    "list": (builtin_list, 0, 1), "tuple": (builtin_tuple, 0, 1), "dict": (builtin_dict, 0, 1),
    "enumerate": (builtin_enumerate, 1, 2), "zip": (builtin_zip, 0, ITEMS_MAX),
    "reversed": (builtin_reversed, 1, 1), "revert": (builtin_revert, 1, 1),
    "bytes_of_hex": (builtin_bytes_of_hex, 1, 1),
}
"""Name -> (implementation(run, *args), fewest arguments, most arguments)."""
BUILTIN_ARITIES = MappingProxyType({name: (fewest, most) for name, (_, fewest, most) in BUILTINS.items()})


# --- methods ------------------------------------------------------------------------------------

def list_append(run: Run, items: list, value: Any) -> None:
    check_room(items)
    items.append(value)


def list_extend(run: Run, items: list, values: Any) -> None:
    inplace_add(run, items, values)


def list_insert(run: Run, items: list, index: Any, value: Any) -> None:
    if type(index) not in INT_TYPES:
        raise type_error(f"list.insert() index is an integer, not {type_name(index)}")
    check_room(items)
    items.insert(index, value)


def list_pop(run: Run, items: list, index: Any = -1) -> Any:
    if type(index) not in INT_TYPES:
        raise type_error(f"list.pop() index is an integer, not {type_name(index)}")
    return items.pop(index)


def list_remove(run: Run, items: list, value: Any) -> None:
    contains(run, value, items)   # pays for the comparisons
    items.remove(value)


def list_index(run: Run, items: list, value: Any) -> int:
    contains(run, value, items)
    return items.index(value)


def list_count(run: Run, items: list, value: Any) -> int:
    contains(run, value, items)
    return items.count(value)


def copy_container(run: Run, container: list | dict) -> list | dict:
    charge_items(run, len(container))
    return container.copy()


def list_reverse(run: Run, items: list) -> None:
    charge(run, len(items))
    items.reverse()


def dict_get(run: Run, mapping: dict, key: Any, default: Any = None) -> Any:
    check_key(key)
    return mapping.get(key, default)


def dict_keys(run: Run, mapping: dict) -> list:
    charge_items(run, len(mapping))
    return list(mapping)


def dict_values(run: Run, mapping: dict) -> list:
    charge_items(run, len(mapping))
    return list(mapping.values())


def dict_items(run: Run, mapping: dict) -> list:
    charge_items(run, len(mapping))
    charge(run, len(mapping))   # and the (key, value) tuples
    return list(mapping.items())


def dict_pop(run: Run, mapping: dict, key: Any, *default: Any) -> Any:
    check_key(key)
    return mapping.pop(key, *default)


def dict_setdefault(run: Run, mapping: dict, key: Any, default: Any = None) -> Any:
    check_new_key(key)
    if key not in mapping:
        check_room(mapping)
    return mapping.setdefault(key, default)


def dict_update(run: Run, mapping: dict, other: Any) -> None:
    if type(other) is not dict:
        raise type_error(f"dict.update() takes a dict, not {type_name(other)}")
    charge(run, len(other))
    check_room(mapping, sum(1 for key in other if key not in mapping))
    mapping.update(other)


def charge_search(run: Run, text: str | bytes, pattern: Any) -> None:
    """Pay for CPython searching `text` for `pattern`: at every place the pattern fits it may compare up
    to the whole pattern (its default search's worst case; texts this short rarely get the linear one)."""
    length = len(text)
    gas = length // text_bytes_per_gas
    if type(pattern) is str or type(pattern) is bytes:
        width = len(pattern)
        gas += max(length - width + 1, 0) * width // search_comparisons_per_gas
    charge(run, gas)


def text_search(name: str) -> Callable:
    """startswith, endswith, find: Python's own, paid by the comparisons they may make."""
    def search(run: Run, text: str | bytes, pattern: Any, *bounds: Any) -> Any:
        if name == "find":
            charge_search(run, text, pattern)
        else:   # startswith, endswith compare at one place: the pattern's (or each pattern's) length
            charge(run, text_size(text) // 32 + (len(pattern) if type(pattern) is tuple else 0))
        return getattr(text, name)(pattern, *bounds)
    return search


def text_transform(name: str) -> Callable:
    """upper, lower, strip: paid by the characters read before the call, and by the result's size after
    (case mapping makes at most 3x the input, so building it is within what was paid)."""
    def transform(run: Run, text: str, *args: Any) -> str:
        length = len(text)
        charge(run, length // text_bytes_per_gas)   # read whole even when nothing is made (strip of spaces)
        if not text.isascii():   # Unicode case mapping is about 10x slower than ASCII
            charge(run, length // non_ascii_chars_per_gas)
        if args and type(args[0]) is str:   # strip(chars) tests each stripped character against all of chars
            charge(run, length * len(args[0]) // strip_comparisons_per_gas)
        result = getattr(text, name)(*args)
        charge_text(run, text_size(result))
        return result
    return transform


def str_split(run: Run, text: str, separator: Any = None, splits_max: Any = -1) -> list:
    charge_text(run, text_size(text))
    charge_search(run, text, separator)
    parts = text.split(separator, splits_max)
    charge_items(run, len(parts))
    return parts


def str_join(run: Run, separator: str, values: Any) -> str:
    parts = materialize(run, values)
    for part in parts:
        if type(part) is not str:
            raise type_error(f"str.join() joins str items, not {type_name(part)}")
    gaps = max(len(parts) - 1, 0)
    # Too long by characters is too long in UTF-8 bytes as well: refused before sizing each part, which
    # encodes every non-ASCII part (4,000 copies of one 3,000-character part took ~19 ms for 8,600 gas)
    characters = sum(len(part) for part in parts) + len(separator) * gaps
    if characters > TEXT_BYTES_MAX:
        charge_text(run, characters)   # raises text_too_large; nothing to pay for
    charge_text(run, sum(text_size(part) for part in parts) + text_size(separator) * gaps)
    return separator.join(parts)


def str_replace(run: Run, text: str, old: Any, new: Any, count: Any = -1) -> str:
    if type(old) is not str or type(new) is not str or type(count) not in INT_TYPES:
        raise type_error("str.replace() takes (str, str[, int])")
    charge_search(run, text, old)   # twice: counting, then replacing
    charge_search(run, text, old)
    # CPython reads (and may widen to the text's kind) both arguments even when `old` cannot occur:
    # ','.replace(4,096 wide characters, 16,384 more) took ~19 µs for 28 gas before this charge
    charge(run, (text_size(old) + text_size(new)) // text_bytes_per_gas)
    occurrences = text.count(old)
    if count >= 0:
        occurrences = min(occurrences, count)
    charge_text(run, text_size(text) + occurrences * (text_size(new) - text_size(old)))
    return text.replace(old, new, occurrences)


def str_encode(run: Run, text: str) -> bytes:
    charge_text(run, text_size(text))
    return text.encode()


def bytes_hex(run: Run, data: bytes) -> str:
    charge_text(run, 2 * len(data))
    return data.hex()


def bytes_decode(run: Run, data: bytes) -> str:
    charge_text(run, len(data))
    return data.decode()


_SEARCH = {name: text_search(name) for name in ("startswith", "endswith", "find")}
METHODS: dict[str, dict[type, tuple[Callable, int, int]]] = {
    "append": {list: (list_append, 1, 1)}, "extend": {list: (list_extend, 1, 1)},
    "insert": {list: (list_insert, 2, 2)}, "pop": {list: (list_pop, 0, 1), dict: (dict_pop, 1, 2)},
    "remove": {list: (list_remove, 1, 1)}, "index": {list: (list_index, 1, 1)},
    "count": {list: (list_count, 1, 1)}, "reverse": {list: (list_reverse, 0, 0)},
    "copy": {list: (copy_container, 0, 0), dict: (copy_container, 0, 0)},
    "get": {dict: (dict_get, 1, 2)}, "keys": {dict: (dict_keys, 0, 0)}, "values": {dict: (dict_values, 0, 0)},
    "items": {dict: (dict_items, 0, 0)}, "setdefault": {dict: (dict_setdefault, 1, 2)},
    "update": {dict: (dict_update, 1, 1)},
    "startswith": {str: (_SEARCH["startswith"], 1, 3), bytes: (_SEARCH["startswith"], 1, 3)},
    "endswith": {str: (_SEARCH["endswith"], 1, 3), bytes: (_SEARCH["endswith"], 1, 3)},
    "find": {str: (_SEARCH["find"], 1, 3), bytes: (_SEARCH["find"], 1, 3)},
    "upper": {str: (text_transform("upper"), 0, 0)}, "lower": {str: (text_transform("lower"), 0, 0)},
    "strip": {str: (text_transform("strip"), 0, 1)}, "split": {str: (str_split, 0, 2)},
    "join": {str: (str_join, 1, 1)}, "replace": {str: (str_replace, 2, 3)}, "encode": {str: (str_encode, 0, 0)},
    "hex": {bytes: (bytes_hex, 0, 0)}, "decode": {bytes: (bytes_decode, 0, 0)},
}
"""Method name -> receiver type -> (implementation(run, receiver, *args), fewest, most arguments)."""
METHOD_NAMES = frozenset(METHODS)


# --- the compiler: expressions --------------------------------------------------------------

class _Scope:
    """What names mean while compiling one function (or a constant expression)."""

    __slots__ = ("slots", "parameters", "constants", "functions")

    def __init__(self, parameters: tuple[str, ...], local_names: tuple[str, ...], constants: Mapping[str, Any],
                 functions: Mapping[str, Function]) -> None:
        self.slots = {name: index for index, name in enumerate((*parameters, *local_names), start=1)}
        self.parameters = frozenset(parameters)
        self.constants = constants
        self.functions = functions


NOT_CONSTANT = _Signal("NOT_CONSTANT")


class Code:
    """A compiled expression: `evaluate(frame)` computes it, `gas` is its static cost."""

    __slots__ = ("evaluate", "gas", "constant")

    def __init__(self, evaluate: Callable, gas: int, constant: Any = NOT_CONSTANT) -> None:
        self.evaluate = evaluate
        self.gas = gas
        """Gas of the nodes always evaluated with this one; the enclosing statement charges it."""
        self.constant = constant
        """The value, if this is a literal or a module constant (lets operators specialize)."""


def compile_expression(node: ast.expr, scope: _Scope) -> Code:
    return EXPRESSION_COMPILERS[type(node)](node, scope)


def constant_code(value: Any, gas: int = leaf_gas) -> Code:
    return Code(lambda frame: value, gas, value)


def unbound_error(name: str) -> VMFault:
    return VMFault("unbound_local", f"local variable {name!r} is read before it is assigned")


def _compile_constant(node: ast.Constant, scope: _Scope) -> Code:
    return constant_code(node.value)


def _compile_name(node: ast.Name, scope: _Scope) -> Code:
    name = node.id
    slot = scope.slots.get(name)
    if slot is None:
        return constant_code(scope.constants[name])
    if name in scope.parameters:   # always bound: a parameter cannot be deleted
        return Code(operator.itemgetter(slot), leaf_gas)

    def load_local(frame: list) -> Any:
        value = frame[slot]
        if value is UNBOUND:
            raise unbound_error(name)
        return value
    return Code(load_local, leaf_gas)


def _compile_binary(node: ast.BinOp, scope: _Scope) -> Code:
    left = compile_expression(node.left, scope)
    right = compile_expression(node.right, scope)
    return Code(binary_closure(type(node.op), left, right), binary_gas + left.gas + right.gas)


def binary_closure(kind: type, left: Code, right: Code) -> Callable:
    """The closure of `left <op> right`: native small-int arithmetic first, full semantics otherwise."""
    full = BINARY_OPERATIONS[kind]
    native = SMALL_INT_OPERATIONS.get(kind) or DIVISION_OPERATIONS.get(kind)
    evaluate_left, evaluate_right, constant = left.evaluate, right.evaluate, right.constant
    if native is None:
        return lambda frame: full(frame[0], evaluate_left(frame), evaluate_right(frame))
    if type(constant) is int and (constant or kind not in DIVISION_OPERATIONS):
        def binary_with_constant(frame: list) -> Any:
            value = evaluate_left(frame)
            if type(value) is int:
                result = native(value, constant)
                if -SMALL_INT_LIMIT < result < SMALL_INT_LIMIT:
                    return result
            return full(frame[0], value, constant)
        return binary_with_constant

    def binary(frame: list) -> Any:
        value = evaluate_left(frame)
        other = evaluate_right(frame)
        if type(value) is int and type(other) is int and (other or kind not in DIVISION_OPERATIONS):
            result = native(value, other)
            if -SMALL_INT_LIMIT < result < SMALL_INT_LIMIT:
                return result
        return full(frame[0], value, other)
    return binary


def _compile_unary(node: ast.UnaryOp, scope: _Scope) -> Code:
    operand = compile_expression(node.operand, scope)
    evaluate = operand.evaluate
    gas = unary_gas + operand.gas
    kind = type(node.op)
    if kind is ast.Not:
        return Code(lambda frame: not evaluate(frame), gas)
    if kind is ast.USub and type(operand.constant) is int:
        return constant_code(-operand.constant, gas)   # a negative literal
    full = {ast.USub: negate, ast.UAdd: positive, ast.Invert: invert}[kind]
    return Code(lambda frame: full(frame[0], evaluate(frame)), gas)


def _compile_bool_operation(node: ast.BoolOp, scope: _Scope) -> Code:
    first, *others = [compile_expression(value, scope) for value in node.values]
    evaluate_first = first.evaluate
    rest = tuple((code.evaluate, code.gas) for code in others)
    stop_when_true = isinstance(node.op, ast.Or)

    def bool_operation(frame: list) -> Any:
        value = evaluate_first(frame)
        for evaluate_next, next_gas in rest:
            if bool(value) is stop_when_true:
                return value
            run = frame[0]
            run.gas -= next_gas
            if run.gas < 0:
                run.refuel()
            value = evaluate_next(frame)
        return value
    return Code(bool_operation, first.gas + bool_op_gas * len(rest))


def _compile_if_expression(node: ast.IfExp, scope: _Scope) -> Code:
    test = compile_expression(node.test, scope)
    body = compile_expression(node.body, scope)
    orelse = compile_expression(node.orelse, scope)
    evaluate_test, evaluate_body, evaluate_orelse = test.evaluate, body.evaluate, orelse.evaluate
    body_gas, orelse_gas = body.gas, orelse.gas

    def if_expression(frame: list) -> Any:
        run = frame[0]
        if evaluate_test(frame):
            run.gas -= body_gas
            evaluate = evaluate_body
        else:
            run.gas -= orelse_gas
            evaluate = evaluate_orelse
        if run.gas < 0:
            run.refuel()
        return evaluate(frame)
    return Code(if_expression, if_expression_gas + test.gas)


def _compile_compare(node: ast.Compare, scope: _Scope) -> Code:
    left = compile_expression(node.left, scope)
    rights = [compile_expression(comparator, scope) for comparator in node.comparators]
    kinds = [type(operator_node) for operator_node in node.ops]
    gas = compare_gas + left.gas + rights[0].gas
    if len(kinds) == 1:
        return Code(compare_closure(kinds[0], left, rights[0]), gas)
    evaluate_left = left.evaluate
    links = tuple((COMPARISONS[kind], right.evaluate, compare_gas + right.gas) for kind, right in zip(kinds, rights))

    def compare_chain(frame: list) -> bool:
        run = frame[0]
        value = evaluate_left(frame)
        for index, (compare, evaluate_right, link_gas) in enumerate(links):
            if index:   # the first link is paid with the statement
                run.gas -= link_gas
                if run.gas < 0:
                    run.refuel()
            other = evaluate_right(frame)
            if not compare(run, value, other):
                return False
            value = other
        return True
    return Code(compare_chain, gas)


def compare_closure(kind: type, left: Code, right: Code) -> Callable:
    """The closure of one comparison, with native fast paths where Python's own is safe and free."""
    full = COMPARISONS[kind]
    evaluate_left, evaluate_right, constant = left.evaluate, right.evaluate, right.constant
    if kind is ast.Is or kind is ast.IsNot:
        if constant is None:
            if kind is ast.Is:
                return lambda frame: evaluate_left(frame) is None
            return lambda frame: evaluate_left(frame) is not None
        return lambda frame: full(None, evaluate_left(frame), evaluate_right(frame))
    if kind is ast.Eq or kind is ast.NotEq:
        return _equality_closure(kind is ast.Eq, left, right)
    native = SMALL_INT_COMPARISONS.get(kind)
    if native is None:   # in, not in
        want = kind is ast.In

        def compare_in(frame: list) -> bool:
            value = evaluate_left(frame)
            container = evaluate_right(frame)
            if type(container) is dict and type(value) in KEY_TYPES:
                return (value in container) is want
            return full(frame[0], value, container)
        return compare_in

    def compare_order(frame: list) -> bool:
        value = evaluate_left(frame)
        other = evaluate_right(frame)
        if type(value) is int and type(other) is int:
            return native(value, other)
        return full(frame[0], value, other)
    return compare_order


def _equality_closure(want: bool, left: Code, right: Code) -> Callable:
    evaluate_left, evaluate_right, constant = left.evaluate, right.evaluate, right.constant
    if type(constant) in SCALAR_TYPES:   # comparing with a scalar never recurses
        if want:
            return lambda frame: evaluate_left(frame) == constant
        return lambda frame: evaluate_left(frame) != constant

    def compare_equal(frame: list) -> bool:
        value = evaluate_left(frame)
        other = evaluate_right(frame)
        if type(value) in CONTAINER_TYPES and type(other) in CONTAINER_TYPES:
            charge_comparison(frame[0], value, other)
        return (value == other) is want
    return compare_equal


def _compile_subscript(node: ast.Subscript, scope: _Scope) -> Code:
    container = compile_expression(node.value, scope)
    if isinstance(node.slice, ast.Slice):
        return _compile_slice(container, node.slice, scope)
    key = compile_expression(node.slice, scope)
    evaluate_container, evaluate_key = container.evaluate, key.evaluate

    def subscript(frame: list) -> Any:
        value = evaluate_container(frame)
        index = evaluate_key(frame)
        kind = type(value)
        if (kind is dict and type(index) in KEY_TYPES) or (kind is list and type(index) is int):
            try:
                return value[index]
            except LookupError:
                pass   # get_item raises the fault
        return get_item(frame[0], value, index)
    return Code(subscript, subscript_gas + container.gas + key.gas)


NONE_CODE = Code(lambda frame: None, 0, None)


def _compile_slice(container: Code, part: ast.Slice, scope: _Scope) -> Code:
    lower, upper, step = (NONE_CODE if bound is None else compile_expression(bound, scope)
                          for bound in (part.lower, part.upper, part.step))
    evaluate_container = container.evaluate
    evaluate_lower, evaluate_upper, evaluate_step = lower.evaluate, upper.evaluate, step.evaluate

    def get_slice_of(frame: list) -> Any:
        return get_slice(frame[0], evaluate_container(frame), evaluate_lower(frame), evaluate_upper(frame),
                         evaluate_step(frame))
    return Code(get_slice_of, slice_gas + container.gas + lower.gas + upper.gas + step.gas)


def _compile_list(node: ast.List, scope: _Scope) -> Code:
    items = [compile_expression(item, scope) for item in node.elts]
    evaluators = tuple(item.evaluate for item in items)
    gas = display_gas + len(items) + sum(item.gas for item in items)
    if not evaluators:
        return Code(lambda frame: [], gas)
    return Code(lambda frame: [evaluate(frame) for evaluate in evaluators], gas)


def _compile_tuple(node: ast.Tuple, scope: _Scope) -> Code:
    items = [compile_expression(item, scope) for item in node.elts]
    gas = display_gas + len(items) + sum(item.gas for item in items)
    if all(item.constant is not NOT_CONSTANT for item in items):
        return constant_code(tuple(item.constant for item in items), gas)
    evaluators = tuple(item.evaluate for item in items)
    if len(evaluators) == 2:
        first, second = evaluators
        return Code(lambda frame: (first(frame), second(frame)), gas)
    return Code(lambda frame: tuple([evaluate(frame) for evaluate in evaluators]), gas)


def _compile_dict(node: ast.Dict, scope: _Scope) -> Code:
    parts = [compile_expression(part, scope) for pair in zip(node.keys, node.values) for part in pair]
    evaluators = tuple(part.evaluate for part in parts)
    gas = display_gas + len(node.keys) + sum(part.gas for part in parts)

    def dict_display(frame: list) -> dict:
        flat = [evaluate(frame) for evaluate in evaluators]   # all keys and values first, as Python does
        result = {}
        for index in range(0, len(flat), 2):
            check_new_key(flat[index])
            result[flat[index]] = flat[index + 1]
        return result
    return Code(dict_display, gas)


def _compile_call(node: ast.Call, scope: _Scope) -> Code:
    arguments = [compile_expression(argument, scope) for argument in node.args]
    evaluators = tuple(argument.evaluate for argument in arguments)
    argument_gas = sum(argument.gas for argument in arguments)
    if isinstance(node.func, ast.Attribute):
        receiver = compile_expression(node.func.value, scope)
        return Code(method_call_closure(node.func.attr, receiver.evaluate, evaluators),
                    builtin_gas + receiver.gas + argument_gas)
    name = node.func.id
    function = scope.functions.get(name)
    if function is not None:
        return Code(function_call_closure(function, evaluators), call_gas + len(evaluators) + argument_gas)
    if name in BUILTINS:
        return Code(builtin_call_closure(name, evaluators), builtin_gas + argument_gas)
    return Code(host_call_closure(name, evaluators), host_call_gas + argument_gas)


def function_call_closure(function: Function, evaluators: tuple[Callable, ...]) -> Callable:
    if len(evaluators) == 1:
        (first,) = evaluators
        return lambda frame: invoke(frame[0], function, [frame[0], first(frame)])
    if len(evaluators) == 2:
        first, second = evaluators
        return lambda frame: invoke(frame[0], function, [frame[0], first(frame), second(frame)])

    def call_function_n(frame: list) -> Any:
        new_frame = [frame[0]]
        for evaluate in evaluators:
            new_frame.append(evaluate(frame))
        return invoke(frame[0], function, new_frame)
    return call_function_n


def builtin_call_closure(name: str, evaluators: tuple[Callable, ...]) -> Callable:
    implementation = BUILTINS[name][0]
    what = f"{name}()"
    if len(evaluators) == 1:
        (first,) = evaluators

        def call_builtin_1(frame: list) -> Any:
            argument = first(frame)
            try:
                return implementation(frame[0], argument)
            except NATIVE_ERRORS as error:
                raise native_fault(what, error) from None
        return call_builtin_1

    def call_builtin(frame: list) -> Any:
        arguments = [evaluate(frame) for evaluate in evaluators]
        try:
            return implementation(frame[0], *arguments)
        except NATIVE_ERRORS as error:
            raise native_fault(what, error) from None
    return call_builtin


def method_call_closure(name: str, evaluate_receiver: Callable, evaluators: tuple[Callable, ...]) -> Callable:
    """`receiver.name(args)`: looked up by the receiver's exact type in METHODS (arity settled here)."""
    count = len(evaluators)
    dispatch = {kind: implementation if fewest <= count <= most else _wrong_arity(kind, name, fewest, most)
                for kind, (implementation, fewest, most) in METHODS[name].items()}

    def call_method(frame: list) -> Any:
        receiver = evaluate_receiver(frame)
        arguments = [evaluate(frame) for evaluate in evaluators] if count else ()
        implementation = dispatch.get(type(receiver))
        if implementation is None:
            raise type_error(f"a {type_name(receiver)} has no method {name}()")
        try:
            return implementation(frame[0], receiver, *arguments)
        except NATIVE_ERRORS as error:
            raise native_fault(f"{type_name(receiver)}.{name}()", error) from None
    if count != 1:
        return call_method
    (first,) = evaluators

    def call_method_1(frame: list) -> Any:
        receiver = evaluate_receiver(frame)
        argument = first(frame)
        implementation = dispatch.get(type(receiver))
        if implementation is None:
            raise type_error(f"a {type_name(receiver)} has no method {name}()")
        try:
            return implementation(frame[0], receiver, argument)
        except NATIVE_ERRORS as error:
            raise native_fault(f"{type_name(receiver)}.{name}()", error) from None
    return call_method_1


def _wrong_arity(kind: type, name: str, fewest: int, most: int) -> Callable:
    expected = str(fewest) if fewest == most else f"{fewest} to {most}"

    def wrong_arity(run: Run, receiver: Any, *arguments: Any) -> None:
        raise VMFault("bad_argument", f"{_TYPE_LABELS[kind]}.{name}() takes {expected} arguments, "
                                      f"{len(arguments)} given")
    return wrong_arity


_TYPE_LABELS = {list: "list", dict: "dict", str: "str", bytes: "bytes"}


def host_call_closure(name: str, evaluators: tuple[Callable, ...]) -> Callable:
    if not evaluators:
        return lambda frame: call_host(frame[0], name, ())
    if len(evaluators) == 1:
        (first,) = evaluators
        return lambda frame: call_host(frame[0], name, (first(frame),))
    if len(evaluators) == 2:
        first, second = evaluators
        return lambda frame: call_host(frame[0], name, (first(frame), second(frame)))
    return lambda frame: call_host(frame[0], name, tuple([evaluate(frame) for evaluate in evaluators]))


EXPRESSION_COMPILERS: dict[type, Callable[[Any, _Scope], Code]] = {
    ast.Constant: _compile_constant, ast.Name: _compile_name, ast.BinOp: _compile_binary,
    ast.UnaryOp: _compile_unary, ast.BoolOp: _compile_bool_operation, ast.IfExp: _compile_if_expression,
    ast.Compare: _compile_compare, ast.Subscript: _compile_subscript, ast.Call: _compile_call,
    ast.List: _compile_list, ast.Tuple: _compile_tuple, ast.Dict: _compile_dict,
}


# --- the compiler: statements --------------------------------------------------------------
# A statement closure charges the static gas of what it always evaluates, then runs. Block bodies
# are run by the compound statement's own loop (no closure per block), so the interpreter uses
# about one Python frame per nesting level.

def compile_block(statements: list[ast.stmt], scope: _Scope) -> tuple[Callable, ...]:
    return tuple(STATEMENT_COMPILERS[type(statement)](statement, scope) for statement in statements
                 if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)))


def compile_target(node: ast.expr, scope: _Scope) -> tuple[Callable, int]:
    """(store(frame, value), static gas) for an assignment target."""
    if isinstance(node, ast.Name):
        slot = scope.slots[node.id]

        def store_name(frame: list, value: Any) -> None:
            frame[slot] = value
        return store_name, store_gas
    if isinstance(node, ast.Subscript):
        container = compile_expression(node.value, scope)
        key = compile_expression(node.slice, scope)
        evaluate_container, evaluate_key = container.evaluate, key.evaluate

        def store_item(frame: list, value: Any) -> None:
            set_item(frame[0], evaluate_container(frame), evaluate_key(frame), value)
        return store_item, subscript_gas + container.gas + key.gas
    parts = [compile_target(item, scope) for item in node.elts]
    stores = tuple(store for store, _ in parts)
    count = len(stores)

    def store_unpacked(frame: list, value: Any) -> None:
        for store, item in zip(stores, unpack(frame[0], value, count)):
            store(frame, item)
    return store_unpacked, store_gas + sum(gas for _, gas in parts)


def _compile_assign(node: ast.Assign | ast.AnnAssign, scope: _Scope) -> Callable:
    value = compile_expression(node.value, scope)
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    parts = [compile_target(target, scope) for target in targets]
    gas = statement_gas + value.gas + sum(part_gas for _, part_gas in parts)
    evaluate = value.evaluate
    if len(targets) == 1 and isinstance(targets[0], ast.Name):
        slot = scope.slots[targets[0].id]

        def assign_name(frame: list) -> None:
            run = frame[0]
            run.gas -= gas
            if run.gas < 0:
                run.refuel()
            frame[slot] = evaluate(frame)
        return assign_name
    stores = tuple(store for store, _ in parts)

    def assign(frame: list) -> None:
        run = frame[0]
        run.gas -= gas
        if run.gas < 0:
            run.refuel()
        result = evaluate(frame)
        for store in stores:
            store(frame, result)
    return assign


def _compile_augmented_assign(node: ast.AugAssign, scope: _Scope) -> Callable:
    kind = type(node.op)
    full = INPLACE_OPERATIONS[kind]
    native = SMALL_INT_OPERATIONS.get(kind)
    value = compile_expression(node.value, scope)
    evaluate = value.evaluate
    if isinstance(node.target, ast.Subscript):
        return _compile_augmented_item(node.target, full, value, scope)
    name = node.target.id
    slot = scope.slots[name]
    gas = statement_gas + leaf_gas + binary_gas + store_gas + value.gas

    def augmented_assign(frame: list) -> None:
        run = frame[0]
        run.gas -= gas
        if run.gas < 0:
            run.refuel()
        current = frame[slot]
        if current is UNBOUND:
            raise unbound_error(name)
        operand = evaluate(frame)
        if native is not None and type(current) is int and type(operand) is int:
            result = native(current, operand)
            if -SMALL_INT_LIMIT < result < SMALL_INT_LIMIT:
                frame[slot] = result
                return
        frame[slot] = full(run, current, operand)
    return augmented_assign


def _compile_augmented_item(target: ast.Subscript, full: Callable, value: Code, scope: _Scope) -> Callable:
    container = compile_expression(target.value, scope)
    key = compile_expression(target.slice, scope)
    evaluate_container, evaluate_key, evaluate = container.evaluate, key.evaluate, value.evaluate
    gas = statement_gas + 2 * subscript_gas + binary_gas + container.gas + key.gas + value.gas

    def augmented_item(frame: list) -> None:
        run = frame[0]
        run.gas -= gas
        if run.gas < 0:
            run.refuel()
        held = evaluate_container(frame)
        index = evaluate_key(frame)
        current = get_item(run, held, index)
        set_item(run, held, index, full(run, current, evaluate(frame)))
    return augmented_item


def _compile_return(node: ast.Return, scope: _Scope) -> Callable:
    if node.value is None:
        value = constant_code(None, 0)
    else:
        value = compile_expression(node.value, scope)
    gas = statement_gas + value.gas
    evaluate = value.evaluate

    def return_value(frame: list) -> tuple:
        run = frame[0]
        run.gas -= gas
        if run.gas < 0:
            run.refuel()
        return (evaluate(frame),)
    return return_value


def _compile_expression_statement(node: ast.Expr, scope: _Scope) -> Callable:
    value = compile_expression(node.value, scope)
    gas = statement_gas + value.gas
    evaluate = value.evaluate

    def expression_statement(frame: list) -> None:
        run = frame[0]
        run.gas -= gas
        if run.gas < 0:
            run.refuel()
        evaluate(frame)
    return expression_statement


def _compile_simple(signal: _Signal | None) -> Callable:
    """pass, break, continue: pay for the statement, then go on or leave the loop."""
    def compile_simple(node: ast.stmt, scope: _Scope) -> Callable:
        def simple_statement(frame: list) -> _Signal | None:
            run = frame[0]
            run.gas -= statement_gas
            if run.gas < 0:
                run.refuel()
            return signal
        return simple_statement
    return compile_simple


def _compile_delete(node: ast.Delete, scope: _Scope) -> Callable:
    targets = [(compile_expression(target.value, scope), compile_expression(target.slice, scope))
               for target in node.targets]
    gas = statement_gas + sum(subscript_gas + container.gas + key.gas for container, key in targets)
    evaluators = tuple((container.evaluate, key.evaluate) for container, key in targets)

    def delete(frame: list) -> None:
        run = frame[0]
        run.gas -= gas
        if run.gas < 0:
            run.refuel()
        for evaluate_container, evaluate_key in evaluators:
            delete_item(run, evaluate_container(frame), evaluate_key(frame))
    return delete


def _compile_if(node: ast.If, scope: _Scope) -> Callable:
    branches = []
    while True:   # an elif chain becomes one statement with several tests
        test = compile_expression(node.test, scope)
        branches.append((test.evaluate, statement_gas + test.gas, compile_block(node.body, scope)))
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            node = node.orelse[0]
            continue
        orelse = compile_block(node.orelse, scope)
        break
    branches = tuple(branches)

    def if_statement(frame: list) -> Any:
        run = frame[0]
        for evaluate_test, test_gas, body in branches:
            run.gas -= test_gas
            if run.gas < 0:
                run.refuel()
            if evaluate_test(frame):
                break
        else:
            body = orelse
        for statement in body:
            signal = statement(frame)
            if signal is not None:
                return signal
        return None
    return if_statement


def _compile_while(node: ast.While, scope: _Scope) -> Callable:
    test = compile_expression(node.test, scope)
    evaluate_test = test.evaluate
    gas = iteration_gas + test.gas
    body = compile_block(node.body, scope)
    orelse = compile_block(node.orelse, scope)

    def while_statement(frame: list) -> Any:
        run = frame[0]
        while True:
            run.gas -= gas
            if run.gas < 0:
                run.refuel()
            if not evaluate_test(frame):
                break
            for statement in body:
                signal = statement(frame)
                if signal is not None:
                    break
            else:
                continue
            if signal is CONTINUE:
                continue
            return None if signal is BREAK else signal
        for statement in orelse:
            signal = statement(frame)
            if signal is not None:
                return signal
        return None
    return while_statement


def _compile_for(node: ast.For, scope: _Scope) -> Callable:
    source = compile_expression(node.iter, scope)
    evaluate_source = source.evaluate
    store, store_cost = compile_target(node.target, scope)
    gas = statement_gas + source.gas
    item_gas = iteration_gas + store_cost
    body = compile_block(node.body, scope)
    orelse = compile_block(node.orelse, scope)

    def for_statement(frame: list) -> Any:
        run = frame[0]
        run.gas -= gas
        if run.gas < 0:
            run.refuel()
        try:
            for item in iterable(evaluate_source(frame)):
                run.gas -= item_gas
                if run.gas < 0:
                    run.refuel()
                store(frame, item)
                for statement in body:
                    signal = statement(frame)
                    if signal is not None:
                        break
                else:
                    continue
                if signal is CONTINUE:
                    continue
                return None if signal is BREAK else signal
        except RuntimeError as error:
            if isinstance(error, RecursionError):
                raise
            raise VMFault("iteration_error", "a dict changed size while a for loop iterated over it") from None
        for statement in orelse:
            signal = statement(frame)
            if signal is not None:
                return signal
        return None
    return for_statement


STATEMENT_COMPILERS: dict[type, Callable[[Any, _Scope], Callable]] = {
    ast.Assign: _compile_assign, ast.AnnAssign: _compile_assign, ast.AugAssign: _compile_augmented_assign,
    ast.Return: _compile_return, ast.Expr: _compile_expression_statement, ast.Delete: _compile_delete,
    ast.If: _compile_if, ast.While: _compile_while, ast.For: _compile_for,
    ast.Pass: _compile_simple(None), ast.Break: _compile_simple(BREAK), ast.Continue: _compile_simple(CONTINUE),
}
