#!/usr/bin/env python3
"""Benchmark the contract VM's gas schedule: nanoseconds of CPU per unit of gas, for every operation.

The rule it checks (issue 11): gas is charged before the work and bounds its real cost, so the time
one unit of gas buys stays within a small factor of the median for adversarial inputs too; the worst
operation stays within 10x of the median.

Each case is a small contract whose `run()` does some set-up, then repeats one operation in a
`while True:` loop until the gas runs out (or, for a few host calls, a fixed number of times). The
whole call is timed with `time.perf_counter_ns` through `node.contracts.vm.call_function`, with the
real `ChainHost` over an in-memory state, and ns/gas = elapsed ns / gas used by the call (the host
takes its own per-byte gas from the same meter): the loop and the set-up are part of what
the gas pays for. Cases come in families: typical inputs (small ints, short text) and adversarial ones
(256-bit ints, 16 KiB text, 4-byte UTF-8, 4096-item containers, dict keys as close to colliding as the
VM allows, the deepest values, the longest call chains, find/strip/split patterns that make CPython do
more work than the text's size suggests, stored values that are slow to decode).

The gas limit of a case is chosen so that one call takes about --target-ms (up to the maximum,
2,000,000): a first call with 20,000 gas (or the case's `gas_min`), growing 8x until it takes an
eighth of the target. Each repetition then runs the call until it took --target-ms in all; the best
repetition counts. A case whose set-up alone is slow stops after one repetition. Every case runs in
a worker process with a time-out, so a hang is reported as TIMEOUT, a dead worker as CRASHED, and
the next case goes on in a fresh worker. Progress, one line per case, goes to stderr.

How to read the table:
- ns/gas: what one unit of gas cost in CPU time on this machine (it shares the CPU with whatever else
  runs; the ratios matter, not the absolute figures). x median: the case's ns/gas over the median
  of all cases. A case above 10x is an operation whose gas does not bound its cost: the list at the
  end names them.
- FAULT <code>: the call failed with that VM error before its gas ran out (a cap, for instance);
  `internal_error`, `stack_exhausted` and `out_of_memory` are Python exceptions the VM caught: bugs,
  listed again at the end.
- ESCAPED: <type>: a Python exception left call_function (RecursionError, MemoryError, ...): a bug.
- A second table gives load_program time of the largest sources, as ns per source byte and per unit
  of deploy gas (node/contracts/runtime.py: DEPLOY_GAS_BASE + DEPLOY_GAS_PER_SOURCE_BYTE per byte).

Usage: scripts/bench_gas [--quick] [--json] [--only TEXT] [--target-ms N] [--timeout-s N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node import crypto, encoding, limits  # noqa: E402
from node.contracts.gas import ContractError, OutOfGas  # noqa: E402
from node.contracts.host import ChainHost  # noqa: E402
from node.contracts.runtime import DEPLOY_GAS_BASE, DEPLOY_GAS_PER_SOURCE_BYTE  # noqa: E402
from node.contracts.vm import Program, call_function, load_program  # noqa: E402
from node.state import CommittedState, Overlay, State  # noqa: E402

gas_probe_first = 20_000
"""Gas limit of a case's first call; it grows 8x per call until a call takes an eighth of the target."""
gas_probe_growth = 8
calls_per_repetition_max = 10_000
"""Calls of one repetition at most (cases that return early use little gas per call)."""
case_time_factor_max = 2
"""A case stops repeating once it took this many times the time of its planned repetitions."""
worker_start_timeout_s = 60.0
"""Time a worker process may take to import the node and build the cases."""
ratio_outlier_min = 10.0
"""A case whose ns/gas is this many times the median breaks the rule."""
source_bytes_max = limits.contract_source_bytes_max

COLLIDING_STEP = 2**61 - 1
"""CPython hashes an int modulo 2**61 - 1, so every multiple of it hashes to 0: keys i * COLLIDING_STEP
would all collide (each dict lookup or insert probing past every key already there); the VM refuses
int keys of that size (key_error), which one case checks."""
CLOSE_STEP = 2**48
"""Keys i * CLOSE_STEP, the closest to colliding the VM allows: their hashes share the low 48 bits, so
they start on the same dict slot and follow the same probe sequence for several steps."""
BENCH_DOMAIN = crypto.SigningDomain("paychain-bench", crypto.hash_bytes(b"bench_gas"))
BENCH_KEYS = crypto.KeyPair.from_seed(crypto.hash_bytes(b"bench_gas signer"))


# --- cases -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Case:
    name: str
    """What is measured; the prefix before the first space is its family."""
    source: str
    """The contract; a call case calls its `run`."""
    args: tuple = ()
    """Arguments of `run` (immutable values only: the same tuple is passed to every call)."""
    load_only: bool = False
    """Time load_program of the source instead of a call."""
    gas_min: int = 0
    """Smallest gas limit to measure with: enough for the set-up and many operations after it."""


def _indent(code: str, spaces: int) -> str:
    code = textwrap.dedent(code).strip("\n")
    return textwrap.indent(code, " " * spaces) + "\n" if code else ""


def loop_case(name: str, body: str, setup: str = "", constants: str = "", helpers: str = "",
              parameters: str = "", args: tuple = ()) -> Case:
    """A case whose run() does `setup`, then repeats `body` until its gas runs out."""
    source = (_indent(constants, 0) + "\n" + _indent(helpers, 0) + f"\ndef run({parameters}):\n"
              + _indent(setup, 4) + "    while True:\n" + _indent(body, 8))
    return Case(name, source, args)


def once_case(name: str, body: str, constants: str = "", parameters: str = "", args: tuple = ()) -> Case:
    """A case whose run() does `body` once (repeated by calling it again)."""
    return Case(name, _indent(constants, 0) + f"\ndef run({parameters}):\n" + _indent(body, 4), args)


