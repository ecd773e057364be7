"""A grammar of hostile contracts for fuzzing the VM (tests/unit/test_vm_fuzz.py, scripts/fuzz_vm.py).

Programs draw on every builtin and method, operators on values of every type, loops, nested
containers and strings of every UTF-8 width at lengths up to the caps, so that a run meets the
values that make CPython's own operations slow or large. What a run must never do is the same in
CI and in the long run outside it: let a Python exception other than a ContractError out, fail with
a code that means the VM broke (`BROKEN_CODES`), or take much longer per gas than the schedule pays.

Random nesting alone rarely reaches the values where a mispriced operation shows (a 200-wide zip of
4096-item lists, a 16 KiB text searched for a 16 KiB pattern), so half the programs also open with
`extreme_operations`: one builtin, method or operator from a catalog that covers them all, applied to
values at the caps and repeated in a loop. The fuzzers also steer Hypothesis towards the programs
that cost the most CPU per gas (`hypothesis.target`). scripts/vm_mutants.py checks that this finds a
charge taken out of the VM.
"""

from __future__ import annotations

import gc
import itertools
import time
import tracemalloc
from typing import NamedTuple

from hypothesis import strategies as st

from node import limits
from node.contracts import sandbox
from node.contracts.vm import ContractError, InvalidContract, call_function, load_program

VARIABLES = ("n", "s", "t", "l", "m", "u")
"""Typed variables: an int, a str, bytes, a list, a dict, a tuple (each program starts them so)."""
CHARACTERS = ("a", "Z", " ", ",", "é", "€", "𝄞", "\u0130", "ß")
"""1-, 2-, 3- and 4-byte UTF-8 characters, a separator, and two whose case mapping changes their length."""
REPEATS = (0, 1, 3, 64, 1000, 4000)
BROKEN_CODES = frozenset({"internal_error", "out_of_memory", "stack_exhausted"})
FUZZ_GAS = 300_000
SWEEP_REPEATS = 300
"""Times a sweep program repeats its operation (or fewer, when its gas runs out first): an operation whose
unpaid cost is a few microseconds shows only after enough repeats to pass `SLACK_MS`."""
SWEEP_GAS = 50_000
"""Gas of each program of the catalog sweep (`extreme_cases`): enough for a mispriced operation to show
above `SLACK_MS` (a mutant with one charge taken out runs 5-300 ms for this gas, an honest run about
3 ms), a sixth of the time of a fuzzed program."""
NS_PER_GAS_MAX = 1_500
"""A run may take this much CPU time per gas used (plus `SLACK_MS`): 10x the median of scripts/bench_gas
(60-100 ns/gas on this machine), and half as much again for a slower one."""
SLACK_MS = 2
MEMORY_BYTES_PER_GAS_MAX = 256
"""A run may allocate at most this much memory at its peak per gas used (plus `MEMORY_SLACK_BYTES`): the
gas schedule charges an item or 32 bytes of text per gas, and the objects behind an item (an int,
a pair from enumerate) take up to ~100 bytes, so this is about 2.5x what an honest schedule allows."""
MEMORY_SLACK_BYTES = 1 << 20