def fill_source(header: str, line: Callable[[int], str], footer: str = "",
                bytes_max: int = source_bytes_max) -> tuple[str, int]:
    """`header`, then line(0), line(1), ... as many as fit in `bytes_max` with `footer`; and how many."""
    parts, size, count = [header], len(header.encode()) + len(footer.encode()), 0
    while True:
        text = line(count)
        if size + len(text.encode()) > bytes_max:
            return "".join(parts) + footer, count
        parts.append(text)
        size += len(text.encode())
        count += 1


BIG = 2**255 - 19
TEXT_CONSTANTS = """
    A16 = "a" * 16384
    U16 = "\\U0001F600" * 4096
    B16 = b"a" * 16384
    NEEDLE = "a" * 97 + "ba"
"""
"""16 KiB of ASCII, of 4-byte characters (4096 of them) and of bytes, and a needle that makes CPython's
find (for needles under 100 characters) compare about 50 characters per position of an all-'a' text."""
BIG_CONSTANTS = """
    B = 2 ** 255 - 19
    E = 2 ** 254 + 12345
    H = 2 ** 127 + 1
"""
COLLIDING_CONSTANTS = f"""
    C = {CLOSE_STEP}
    K_LAST = 4096 * C
    K_ABSENT = 5000 * C
"""
LIST_4096 = "a = list(range(4096))"


def colliding_dict(name: str, count: int = 4096) -> str:
    """Contract code building dict `name` of `count` int keys i * C (needs COLLIDING_CONSTANTS)."""
    return f"{name} = {{}}\nfor i in range(1, {count + 1}):\n    {name}[i * C] = i\n"


def deepest_helper() -> str:
    """_deep(n): calls itself from inside 14 nested ifs and a 13-level expression (up to the nesting cap)."""
    if_levels, expression_levels = 14, 13
    ifs = "".join("    " * (level + 1) + "if n >= 0:\n" for level in range(if_levels))
    expression = "(" * expression_levels + "_deep(n - 1)" + " + 1)" * expression_levels
    inner = "    " * (if_levels + 1)
    return (f"def _deep(n):\n    if n == 0:\n        return 0\n{ifs}{inner}return {expression}\n    return 0\n")


def core_cases() -> list[Case]:
    deep_helper = "def _deep(n):\n    if n:\n        return _deep(n - 1)\n    return 0\n"
    elif_chain = "if x == 0:\n    y = 0\n" + "".join(f"elif x == {i}:\n    y = {i}\n" for i in range(1, 300))
    return [
        loop_case("stmt pass", "pass"),
        loop_case("stmt x = small int", "x = 7"),
        loop_case("arith small + * // % -", "y = (x + 7) * 3 // 5 % 1000 - x", setup="x = 12345"),
        loop_case("arith x += 1", "x += 1", setup="x = 0"),
        loop_case("expr and/or, if-expression", "y = (x and 1) or 2\nz = 1 if x else 2", setup="x = 3"),
        loop_case("expr unary - ~ not", "y = -x\nz = ~x\nw = not x", setup="x = 3"),
        loop_case("if/elif/else (3 tests)", "if x == 1:\n    y = 1\nelif x == 2:\n    y = 2\nelse:\n    y = 3",
                  setup="x = 3"),
        loop_case("if/elif chain, 300 tests, last taken", elif_chain, setup="x = 299"),
        loop_case("for over range(64)", "for i in range(64):\n    pass"),
        loop_case("for over enumerate(list 4096)", "for i, v in enumerate(a):\n    pass", setup=LIST_4096),
        loop_case("for over zip(a, b)", "for v, w in zip(a, a):\n    pass", setup=LIST_4096),
        loop_case("for over reversed(list 4096)", "for v in reversed(a):\n    pass", setup=LIST_4096),
        loop_case("call _f(x)", "y = _f(x)", setup="x = 1", helpers="def _f(v):\n    return v\n"),
        loop_case("call chain 16 deep", "y = _deep(14)", helpers=deep_helper),
        loop_case("call chain 16 deep, each in 14 ifs and a 13-level expression", "y = _deep(14)",
                  helpers=deepest_helper()),
        loop_case("unpack p, q, r = t", "p, q, r = t", setup="t = (1, 2, 3)"),
        loop_case("unpack (p, (q, r)), s = t", "(p, (q, r)), s = t", setup="t = ((1, (2, 3)), 4)"),
        loop_case("unpack p, q, r = reversed(list)", "p, q, r = reversed(t)", setup="t = [1, 2, 3]"),
    ]


def big_int_cases() -> list[Case]:
    digits = str(BIG)
    decimal_text = "0" * (640 - len(digits)) + digits
    hex_text = "0" * (640 - 64) + format(BIG, "064x")
    return [loop_case(name, body, setup=setup, constants=BIG_CONSTANTS) for name, body, setup in [
        ("big + (255-bit)", "y = E + E", ""),
        ("big - (256-bit)", "y = B - E", ""),
        ("big * (128 x 128 bits)", "y = H * H", ""),
        ("big // (256 / 128 bits)", "y = B // H", ""),
        ("big % (256 / 128 bits)", "y = B % H", ""),
        ("big ** (3 ** 161)", "y = 3 ** 161", ""),
        ("big ** (H ** 2)", "y = H ** 2", ""),
        ("big << >>", "y = H << 128\nz = B >> 7", ""),
        ("big & | ^", "y = B & E\nz = B | E\nw = B ^ E", ""),
        ("big == <", "y = B == E\nz = B < x", "x = E"),
        ("big unary - ~", "y = -x\nz = ~x", "x = B"),
        ("big abs()", "y = abs(x)", "x = -B"),
        ("big str()", "y = str(B)", ""),
        ("big int() of 640 decimal chars", f'y = int("{decimal_text}")', ""),
        ("big int() of 640 hex chars, base 16", f'y = int("{hex_text}", 16)', ""),
        ("big sum() of 4096 x 2**200", "y = sum(a)", "a = [2 ** 200] * 4096"),
    ]]


def comparison_cases() -> list[Case]:
    deep_pair = """
        a = list(range(64))
        b = list(range(64))
        for i in range(30):
            a = [a, i]
            b = [b, i]
    """
    too_deep = deep_pair.replace("range(30)", "range(32)")
    str_dicts = "d = {}\ne = {}\nfor i in range(4096):\n    d[str(i)] = i\n    e[str(i)] = i\n"
    rows = "a = []\nfor i in range(64):\n    row = list(range(64))\n    row[63] = 64 - i\n    a.append(row)\n"
    return [
        loop_case("cmp == small ints", "y = x == z", setup="x = 3\nz = 4"),
        loop_case("cmp == str 16 KiB, equal, distinct objects", "y = A16 == b", setup='b = A16[1:] + "a"',
                  constants=TEXT_CONSTANTS),
        loop_case("cmp < str 16 KiB, 1-byte vs 4-byte chars", "y = m < A16", setup='m = A16[4:] + "\\U0001F600"',
                  constants=TEXT_CONSTANTS),
        loop_case("cmp == bytes 16 KiB, distinct objects", "y = B16 == b", setup='b = B16[1:] + b"a"',
                  constants=TEXT_CONSTANTS),
        loop_case("cmp == list 4096 ints", "y = a == b", setup=LIST_4096 + "\nb = list(range(4096))"),
        loop_case("cmp < list 4096 ints, equal prefix", "y = a < b",
                  setup=LIST_4096 + "\nb = list(range(4096))\nb[4095] = 5000"),
        loop_case("cmp == list 64 x 16 KiB str", "y = a == b", setup='a = [A16] * 64\nb = [A16[1:] + "a"] * 64',
                  constants=TEXT_CONSTANTS),
        loop_case("cmp == lists nested 31 deep", "y = a == b", setup=deep_pair),
        loop_case("cmp == list of 4096 empty lists", "y = a == b", setup="a = [[]] * 4096\nb = [[]] * 4096"),
        loop_case("cmp == lists nested 33 deep (cap)", "y = a == b", setup=too_deep),
        loop_case("cmp == dict 4096 str keys", "y = d == e", setup=str_dicts),
        loop_case("cmp == dict 4096 keys i * 2**48", "y = d == e",
                  setup=colliding_dict("d") + colliding_dict("e"), constants=COLLIDING_CONSTANTS),
        loop_case("cmp min() of 64 lists of 64, equal prefix", "y = min(a)", setup=rows),
        loop_case("in list 4096 ints (last)", "y = 4095 in a", setup=LIST_4096),
        loop_case("in list 4096 x 1 KiB str (absent, equal prefix)", "y = k in a",
                  setup='a = ["a" * 1024] * 4096\nk = "a" * 1023 + "b"'),
        loop_case("in str 16 KiB, 1-char needle", 'y = "b" in A16', constants=TEXT_CONSTANTS),
        loop_case("in str 16 KiB, adversarial 99-char needle", "y = NEEDLE in A16", constants=TEXT_CONSTANTS),
        loop_case("in bytes 16 KiB, adversarial 99-byte needle", "y = n in B16", setup="n = NEEDLE.encode()",
                  constants=TEXT_CONSTANTS),
        loop_case("in dict (str key)", 'y = "k5" in d', setup='d = {"k1": 1, "k5": 5}'),
        loop_case("in dict 4096 keys i * 2**48 (absent)", "y = K_ABSENT in d", setup=colliding_dict("d"),
                  constants=COLLIDING_CONSTANTS),
        loop_case("in range (big)", "y = x in r", setup="r = range(0, 2 ** 255, 3)\nx = 2 ** 254"),
    ]


def subscript_cases() -> list[Case]:
    literal_list = "y = [" + "x," * 4096 + "]"
    colliding_display, count = fill_source("y = {", lambda i: f"{i + 1}*C:0,", "}", source_bytes_max - 200)
    return [
        loop_case("sub list[i]", "y = a[100]", setup=LIST_4096),
        loop_case("sub dict[str]", 'y = d["k"]', setup='d = {"k": 1}'),
        loop_case("sub dict[int], 4096 keys i * 2**48 (last)", "y = d[K_LAST]", setup=colliding_dict("d"),
                  constants=COLLIDING_CONSTANTS),
        loop_case("sub str[i], 4-byte chars", "y = U16[2000]", constants=TEXT_CONSTANTS),
        loop_case("sub list[i] = x", "a[5] = x", setup=LIST_4096 + "\nx = 1"),
        loop_case("sub d[k] = v; del d[k], str key", 'd["n"] = 1\ndel d["n"]', setup='d = {"k": 1}'),
        loop_case("sub d[k] = v; del d[k], 4095 keys i * 2**48", "d[K_ABSENT] = 1\ndel d[K_ABSENT]",
                  setup=colliding_dict("d", 4095), constants=COLLIDING_CONSTANTS),
        loop_case("slice list 4096 [:]", "y = a[:]", setup=LIST_4096),
        loop_case("slice list 4096 [::-3]", "y = a[::-3]", setup=LIST_4096),
        loop_case("slice str 16 KiB [1:]", "y = A16[1:]", constants=TEXT_CONSTANTS),
        loop_case("slice str 4-byte chars [1:]", "y = U16[1:]", constants=TEXT_CONSTANTS),
        loop_case("slice str 4-byte chars [::-2]", "y = U16[::-2]", constants=TEXT_CONSTANTS),
        loop_case("slice bytes 16 KiB [::-1]", "y = B16[::-1]", constants=TEXT_CONSTANTS),
        loop_case("slice range (big)", "y = r[5:2 ** 200:7]", setup="r = range(0, 2 ** 255, 3)"),
        loop_case("display list of 4", "y = [x, x, x, x]", setup="x = 1"),
        loop_case("display tuple of 3", "y = (x, x, x)", setup="x = 1"),
        loop_case("display dict of 2", 'y = {"a": x, "b": x}', setup="x = 1"),
        loop_case("display list of 4096", literal_list, setup="x = 1"),
        loop_case(f"display dict of {count} keys i * 2**48", colliding_display,
                  constants=COLLIDING_CONSTANTS),
    ]