BIG_VALUES = {
    "text": ("('a' * 16384)", "('a' * 8191 + 'b')", "('\U0001d11e' * 4096)", "('\u00e9' * 8191 + 'a')",
             "('\u0130' * 5461)", "(' ' * 16384)", "('ab,' * 5461)", "'a'", "','", "('a' * 97 + 'ba')",
             "('\U0001d11e' * 97 + 'b\U0001d11e')"),
    "bytes": ("(b'\\x00' * 16384)", "(b'ab' * 8192)", "(b'a' * 8191 + b'b')", "b'a'", "(b'a' * 97 + b'ba')"),
    "list": ("list(range(4096))", "[[]] * 4096", "[2**255] * 4096", "[-(2**255)] * 4095 + [0]",
             "list('\U0001d11e' * 4096)", "[[[[[[1]]]]]] * 4096", "['a' * 4] * 4096", "[('a' * 16000)] * 1",
             "list(range(4096))[::-1]", "[(1, (2, (3, ())))] * 4096"),
    "dict": ("dict(enumerate(range(4096)))", "dict(zip(list(range(4096)), [[1, [2]]] * 4096))",
             "dict(zip(list('abcdefgh'), list(range(8))))"),
    "item": ("2**255", "'a' * 16000", "[[[[[1]]]]]", "(1, (2, (3, ())))", "4095", "'\U0001d11e'"),
}
"""Values at the caps (16 KiB of text, 4096 items, 256-bit ints, nesting, every UTF-8 width) by kind."""
EXTREME_OPERATIONS = (
    ("a.upper()", "text"), ("a.lower()", "text"), ("a.strip()", "text"), ("a.strip(b)", "text text"),
    ("a.split()", "text"), ("a.split(b)", "text text"), ("a.split(b, 4000)", "text text"),
    ("a.replace(b, c)", "text text text"), ("a.find(b)", "text text"), ("b in a", "text text"),
    ("a.startswith(b)", "text text"), ("a.endswith((b, c))", "text text text"), ("a.join(b)", "text list"),
    ("a == b", "text text"), ("a < b", "text text"), ("a + b", "text text"), ("a * 2", "text"),
    ("a[::-1]", "text"), ("a[1::3]", "text"), ("a[1:]", "text"), ("a.encode()", "text"), ("list(a)", "text"),
    ("sorted(a)", "text"), ("min(a)", "text"), ("tuple(a)", "text"), ("list(reversed(a))", "text"),
    ("list(enumerate(a))", "text"), ("int(str(2**255))", ""), ("str(a)", "item"), ("len(a)", "text"),
    ("a.hex()", "bytes"), ("a.decode()", "bytes"), ("bytes_of_hex(a.hex())", "bytes"), ("a.find(b)", "bytes bytes"),
    ("a == b", "bytes bytes"), ("b in a", "bytes bytes"), ("a[1:]", "bytes"), ("a < b", "bytes bytes"), ("a + b", "bytes bytes"), ("a.startswith(b)", "bytes bytes"),
    ("a == b", "list list"), ("a != b", "list list"), ("a < b", "list list"), ("sorted(a)", "list"),
    ("min(a)", "list"), ("max(a)", "list"), ("sum(a)", "list"), ("a + b", "list list"), ("a * 1", "list"),
    ("a[::-1]", "list"), ("a[:]", "list"), ("a.copy()", "list"), ("a.count(b)", "list item"),
    ("a.index(b)", "list item"), ("b in a", "list item"), ("list(zip(a, b))", "list list"),
    ("list(zip(" + ", ".join(["a"] * 200) + "))", "list"), ("list(zip(" + ", ".join(["a"] * 4000) + "))", "list"),
    ("list(enumerate(a))", "list"), ("list(reversed(a))", "list"), ("tuple(a)", "list"), ("list(a)", "list"),
    ("dict(zip(a, b))", "list list"), ("dict(enumerate(a))", "list"), ("a.reverse()", "list"),
    ("a.extend(b)", "list list"), ("a.insert(0, b)", "list item"), ("a.remove(b)", "list item"),
    ("a.pop(0)", "list"), ("a.append(b)", "list item"), ("(a, b) == (b, a)", "list list"),
    ("a == b", "dict dict"), ("a != b", "dict dict"), ("a.copy()", "dict"), ("a.items()", "dict"),
    ("a.keys()", "dict"), ("a.values()", "dict"), ("b in a", "dict item"), ("a.get(b)", "dict item"),
    ("dict(a)", "dict"), ("list(a)", "dict"), ("sorted(a)", "dict"), ("a.update(b)", "dict dict"),
    ("a.setdefault(b, b)", "dict item"), ("a.pop(b, 0)", "dict item"), ("list(zip(a, b))", "dict dict"),
    ("a ** 2", "item"), ("a * a", "item"), ("a % 7", "item"), ("a // 3", "item"), ("a << 1", "item"),
    ("a == b", "item item"), ("a < b", "item item"), ("[a] * 4096", "item"), ("(a, b) < (b, a)", "item item"),
)
"""Operations as `a`, `b`, `c` over the kinds of BIG_VALUES they take."""