def builtin_cases() -> list[Case]:
    shuffled = ("a = []\nv = 1\nfor i in range(4096):\n    v = (v * 1103515245 + 12345) % 2147483648\n"
                "    a.append(v)\n")
    strings = ('s = "a" * 1016\na = []\nv = 1\nfor i in range(2048):\n'
               "    v = (v * 1103515245 + 12345) % 2147483648\n    a.append(s + str(v))\n")
    mixed_strings = strings.replace("a.append(s + str(v))",
                                    'a.append(s + str(v) if v % 2 else s + "\\U0001F600" + str(v))')
    pairs = "p = []\nfor i in range(4096):\n    p.append((i, i))\n"
    colliding_pairs = "p = []\nfor i in range(1, 4097):\n    p.append((i * C, i))\n"
    zip_1000 = "y = list(zip(" + "a," * 1000 + "))"
    zip_4096 = "y = list(zip(" + "a," * 4096 + "))"
    for_zip_4096 = "for t in zip(" + "a," * 4096 + "):\n    pass"
    return [
        loop_case("builtin len(list)", "y = len(a)", setup=LIST_4096),
        loop_case("builtin len(str 4-byte chars)", "y = len(U16)", constants=TEXT_CONSTANTS),
        loop_case("builtin range(0, big, 3)", "y = range(0, B, 3)", constants=BIG_CONSTANTS),
        loop_case("builtin min/max of 4096 ints", "y = min(a)\nz = max(a)", setup=LIST_4096),
        loop_case("builtin min of 8 arguments", "y = min(x, 3, 5, 7, 1, 2, 9, 4)", setup="x = 6"),
        loop_case("builtin max of 2048 x 1 KiB str, equal prefix", "y = max(a)", setup=strings),
        loop_case("builtin sum of 4096 small ints", "y = sum(a)", setup=LIST_4096),
        loop_case("builtin sorted 4096 ints, descending", "y = sorted(a)", setup="a = list(range(4096, 0, -1))"),
        loop_case("builtin sorted 4096 ints, shuffled", "y = sorted(a)", setup=shuffled),
        loop_case("builtin sorted 2048 x 1 KiB str, equal prefix", "y = sorted(a)", setup=strings),
        loop_case("builtin sorted 2048 x 1 KiB str, 1- and 4-byte", "y = sorted(a)", setup=mixed_strings),
        loop_case("builtin sorted 4096 pairs", "y = sorted(p)", setup=pairs),
        loop_case("builtin abs/bool/str of small int", "y = abs(x)\nz = bool(x)\nw = str(x)", setup="x = -5"),
        loop_case("builtin int() of short text", 'y = int("12345")'),
        loop_case("builtin list(range(4096))", "y = list(range(4096))"),
        loop_case("builtin list(str of 4096 4-byte chars)", "y = list(U16)", constants=TEXT_CONSTANTS),
        loop_case("builtin tuple(list 4096)", "y = tuple(a)", setup=LIST_4096),
        loop_case("builtin dict(4096 pairs)", "y = dict(p)", setup=pairs),
        loop_case("builtin dict(4096 pairs, keys i * 2**48)", "y = dict(p)", setup=colliding_pairs,
                  constants=COLLIDING_CONSTANTS),
        loop_case("builtin dict(dict 4096)", "y = dict(d)", setup=pairs + "d = dict(p)"),
        loop_case("builtin list(zip(a, a)), 4096 items", "y = list(zip(a, a))", setup=LIST_4096),
        loop_case("builtin list(zip(a x 1000)), 4096 items", zip_1000, setup=LIST_4096),
        loop_case("builtin list(zip(a x 4096)), 4096 items", zip_4096, setup=LIST_4096),
        loop_case("builtin for t in zip(a x 4096)", for_zip_4096, setup=LIST_4096),
        loop_case("builtin list(enumerate(list 4096))", "y = list(enumerate(a))", setup=LIST_4096),
        loop_case("builtin list(reversed(list 4096))", "y = list(reversed(a))", setup=LIST_4096),
        loop_case("builtin bytes_of_hex(16 KiB text)", "y = bytes_of_hex(h)", setup='h = "ab" * 8192'),
    ]


def list_method_cases() -> list[Case]:
    return [
        loop_case("list append + pop()", "a.append(x)\na.pop()", setup="a = list(range(100))\nx = 1"),
        loop_case("list extend 4096 into []", "b = []\nb.extend(a)", setup=LIST_4096),
        loop_case("list insert(0, x) + pop() on 4095", "a.insert(0, x)\na.pop()",
                  setup="a = list(range(4095))\nx = 1"),
        loop_case("list pop(0) + append on 4096", "a.append(a.pop(0))", setup=LIST_4096),
        loop_case("list remove(last) + append on 4096", "a.remove(4095)\na.append(4095)", setup=LIST_4096),
        loop_case("list index(last) on 4096", "y = a.index(4095)", setup=LIST_4096),
        loop_case("list count on 4096", "y = a.count(7)", setup=LIST_4096),
        loop_case("list reverse 4096", "a.reverse()", setup=LIST_4096),
        loop_case("list copy 4096", "y = a.copy()", setup=LIST_4096),
    ]