@st.composite
def extreme_operations(draw, indent: str = "    ") -> str:
    """Bind the operands to values at the caps, then repeat one operation on them in a loop."""
    operation, kinds = draw(st.sampled_from(EXTREME_OPERATIONS))
    operands = tuple(draw(st.sampled_from(BIG_VALUES[kind])) for kind in kinds.split())
    return extreme_block(operation, operands, draw(st.sampled_from([1, 20, 300])), indent)


def extreme_block(operation: str, operands: tuple[str, ...], count: int, indent: str = "    ") -> str:
    lines = [f"{indent}{name} = {value}" for name, value in zip("abc", operands)]
    lines += [f"{indent}w9 = 0", f"{indent}while w9 < {count}:", f"{indent}    w9 += 1",
              f"{indent}    x = {operation}"]
    return "\n".join(lines)


def extreme_cases(operation: str, kinds: str, cases_max: int = 24) -> list[str]:
    """Programs that repeat `operation` over its operands drawn from BIG_VALUES: every combination,
    or `cases_max` spread evenly over them, always including each value of each kind at least once."""
    pools = [BIG_VALUES[kind] for kind in kinds.split()]
    combinations = list(itertools.product(*pools))
    stride = max(1, len(combinations) // cases_max)
    chosen = dict.fromkeys(combinations[::stride])
    for position, pool in enumerate(pools):   # each value in each place, the others at their first
        for value in pool:
            chosen[tuple(value if index == position else other[0] for index, other in enumerate(pools))] = None
    return [f"def main():\n{extreme_block(operation, operands, SWEEP_REPEATS)}\n    return 0\n" for operands in chosen]


def repeat(draw) -> int:
    return draw(st.sampled_from(REPEATS))


@st.composite
def ints(draw, depth: int = 2) -> str:
    kind = draw(st.integers(0, 8 if depth else 1))
    if kind == 0:
        return draw(st.sampled_from(["0", "1", "-1", "7", "300", "4095", "2**200", "-(2**255)", f"{2**61 - 2}",
                                     "(2**64 - 1)"]))
    if kind == 1:
        return "n"
    if kind == 2:
        operator = draw(st.sampled_from(["+", "-", "*", "//", "%", "**", "<<", ">>", "&", "|", "^"]))
        return f"({draw(ints(depth - 1))} {operator} {draw(ints(depth - 1))})"
    if kind == 3:
        return f"len({draw(st.one_of(strs(depth - 1), lists(depth - 1), dicts(depth - 1), byteses(depth - 1)))})"
    if kind == 4:
        text = draw(strs(depth - 1))
        method = draw(st.sampled_from(["find", "count", "index"]))
        if method == "find":
            return f"{text}.find({draw(strs(depth - 1))})"
        return f"l.{method}({draw(ints(depth - 1))})"
    if kind == 5:
        return f"{draw(st.sampled_from(['sum', 'min', 'max']))}({draw(int_lists(depth - 1))})"
    if kind == 6:
        return f"abs({draw(ints(depth - 1))})"
    if kind == 7:
        return f"l[{draw(ints(depth - 1))}]"
    return f"({draw(ints(depth - 1))} if {draw(conditions(depth - 1))} else {draw(ints(depth - 1))})"


@st.composite
def strs(draw, depth: int = 2) -> str:
    kind = draw(st.integers(0, 8 if depth else 1))
    if kind == 0:
        text = "".join(draw(st.lists(st.sampled_from(CHARACTERS), min_size=1, max_size=4)))
        return f"({text!r} * {repeat(draw)})"
    if kind == 1:
        return "s"
    if kind == 2:
        return f"({draw(strs(depth - 1))} + {draw(strs(depth - 1))})"
    if kind == 3:
        method = draw(st.sampled_from(["upper()", "lower()", "strip()"]))
        return f"{draw(strs(depth - 1))}.{method}"
    if kind == 4:   # chars that hold the stripped character last: the slowest membership test
        last = draw(st.sampled_from(CHARACTERS))
        chars = f"({draw(st.sampled_from(CHARACTERS))!r} * {repeat(draw)} + {last!r})"
        return f"({last!r} * {repeat(draw)}).strip({draw(st.sampled_from([chars, draw(strs(depth - 1))]))})"
    if kind == 5:
        return f"{draw(strs(depth - 1))}.replace({draw(strs(depth - 1))}, {draw(strs(depth - 1))})"
    if kind == 6:
        return f"{draw(strs(depth - 1))}.join({draw(str_lists(depth - 1))})"
    if kind == 7:
        return f"{draw(strs(depth - 1))}[{draw(ints(0))}:{draw(ints(0))}:{draw(st.sampled_from(['1', '-1', '3']))}]"
    return draw(st.sampled_from([f"str({draw(ints(depth - 1))})", f"{draw(byteses(depth - 1))}.hex()",
                                 f"t.decode()"]))


@st.composite
def byteses(draw, depth: int = 2) -> str:
    kind = draw(st.integers(0, 3 if depth else 1))
    if kind == 0:
        return f"(b'\\x00\\xffab' * {repeat(draw)})"
    if kind == 1:
        return "t"
    if kind == 2:
        return f"{draw(strs(depth - 1))}.encode()"
    return f"bytes_of_hex({draw(strs(depth - 1))}.encode().hex())"


@st.composite
def int_lists(draw, depth: int = 2) -> str:
    return draw(st.sampled_from([f"list(range({repeat(draw)}))", "l", f"[{draw(ints(0))}, {draw(ints(0))}]"]))


@st.composite
def str_lists(draw, depth: int = 2) -> str:
    return draw(st.sampled_from([f"{draw(strs(0))}.split({draw(strs(0))})", f"{draw(strs(0))}.split()",
                                 f"[{draw(strs(0))}] * {repeat(draw)}", f"list({draw(strs(0))})"]))


@st.composite
def lists(draw, depth: int = 2) -> str:
    kind = draw(st.integers(0, 9 if depth else 1))
    if kind == 0:
        return draw(int_lists(depth))
    if kind == 1:
        return "l"
    if kind == 2:
        return draw(str_lists(depth))
    if kind == 3:
        width = draw(st.sampled_from([1, 2, 8, 200, 4000]))
        argument = draw(lists(depth - 1))   # the same one each time: as wide as it is long
        # no wider than a contract's source may be: a wider call is only refused at load, and drawing
        # 4,000 copies of a long argument made 300 KB programs (and a Hypothesis worker of GBs)
        width = min(width, max(1, limits.contract_source_bytes_max // (len(argument) + 2)))
        return f"list(zip({', '.join([argument] * width)}))"
    if kind == 4:
        return f"sorted({draw(st.one_of(int_lists(depth - 1), str_lists(depth - 1)))})"
    if kind == 5:
        return f"({draw(lists(depth - 1))} + {draw(lists(depth - 1))})"
    if kind == 6:
        return f"({draw(lists(depth - 1))} * {draw(st.sampled_from(['0', '2', '100', '4096']))})"
    if kind == 7:
        return f"list({draw(st.sampled_from(['reversed', 'enumerate']))}({draw(lists(depth - 1))}))"
    if kind == 8:
        return f"{draw(dicts(depth - 1))}.{draw(st.sampled_from(['keys', 'values', 'items']))}()"
    return f"[{draw(lists(depth - 1))}, {draw(dicts(depth - 1))}, {draw(strs(depth - 1))}]"


@st.composite
def dicts(draw, depth: int = 2) -> str:
    kind = draw(st.integers(0, 4 if depth else 1))
    if kind == 0:
        return f"{{{draw(ints(0))}: {draw(strs(0))}, {draw(strs(0))}: {draw(ints(0))}}}"
    if kind == 1:
        return "m"
    if kind == 2:
        return f"dict(zip({draw(lists(depth - 1))}, {draw(lists(depth - 1))}))"
    if kind == 3:
        return f"dict(enumerate({draw(lists(depth - 1))}))"
    return f"{draw(dicts(depth - 1))}.copy()"


@st.composite
def conditions(draw, depth: int = 1) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return f"{draw(ints(depth))} {draw(st.sampled_from(['<', '>=', '==', '!=']))} {draw(ints(depth))}"
    if kind == 1:
        return f"{draw(lists(depth))} == {draw(lists(depth))}"
    if kind == 2:
        return f"{draw(dicts(depth))} == {draw(dicts(depth))}"
    if kind == 3:
        return f"{draw(st.one_of(ints(depth), strs(depth)))} in {draw(st.one_of(lists(depth), dicts(depth)))}"
    return f"{draw(strs(depth))} in {draw(strs(depth))}"


@st.composite
def statements(draw, depth: int = 2, indent: str = "    ") -> str:
    kind = draw(st.integers(0, 13 if depth else 9))
    if kind == 0:
        return f"{indent}n = {draw(ints())}"
    if kind == 1:
        return f"{indent}s = {draw(strs())}"
    if kind == 2:
        return f"{indent}l = {draw(lists())}"
    if kind == 3:
        return f"{indent}m = {draw(dicts())}"
    if kind == 4:
        return f"{indent}{draw(st.sampled_from(['n += ', 'n *= ', 'n <<= ', 'n //= ']))}{draw(ints())}"
    if kind == 5:
        return f"{indent}{draw(st.sampled_from(['s += ', 'l += ', 'l *= ', 'u += ']))}" + \
            (draw(ints()) if draw(st.booleans()) else draw(lists()))
    if kind == 6:
        method = draw(st.sampled_from(["append(%s)", "insert(0, %s)", "extend(%s)", "remove(%s)", "pop(0)", "pop()",
                                       "reverse()"]))
        argument = draw(st.one_of(ints(1), lists(1), strs(1)))
        return f"{indent}l.{method.replace('%s', argument)}"
    if kind == 7:
        return f"{indent}m[{draw(st.one_of(ints(1), strs(1)))}] = {draw(st.one_of(ints(1), lists(1)))}"
    if kind == 8:
        method = draw(st.sampled_from(["update(%s)", "setdefault(%s)", "pop(%s, 0)", "get(%s)"]))
        argument = draw(dicts(1)) if method.startswith("update") else draw(st.one_of(ints(1), strs(1)))
        return f"{indent}m.{method.replace('%s', argument)}"
    if kind == 9:
        return f"{indent}u = ({draw(st.one_of(ints(1), strs(1), lists(1)))}, u)"
    inner = indent + "    "
    if kind == 10:
        return f"{indent}for x in {draw(st.one_of(lists(), strs(), dicts()))}:\n{draw(blocks(depth - 1, inner))}"
    if kind == 11:
        counter = f"w{depth}"
        return (f"{indent}{counter} = 0\n{indent}while {counter} < {draw(st.integers(0, 300))}:\n"
                f"{inner}{counter} += 1\n{draw(blocks(depth - 1, inner))}")
    if kind == 12:
        return (f"{indent}if {draw(conditions())}:\n{draw(blocks(depth - 1, inner))}\n"
                f"{indent}else:\n{draw(blocks(depth - 1, inner))}")
    return f"{indent}del l[{draw(ints(0))}]"


@st.composite
def blocks(draw, depth: int = 2, indent: str = "    ") -> str:
    return "\n".join(draw(statements(depth, indent)) for _ in range(draw(st.integers(1, 4))))


@st.composite
def programs(draw) -> str:
    setup = "    n = 5\n    s = 'ab,c'\n    t = b'xy'\n    l = [1, 2, 3]\n    m = {1: 'a', 'k': 2}\n    u = ()\n"
    if draw(st.booleans()):
        setup += draw(extreme_operations()) + "\n"
    return f"def main():\n{setup}{draw(blocks())}\n    return [n, len(s), len(t), len(l), len(m)]\n"


class NoHost:
    def host_functions(self):
        return {}

    def call_host(self, name, args):
        raise AssertionError(name)


class Checked(NamedTuple):
    outcome: str
    """"ok", the code of the ContractError the run ended with, or "invalid" (refused at load)."""
    ns_per_gas: float
    """CPU time of the fastest run over the gas it used (what `hypothesis.target` maximizes)."""


def check_program(source: str, gas_limit: int = FUZZ_GAS) -> Checked:
    """Load and run `source`, or raise AssertionError if the VM broke a rule (an escaped exception, a
    broken code, too much memory or too slow per gas).

    A run over its time is timed twice more and judged by the fastest: a shared machine pauses a
    thread now and then, a mispriced operation is slow every time."""
    try:
        program = load_program(source)
    except InvalidContract:
        return Checked("invalid", 0.0)
    peak_bytes, outcome, gas_used = sandbox.run_on_vm_thread(_traced_run, program, gas_limit)
    assert outcome not in BROKEN_CODES, f"{outcome}\n{source}"
    assert peak_bytes <= MEMORY_SLACK_BYTES + gas_used * MEMORY_BYTES_PER_GAS_MAX, \
        f"{peak_bytes} bytes at the peak for {gas_used} gas ({outcome})\n{source}"
    for attempt in range(3):
        elapsed_ns, outcome, gas_used = _timed_run(program, source, gas_limit)
        if elapsed_ns <= SLACK_MS * 1_000_000 + gas_used * NS_PER_GAS_MAX:
            return Checked(outcome, elapsed_ns / max(gas_used, 1))
    raise AssertionError(f"{elapsed_ns / 1e6:.1f} ms for {gas_used} gas ({outcome})\n{source}")


def _traced_run(program, gas_limit: int) -> tuple[int, str, int]:
    """(peak bytes Python allocated during the call, outcome, gas used), on the VM thread. Memory is
    checked in a run of its own: tracing makes allocation several times slower, which would spoil the
    timing."""
    tracemalloc.start()
    try:
        baseline_bytes = tracemalloc.get_traced_memory()[0]
        _, outcome, gas_used = _run_here(program, gas_limit)
        return tracemalloc.get_traced_memory()[1] - baseline_bytes, outcome, gas_used
    finally:
        tracemalloc.stop()


def _timed_run(program, source: str, gas_limit: int) -> tuple[int, str, int]:
    """(CPU ns of the VM thread, outcome, gas used): CPU time of the thread that ran the call, which other
    processes on the machine do not inflate."""
    elapsed_ns, outcome, gas_used = sandbox.run_on_vm_thread(_run_here, program, gas_limit)
    assert outcome not in BROKEN_CODES, f"{outcome}\n{source}"
    assert gas_used <= gas_limit
    return elapsed_ns, outcome, gas_used


def _run_here(program, gas_limit: int) -> tuple[int, str, int]:
    """One call on this VM thread, timed. Everything alive before it is moved out of the collector's sight
    (gc.freeze), so the collections the run triggers scan what the run made, as they would in a node,
    and not the rest of the test process. (A gc.collect() before each run instead cost 50-100 ms a run
    once the whole test suite's objects were in the process: about 10 minutes of CI.)"""
    gc.freeze()
    started = time.thread_time_ns()
    try:
        result = call_function(program, "main", (), NoHost(), gas_limit)   # on this VM thread itself
        outcome, gas_used = "ok", result.gas_used
    except ContractError as error:
        outcome, gas_used = error.code, error.gas_used
    finally:
        elapsed_ns = time.thread_time_ns() - started
        gc.unfreeze()   # frozen objects are never collected: without this, garbage cycles alive at the
        # freeze stayed for good (a fuzz worker grew ~7 MB a second and one reached 17 GB)
    return elapsed_ns, outcome, gas_used