def dict_method_cases() -> list[Case]:
    pairs = "d = {}\nfor i in range(4096):\n    d[str(i)] = i\n"
    half_deleted = colliding_dict("d") + "for i in range(1, 2049):\n    del d[i * C]\n"
    return [
        loop_case("dict get (str key)", 'y = d.get("k")', setup='d = {"k": 1}'),
        loop_case("dict get, 4096 keys i * 2**48 (absent)", "y = d.get(K_ABSENT)", setup=colliding_dict("d"),
                  constants=COLLIDING_CONSTANTS),
        loop_case("dict keys/values/items 4096", "y = d.keys()\nz = d.values()\nw = d.items()", setup=pairs),
        loop_case("dict setdefault (str key)", 'y = d.setdefault("k", 2)', setup='d = {"k": 1}'),
        loop_case("dict setdefault, 4096 keys i * 2**48 (last)", "y = d.setdefault(K_LAST, 2)",
                  setup=colliding_dict("d"), constants=COLLIDING_CONSTANTS),
        loop_case("dict pop + re-add, 4096 keys i * 2**48 (last)", "d[K_LAST] = d.pop(K_LAST)",
                  setup=colliding_dict("d"), constants=COLLIDING_CONSTANTS),
        loop_case("dict update {} with 4096 str keys", "e = {}\ne.update(d)", setup=pairs),
        loop_case("dict update {} with 4096 keys i * 2**48", "e = {}\ne.update(d)", setup=colliding_dict("d"),
                  constants=COLLIDING_CONSTANTS),
        loop_case("dict copy 4096", "y = d.copy()", setup=pairs),
        loop_case("dict copy 2048 keys i * 2**48, half deleted", "y = d.copy()", setup=half_deleted,
                  constants=COLLIDING_CONSTANTS),
        loop_case("dict store 4096 keys i * 2**48 into {}", colliding_dict("d"), constants=COLLIDING_CONSTANTS),
        loop_case("dict store keys i * (2**61 - 1), all colliding (cap)", colliding_dict("d"),
                  constants=COLLIDING_CONSTANTS.replace(str(CLOSE_STEP), str(COLLIDING_STEP))),
    ]


def text_method_cases() -> list[Case]:
    ligatures = 'L = "\\ufb03" * 5461'   # 'ﬃ' (3 bytes) upper-cases to "FFI"
    long_chars = 'T = "b" * 16384\nCH = "a" * 16383 + "b"'
    wide_chars = 'W = "\\U0001F600" * 4096\nWCH = "\\U0001F601" * 4095 + "\\U0001F600"'
    csv = 'CSV = "a," * 4095 + "a"\nWORDS = "a " * 4095 + "a"'
    cases = [
        ("str startswith/endswith 16 KiB", "y = A16.startswith(b)\nz = A16.endswith(b)", 'b = A16[1:] + "a"'),
        ("str find 1-char needle, 16 KiB", 'y = A16.find("b")', ""),
        ("str find adversarial 99-char needle, 16 KiB", "y = A16.find(NEEDLE)", ""),
        ("str find adversarial needle, 4-byte chars", "y = U16.find(n)", 'n = "\\U0001F600" * 97 + "b\\U0001F600"'),
        ("str upper/lower ASCII 16 KiB", "y = A16.upper()\nz = y.lower()", ""),
        ("str upper/lower 4-byte chars 16 KiB", "y = U16.upper()\nz = U16.lower()", ""),
        ("str upper of 'ﬃ' x 5461 (expands 3x)", "y = L.upper()", ""),
        ("str strip() of 16 KiB spaces", "y = s.strip()", 's = " " * 16384'),
        ("str strip(chars), 16 KiB text, 16 KiB chars", "y = T.strip(CH)", ""),
        ("str strip(chars), 4-byte, 4096 chars each", "y = W.strip(WCH)", ""),
        ("str split(',') into 4096 parts", 'y = CSV.split(",")', ""),
        ("str split() into 4096 parts", "y = WORDS.split()", ""),
        ("str split(adversarial 99-char sep), 16 KiB", "y = A16.split(NEEDLE)", ""),
        ("str join 4096 parts", 'y = ",".join(p)', 'p = CSV.split(",")'),
        ("str replace 16384 occurrences", 'y = A16.replace("a", "b")', ""),
        ("str replace 'a' -> 'bb', 8 KiB", 'y = s.replace("a", "bb")', 's = "a" * 8192'),
        ("str replace adversarial 99-char old", 'y = A16.replace(NEEDLE, "x")', ""),
        ("str encode ASCII 16 KiB", "y = A16.encode()", ""),
        ("str encode 4-byte chars 16 KiB", "y = U16.encode()", ""),
        ("bytes startswith 16 KiB", "y = B16.startswith(b)", 'b = B16[1:] + b"a"'),
        ("bytes find adversarial 99-byte needle", "y = B16.find(n)", "n = NEEDLE.encode()"),
        ("bytes hex 8 KiB", "y = b.hex()", 'b = b"a" * 8192'),
        ("bytes decode 16 KiB of 4-byte UTF-8", "y = b.decode()", "b = U16.encode()"),
    ]
    constants = "\n".join([textwrap.dedent(TEXT_CONSTANTS), ligatures, long_chars, wide_chars, csv])
    return [loop_case(name, body, setup=setup, constants=constants) for name, body, setup in cases]


def nesting_cases() -> list[Case]:
    return [
        loop_case("nest build a value 31 deep", "v = 0\nfor i in range(31):\n    v = [v]"),
        loop_case("nest sorted of 64 values 30 deep", "y = sorted(a)",
                  setup="a = []\nfor i in range(64):\n    v = i\n    for j in range(30):\n        v = [v]\n"
                        "    a.append(v)\n"),
    ]


def host_cases() -> list[Case]:
    tuples = "v = []\nfor i in range(4096):\n    v.append(())\n"
    ints = "v = list(range(4096))"
    text = 'v = "a" * 16000'
    deep = "v = 0\nfor i in range(31):\n    v = [v, i]\n"
    gas_after_stored_value = 500_000   # the VM's budget; the host's per-byte gas for storing the value is apart
    small_value = "hello"
    large_value = "a" * 16000
    signed = {value: crypto.sign(BENCH_KEYS, BENCH_DOMAIN, crypto.TAG_CONTRACT_MESSAGE,
                                 encoding.encode_value(value)) for value in (small_value, large_value)}
    cases = [
        loop_case("host caller()", "y = caller()"),
        loop_case("host storage_put small", 'storage_put("k", 1)'),
        loop_case("host storage_get small", 'y = storage_get("k")', setup='storage_put("k", 1)'),
        loop_case("host storage_put 16 KiB str", 'storage_put("k", v)', setup=text),
        loop_case("host storage_put 4096 ints", 'storage_put("k", v)', setup=ints),
        loop_case("host storage_put 4096 empty tuples", 'storage_put("k", v)', setup=tuples),
        *[replace(case, gas_min=gas_after_stored_value) for case in [
            loop_case("host storage_get 16 KiB str", 'y = storage_get("k")', setup=text + '\nstorage_put("k", v)'),
            loop_case("host storage_get 4096 ints", 'y = storage_get("k")', setup=ints + '\nstorage_put("k", v)'),
            loop_case("host storage_get 4096 empty tuples", 'y = storage_get("k")',
                      setup=tuples + 'storage_put("k", v)'),
            loop_case("host storage_get 4096 empty dicts", 'y = storage_get("k")',
                      setup=tuples.replace("()", "{}") + 'storage_put("k", v)'),
            loop_case("host storage_get 1024 x 65-bit ints", 'y = storage_get("k")',
                      setup='v = [2 ** 64] * 1024\nstorage_put("k", v)'),
            loop_case("host storage_get value 31 deep", 'y = storage_get("k")', setup=deep + 'storage_put("k", v)'),
        ]],
        once_case("return 4096 empty tuples (encoded for the size cap)", "v = [()] * 4096\nreturn v"),
        once_case("host emit 16 x 1 KiB", 'v = "a" * 1000\nfor i in range(16):\n    emit("e", v)'),
        loop_case("host hash_value small", 'y = hash_value("hello")'),
        loop_case("host hash_value 16 KiB str", "y = hash_value(v)", setup=text),
        loop_case("host hash_value 4096 empty tuples", "y = hash_value(v)", setup=tuples),
        loop_case("host hash_value value 31 deep", "y = hash_value(v)", setup=deep),
        loop_case("host verify_signed small", f'y = verify_signed(k, "{small_value}", s)', parameters="k, s",
                  args=(BENCH_KEYS.public_key, signed[small_value])),
        loop_case("host verify_signed 16 KiB str", "y = verify_signed(k, v, s)", setup=text, parameters="k, s",
                  args=(BENCH_KEYS.public_key, signed[large_value])),
    ]
    return cases


def load_cases() -> list[Case]:
    constants, constant_count = fill_source("", lambda i: f"A{i} = 1\n", "def f():\n    return A0\n")
    elif_chain, branches = fill_source("def f(x):\n    if x == 0:\n        return 0\n",
                                       lambda i: f"    elif x == {i + 1}:\n        return {i + 1}\n")
    functions, function_count = fill_source("", lambda i: f"def f{i}(x):\n    return x + {i}\n")
    display = "def f(x):\n    return [" + "x," * 4096 + "]\n"
    nested_expression = "(" * 28 + "x" + " + 1)" * 28   # with the def and the assignment: 31 levels
    nested, nested_count = fill_source("def f(x):\n", lambda i: f"    y{i} = {nested_expression}\n",
                                       "    return x\n")
    literal = "def f():\n    return \"" + "a" * (source_bytes_max - 40) + "\"\n"
    tuple_count = limits.contract_constants_gas_max // (limits.contract_container_items_max + 8)
    tuples = "Z = (0,)\n" + "".join(f"T{i} = Z * 4096\n" for i in range(tuple_count))
    return [
        Case(f"load {constant_count} constants A<i> = 1", constants, load_only=True),
        Case(f"load elif chain of {branches + 1} branches", elif_chain, load_only=True),
        Case(f"load {function_count} functions", functions, load_only=True),
        Case("load list display of 4096 items", display, load_only=True),
        Case(f"load {nested_count} expressions nested 28 deep", nested, load_only=True),
        Case("load one 16 KiB string literal", literal, load_only=True),
        Case(f"load {tuple_count} constants of 4096-item tuples (load gas cap)", tuples, load_only=True),
    ]


def all_cases() -> list[Case]:
    return (core_cases() + big_int_cases() + comparison_cases() + subscript_cases() + builtin_cases()
            + list_method_cases() + dict_method_cases() + text_method_cases() + nesting_cases() + host_cases()
            + load_cases())


# --- measuring (in the worker process) ------------------------------------------------------

def bench_host() -> ChainHost:
    """The chain's own host over a fresh in-memory state (storage, events, signatures for BENCH_DOMAIN)."""
    committed = CommittedState(None, signing_domain=BENCH_DOMAIN)
    return ChainHost(Overlay(State(committed)), b"\x01" * 20, BENCH_KEYS.address, 1, 1_700_000_000_000)


@dataclass(slots=True)
class CallOutcome:
    status: str
    """"ok" (returned or ran out of gas), "FAULT <code>" or "ESCAPED: <type>"."""
    gas_used: int
    """The call's gas: the VM's and the host's own (the host takes its per-byte gas from the call's meter)."""
    elapsed_ns: int
    out_of_gas: bool
    """The call stopped at its gas limit (else it returned or failed)."""


def call_once(program: Program, case: Case, gas_limit: int) -> CallOutcome:
    """One call; its gas includes the host's own (ChainHost.charge: bytes stored and emitted)."""
    host = bench_host()
    start_ns = time.perf_counter_ns()
    out_of_gas = False
    try:
        result = call_function(program, "run", case.args, host, gas_limit)
        vm_gas_used, status = result.gas_used, "ok"
    except OutOfGas as error:   # the VM's meter or the host's own charge ran out
        vm_gas_used, status, out_of_gas = error.gas_used, "ok", True
    except ContractError as error:
        cause = f" ({type(error.__cause__).__name__})" if error.code == "internal_error" and error.__cause__ else ""
        vm_gas_used, status = error.gas_used, f"FAULT {error.code}{cause}"
    except Exception as error:   # RecursionError, MemoryError, ...: the bugs this benchmark is for
        vm_gas_used, status = 0, f"ESCAPED: {type(error).__name__}"
    elapsed_ns = time.perf_counter_ns() - start_ns
    return CallOutcome(status, vm_gas_used, elapsed_ns, out_of_gas)


def choose_gas_limit(program: Program, case: Case, target_ns: int, gas_max: int) -> tuple[int, CallOutcome]:
    """The gas limit that makes one call take about `target_ns` (calls grow 8x from gas_probe_first)."""
    gas_least = min(max(gas_probe_first, case.gas_min), gas_max)
    gas_limit = gas_least
    while True:
        outcome = call_once(program, case, gas_limit)
        if not outcome.out_of_gas or gas_limit >= gas_max:
            return gas_limit, outcome
        if outcome.elapsed_ns * gas_probe_growth >= target_ns:
            scaled = gas_limit * target_ns // max(outcome.elapsed_ns, 1)
            return max(min(scaled, gas_max), gas_least), outcome
        gas_limit = min(gas_limit * gas_probe_growth, gas_max)


def measure_call(case: Case, repetitions: int, target_ns: int, gas_max: int) -> dict[str, Any]:
    program = load_program(case.source)
    gas_limit, outcome = choose_gas_limit(program, case, target_ns, gas_max)
    if outcome.status != "ok":
        return {"status": outcome.status, "gas": outcome.gas_used, "ms": outcome.elapsed_ns / 1e6}
    best: tuple[float, int, int, int] | None = None   # (ns/gas, gas per call, ns, calls)
    spent_ns = 0
    for _ in range(repetitions):
        total_ns = total_gas = calls = 0
        while calls == 0 or (total_ns < target_ns and calls < calls_per_repetition_max):
            outcome = call_once(program, case, gas_limit)
            if outcome.status != "ok":
                return {"status": outcome.status, "gas": outcome.gas_used, "ms": outcome.elapsed_ns / 1e6}
            total_ns, total_gas, calls = total_ns + outcome.elapsed_ns, total_gas + outcome.gas_used, calls + 1
        figure = total_ns / max(total_gas, 1)
        if best is None or figure < best[0]:
            best = (figure, total_gas // calls, total_ns, calls)
        spent_ns += total_ns
        if spent_ns > case_time_factor_max * repetitions * target_ns:
            break   # a case whose calls cannot be made short (its set-up alone is slow): one repetition is enough
    ns_per_gas, gas_per_call, total_ns, calls = best
    return {"status": "ok", "gas": gas_per_call, "ms": total_ns / calls / 1e6, "ns_per_gas": ns_per_gas}


def measure_load(case: Case, repetitions: int, target_ns: int) -> dict[str, Any]:
    size = len(case.source.encode())
    deploy_gas = DEPLOY_GAS_BASE + DEPLOY_GAS_PER_SOURCE_BYTE * size
    best_ns: float | None = None
    for _ in range(repetitions):
        total_ns = loads = 0
        while loads == 0 or total_ns < target_ns // 4:
            start_ns = time.perf_counter_ns()
            try:
                load_program(case.source)
            except ContractError as error:
                return {"status": f"REJECTED {error.code}: {error.message}", "bytes": size}
            except Exception as error:
                return {"status": f"ESCAPED: {type(error).__name__}", "bytes": size}
            total_ns, loads = total_ns + time.perf_counter_ns() - start_ns, loads + 1
        best_ns = total_ns / loads if best_ns is None else min(best_ns, total_ns / loads)
    return {"status": "ok", "bytes": size, "ms": best_ns / 1e6, "ns_per_byte": best_ns / size,
            "deploy_gas": deploy_gas, "ns_per_gas": best_ns / deploy_gas}


def run_worker(options: argparse.Namespace) -> None:
    """Answer case numbers read from stdin with one JSON line each on stdout."""
    logging.disable(logging.CRITICAL)   # the VM logs internal errors; the status line reports them
    cases = all_cases()
    target_ns = options.target_ms * 1_000_000
    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    for line in sys.stdin:
        case = cases[int(line)]
        if case.load_only:
            result = measure_load(case, options.repetitions, target_ns)
        else:
            try:
                result = measure_call(case, options.repetitions, target_ns, options.gas_max)
            except ContractError as error:   # the benchmark's own source broke a load rule
                result = {"status": f"REJECTED {error.code}: {error.message}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


# --- driving the workers (in the parent process) -----------------------------------------------

class Worker:
    """A worker process (this script with --worker) that measures one case at a time."""

    def __init__(self, options: argparse.Namespace) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--repetitions",
                   str(options.repetitions), "--target-ms", str(options.target_ms), "--gas-max", str(options.gas_max)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pending = b""
        self.read_result(worker_start_timeout_s)   # {"ready": true} once it has imported and built the cases

    def measure(self, index: int, timeout_s: float) -> dict[str, Any]:
        self.process.stdin.write(f"{index}\n".encode())
        self.process.stdin.flush()
        return self.read_result(timeout_s)

    def read_result(self, timeout_s: float) -> dict[str, Any]:
        """The worker's next JSON line, or a TIMEOUT or CRASHED status."""
        deadline = time.monotonic() + timeout_s
        descriptor = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return {"status": "TIMEOUT"}
            readable, _, _ = select.select([descriptor], [], [], left_s)
            if readable:
                chunk = os.read(descriptor, 65536)
                if not chunk:
                    return {"status": f"CRASHED (exit code {self.process.wait()})"}
                self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()   # this worker's own PID only
        self.process.wait()


def measure_all(cases: list[tuple[int, Case]], options: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    worker = Worker(options)
    try:
        for number, (index, case) in enumerate(cases, start=1):
            print(f"[{number}/{len(cases)}] {case.name} ...", end=" ", file=sys.stderr, flush=True)
            started_s = time.monotonic()
            result = worker.measure(index, options.timeout_s)
            if result["status"] == "TIMEOUT" or result["status"].startswith("CRASHED"):
                worker.stop()
                worker = Worker(options)
            figure = f"{result['ns_per_gas']:.1f} ns/gas" if "ns_per_gas" in result else result["status"]
            print(f"{figure} ({time.monotonic() - started_s:.1f} s)", file=sys.stderr, flush=True)
            results.append({"case": case.name, **result})
    finally:
        worker.stop()
    return results


# --- report ----------------------------------------------------------------------------------

BUG_FAULTS = ("internal_error", "stack_exhausted", "out_of_memory")
"""VM errors that stand for a bug or an exhausted node (a Python exception the VM caught), not a contract's."""


def summarize(calls: list[dict[str, Any]]) -> dict[str, Any]:
    figures = [result["ns_per_gas"] for result in calls if "ns_per_gas" in result]
    median = statistics.median(figures) if figures else 0.0
    for result in calls:
        if "ns_per_gas" in result and median:
            result["ratio"] = result["ns_per_gas"] / median
    ranked = sorted((result for result in calls if "ratio" in result), key=lambda result: -result["ratio"])
    return {
        "median_ns_per_gas": median,
        "worst": ranked[0] if ranked else None,
        "outliers": [result for result in ranked if result["ratio"] > ratio_outlier_min],
        "failures": [result for result in calls if any(code in result["status"] for code in BUG_FAULTS)
                     or not (result["status"] == "ok" or result["status"].startswith("FAULT "))],
    }


def print_calls(calls: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    width = max(len(result["case"]) for result in calls)
    print(f"{'case':<{width}}  {'gas/call':>9}  {'ms/call':>8}  {'ns/gas':>9}  {'x median':>8}")
    for result in calls:
        if "ns_per_gas" in result:
            print(f"{result['case']:<{width}}  {result['gas']:>9,}  {result['ms']:>8.2f}  "
                  f"{result['ns_per_gas']:>9.1f}  {result['ratio']:>8.1f}")
        else:
            gas = f"{result['gas']:>9,}" if "gas" in result else " " * 9
            print(f"{result['case']:<{width}}  {gas}  {'':>8}  {result['status']}")
    median = summary["median_ns_per_gas"]
    print(f"\nmedian: {median:.1f} ns/gas over {sum('ns_per_gas' in result for result in calls)} cases")
    worst = summary["worst"]
    if worst is not None:
        print(f"worst: {worst['case']}: {worst['ns_per_gas']:.1f} ns/gas, {worst['ratio']:.1f}x median")
    print(f"above {ratio_outlier_min:g}x median: {len(summary['outliers'])}")
    for result in summary["outliers"]:
        print(f"  {result['ratio']:8.1f}x  {result['case']}")
    if summary["failures"]:
        print("bugs (escaped exceptions, internal errors, time-outs, crashes):")
        for result in summary["failures"]:
            print(f"  {result['case']}: {result['status']}")


def print_loads(loads: list[dict[str, Any]], median_ns_per_gas: float) -> None:
    width = max(len(result["case"]) for result in loads)
    print(f"{'load_program of':<{width}}  {'bytes':>6}  {'ms':>8}  {'ns/byte':>8}  {'ns/deploy gas':>13}  "
          f"{'x median':>8}")
    for result in loads:
        if "ns_per_byte" not in result:
            print(f"{result['case']:<{width}}  {result.get('bytes', 0):>6,}  {result['status']}")
            continue
        ratio = f"{result['ns_per_gas'] / median_ns_per_gas:>8.1f}" if median_ns_per_gas else ""
        print(f"{result['case']:<{width}}  {result['bytes']:>6,}  {result['ms']:>8.2f}  "
              f"{result['ns_per_byte']:>8.1f}  {result['ns_per_gas']:>13.1f}  {ratio}")


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition of 40 ms per case instead of 3 of 100 ms")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    parser.add_argument("--target-ms", type=int, default=None, help="time of one call and of one repetition")
    parser.add_argument("--repetitions", type=int, default=None, help="repetitions per case (the best counts)")
    parser.add_argument("--gas-max", type=int, default=limits.contract_gas_max, help="largest gas limit of a call")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="time allowed to one case")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.target_ms is None:
        options.target_ms = 40 if options.quick else 100
    if options.repetitions is None:
        options.repetitions = 1 if options.quick else 3
    return options


def main() -> None:
    options = parse_options()
    if options.worker:
        run_worker(options)
        return
    selected = [(index, case) for index, case in enumerate(all_cases()) if options.only in case.name]
    started_s = time.monotonic()
    results = measure_all(selected, options)
    calls = [result for (_, case), result in zip(selected, results) if not case.load_only]
    loads = [result for (_, case), result in zip(selected, results) if case.load_only]
    summary = summarize(calls)
    if options.json:
        print(json.dumps({"calls": calls, "loads": loads, **summary,
                          "seconds": round(time.monotonic() - started_s, 1)}, indent=1))
    else:
        if calls:
            print_calls(calls, summary)
        if loads:
            print("\n" if calls else "", end="")
            print_loads(loads, summary["median_ns_per_gas"])
        print(f"\n({len(selected)} cases in {time.monotonic() - started_s:.0f} s)")


if __name__ == "__main__":
    main()
