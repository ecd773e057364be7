"""Contract VM (node/contracts/): the language subset, gas, caps, host calls and determinism.

Where a construct is plain Python, the expected value is what CPython computes for the same source
(the tests `exec` it; the VM never does).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given, settings, strategies as st

from node import crypto, limits
from node.contracts import gas
from node.contracts.vm import (
    CallResult, ContractError, InvalidContract, OutOfGas, Program, Revert, VMFault, call_function, load_program,
)
from node.encoding import decode_value, encode_value

GAS = limits.contract_gas_max
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeHost:
    """Storage in a dict of encoded values (as the chain keeps them), a caller, events, and two faulty functions."""

    BASE_GAS = {"storage_get": 50, "storage_put": 100, "caller": 10, "emit": 20, "refuse": 10, "float_result": 10}

    def __init__(self) -> None:
        self.storage: dict[bytes, bytes] = {}
        self.events: list = []
        self.calls: list[tuple] = []

    def host_functions(self):
        return self.BASE_GAS

    def call_host(self, name, args):
        self.calls.append((name, args))
        if name == "storage_get":
            data = self.storage.get(encode_value(args[0]))
            return None if data is None else decode_value(data, limits.contract_value_bytes_max)
        if name == "storage_put":
            self.storage[encode_value(args[0])] = encode_value(args[1])
            return None
        if name == "caller":
            return b"\x07" * 20
        if name == "emit":
            self.events.append(args)
            return len(self.events)
        if name == "refuse":
            raise Revert("the host refuses")
        if name == "float_result":
            return 1.5
        raise AssertionError(name)


def run(source: str, function: str = "main", args: tuple = (), gas_limit: int = GAS, host=None) -> CallResult:
    return call_function(load_program(textwrap.dedent(source)), function, args, host or FakeHost(), gas_limit)


def body(code: str, parameters: str = "") -> str:
    """A module with `def main(<parameters>):` around `code`."""
    return f"def main({parameters}):\n" + textwrap.indent(textwrap.dedent(code).strip(), "    ") + "\n"


def python_result(source: str, function: str = "main", args: tuple = ()):
    namespace: dict = {}
    exec(compile(source, "<test>", "exec"), namespace)   # the test's reference, never the VM
    return namespace[function](*args)


def fault(source: str, args: tuple = (), gas_limit: int = GAS) -> ContractError:
    with pytest.raises(ContractError) as raised:
        run(source, args=args, gas_limit=gas_limit)
    return raised.value


# --- the language: every allowed construct, checked against CPython ------------------------------

PYTHON_EQUAL_PROGRAMS = {
    "arithmetic": "return (7 + 3, 7 - 10, -7 * 3, -7 // 2, -7 % 3, 7 % -3, 2 ** 10, -(5), +5, ~5, 10 ** 0)",
    "big ints": "x = 2 ** 200\nreturn (x * 3 // 7, x - (x + 1), -x % 1000, (2 ** 255 - 1) * 2 // 4)",
    "bitwise": "return (12 & 10, 12 | 3, 12 ^ 10, 1 << 100, (1 << 100) >> 98, -5 >> 1, 2 ** 200 >> 300, -1 >> 300)",
    "bools are ints": "return (True + 1, True * 3, True & False, True | False, -True, 3 - False, [1, 2][True])",
    "comparisons": "return (1 < 2 < 3, 3 > 2 > 2, 1 == True, 'a' < 'b', b'a' >= b'a', 'a' == b'a', "
                   "(1, 2) < (1, 3), [1, [2]] == [1, [2]], {1: [2]} != {1: [3]}, None is None, [] is not None)",
    "chained": "x = 5\nreturn (1 < x <= 5, 1 < x < 3, x == 5 != 6, 0 <= x < 10 != 11)",
    "in": "d = {'k': 1, 2: 3}\nreturn ('k' in d, 3 in d, 2 in [1, 2], [2] in [[2]], 'bc' in 'abcd', b'b' in b'ab', "
          "98 in b'ab', 4 not in (1, 2), 5 in range(10), 'x' in range(3))",
    "bool operators": "return (0 or 'x', 1 and [], None or 0 or 5, 1 and 2 and 3, not [], not 'a', 0 and 1 // 0)",
    "conditional expression": "x = 3\nreturn ('big' if x > 2 else 'small', 'big' if x > 5 else 'small')",
    "if elif else": "out = []\nfor x in range(5):\n    if x == 0:\n        out.append('zero')\n"
                    "    elif x == 1:\n        out.append('one')\n    elif x < 4:\n        out.append('few')\n"
                    "    else:\n        out.append('many')\nreturn out",
    "for loops": "out = []\nfor x in [1, 2]:\n    out.append(x)\nfor x in (3,):\n    out.append(x)\n"
                 "for k in {'a': 1, 'b': 2}:\n    out.append(k)\nfor c in 'hi':\n    out.append(c)\n"
                 "for b in b'AB':\n    out.append(b)\nfor i in range(10, 0, -3):\n    out.append(i)\nreturn out",
    "for else, break, continue": "out = []\nfor i in range(10):\n    if i % 2:\n        continue\n"
                                 "    if i > 6:\n        break\n    out.append(i)\nelse:\n    out.append('no break')\n"
                                 "for i in range(2):\n    pass\nelse:\n    out.append('else')\nreturn out",
    "while": "n = 0\ntotal = 0\nwhile n < 10:\n    n += 1\n    if n == 3:\n        continue\n"
             "    if n == 8:\n        break\n    total += n\nelse:\n    total = -1\nwhile False:\n    pass\n"
             "else:\n    total += 1000\nreturn total",
    "unpacking": "a, b = 1, 2\n(c, d), e = [3, 4], 5\nf, g = 'xy'\nh, i = {'k': 1, 'l': 2}\n"
                 "j = k = [0]\nl = [0, 0]\nl[0], l[1] = b, a\nreturn (a, b, c, d, e, f, g, h, i, j == k, l)",
    "augmented assignment": "x = 10\nx += 5\nx -= 1\nx *= 3\nx //= 4\nx %= 7\nx **= 3\nx <<= 2\nx >>= 1\n"
                            "x |= 256\nx &= 0xFFF\nx ^= 1\ns = 'a'\ns += 'b'\ns *= 2\nt = (1,)\nt += (2,)\n"
                            "d = {'n': 1}\nd['n'] += 41\nl = [[1], 2]\nl[0] += [9]\nreturn (x, s, t, d, l)",
    "list aliasing": "a = [1]\nb = a\na += [2]\na.append(3)\nc = a\na = a + [4]\nd = {'l': b}\nd['l'].append(5)\n"
                     "e = [0]\ne *= 3\nreturn (a, b, c, d, e)",
    "subscripts and slices": "l = [0, 1, 2, 3, 4, 5]\ns = 'abcdef'\nreturn (l[1], l[-1], l[1:3], l[::2], l[::-1], "
                             "l[-2:], l[:100], l[4:1:-1], s[2:], s[::-2], b'xyz'[1], b'xyz'[:2], (1, 2, 3)[1:], "
                             "range(10)[3], list(range(10)[2:8:3]))",
    "item assignment and del": "l = [1, 2, 3]\nl[1] = 20\nl[-1] = 30\ndel l[0]\nd = {'a': 1, 'b': 2}\n"
                               "d['c'] = 3\ndel d['a']\nd['b'] = 4\nreturn (l, d, list(d))",
    "displays": "return ([], [1, [2]], (), (1,), (1, 'a', b'b', None, True), {}, {'a': 1, 2: [3], b'k': (4,)}, "
                "{1: 'a', True: 'b'}, {'x': 1, 'x': 2})",
    "builtins": "return (len([1, 2]), len('héllo'), len(b'ab'), len({1: 2}), len(range(5)), min(3, 1, 2), "
                "max([1, 5, 2]), min('b', 'a'), abs(-7), sum([1, 2, 3]), sum([1, 2], 10), sorted([3, 1, 2]), "
                "sorted(['b', 'a']), sorted((2, 1)), sorted({'b': 1, 'a': 2}), str(42), str(-1), str(True), "
                "str(None), str('s'), int('42'), int(' -7 '), int('ff', 16), int('0x1f', 0), int(True), int(5), "
                "bool(0), bool([1]), bool(), list('ab'), list((1, 2)), list({'k': 1}), list(range(3)), tuple([1, 2]), "
                "dict([(1, 2), ['a', 'b']]), dict({'a': 1}), dict(), list(enumerate(['a', 'b'])), "
                "list(enumerate('ab', 10)), list(zip([1, 2, 3], 'ab')), list(reversed([1, 2, 3])), "
                "list(reversed(range(3))), list(reversed({'a': 1, 'b': 2})), sorted([(2, 'b'), (1, 'z'), (2, 'a')]))",
    "iterators in loops": "out = []\nfor i, c in enumerate('xy'):\n    out.append((i, c))\n"
                          "for a, b in zip([1, 2], (3, 4)):\n    out.append(a * b)\nfor x in reversed('ab'):\n"
                          "    out.append(x)\ne = enumerate([5])\nout.append(list(e))\nout.append(list(e))\nreturn out",
    "list methods": "l = [3, 1, 2]\nl.append(4)\nl.extend([5, 6])\nl.extend('ab')\nl.insert(0, 0)\nl.insert(100, 9)\n"
                    "p = l.pop()\nq = l.pop(0)\nl.remove('a')\nl.reverse()\nc = l.copy()\nc.append(99)\n"
                    "return (l, p, q, l.index(2), l.count(1), c)",
    "dict methods": "d = {'a': 1}\nx = d.get('a')\ny = d.get('z')\nz = d.get('z', 5)\nd.setdefault('b', 2)\n"
                    "d.setdefault('a', 100)\nd.update({'c': 3, 'a': 0})\np = d.pop('b')\nq = d.pop('zz', -1)\n"
                    "e = d.copy()\ne['new'] = 1\nreturn (x, y, z, p, q, d, e, list(d.keys()), list(d.values()), "
                    "list(d.items()))",
    "str methods": "s = ' Hello, World '\nreturn (s.strip(), s.strip(' Hd'), s.upper(), s.lower(), s.split(), "
                   "s.split(','), 'a,b,c'.split(',', 1), '-'.join(['x', 'y', 'z']), '-'.join('abc'), s.find('o'), "
                   "s.find('o', 6), s.find('q'), s.startswith(' H'), s.endswith(('x', ' ')), "
                   "s.replace('l', 'L'), s.replace('l', '', 2), 'ß'.upper(), 'é'.encode())",
    "bytes methods": "b = b'\\x00\\xffab'\nreturn (b.hex(), b.startswith(b'\\x00'), b.endswith(b'b'), b.find(b'a'), "
                     "b'caf\\xc3\\xa9'.decode(), b[1:].find(255))",
    "annotations and docstrings": 'x: int = 5\n"""a docstring-like string"""\nreturn x',
}


@pytest.mark.parametrize("name", sorted(PYTHON_EQUAL_PROGRAMS))
def test_allowed_construct_computes_what_python_computes(name):
    source = body(PYTHON_EQUAL_PROGRAMS[name])
    result = run(source)
    expected = python_result(source)
    assert result.value == expected
    assert repr(result.value) == repr(expected)   # same types too (bool vs int, tuple vs list)
    assert 0 < result.gas_used < GAS


def test_module_constants_functions_defaults_recursion_and_private_helpers():
    source = textwrap.dedent('''
        """An example contract."""
        FEE = 10 ** 3 + 5
        NAMES = ("a", "b")
        NEGATIVE = -FEE
        FLAG = not 0

        def fib(n: int) -> int:
            """Recursive Fibonacci."""
            if n < 2:
                return n
            return fib(n - 1) + fib(n - 2)

        def _scale(x, factor=2, offset=FEE):
            return x * factor + offset

        def main(x, /, y=NAMES):
            return (fib(x), _scale(x), _scale(x, 3), _scale(x, 3, 0), y, NEGATIVE, FLAG, main2())

        def main2():
            pass
    ''')
    assert run(source, args=(10,)).value == python_result(source, args=(10,))
    assert run(source, args=(1, ("z",))).value[4] == ("z",)
    assert load_program(source).public_functions() == ("fib", "main", "main2")


def test_long_elif_chain_is_flat_and_allowed():
    branches = "".join(f"    elif x == {i}:\n        return {i * 10}\n" for i in range(1, 60))
    source = f"def main(x):\n    if x == 0:\n        return -1\n{branches}    else:\n        return None\n"
    assert run(source, args=(59,)).value == 590
    assert run(source, args=(100,)).value is None


def test_an_else_block_is_nested_like_any_block():
    """Only an `elif` (an else holding just an if) is flat; an else holding a loop nests one level deeper."""
    def nested(depth: int, wrap_in_else: bool) -> str:
        inner = "pass"
        for level in range(depth, 0, -1):
            inner = f"while x:\n{textwrap.indent(inner, '    ')}"
        if wrap_in_else:
            inner = f"if x:\n    pass\nelse:\n{textwrap.indent(inner, '    ')}"
        return body(inner, "x")
    load_program(nested(30, wrap_in_else=False))
    load_program(nested(29, wrap_in_else=True))
    with pytest.raises(InvalidContract, match="nest more than"):
        load_program(nested(30, wrap_in_else=True))


def test_dict_keys_values_items_return_list_snapshots():
    result = run(body("d = {'a': 1}\nk = d.keys()\nd['b'] = 2\nreturn (k, d.values(), d.items())"))
    assert result.value == (["a"], [1, 2], [("a", 1), ("b", 2)])


def test_the_largest_containers_work():
    result = run(body("d = {}\nfor i in range(4096):\n    d[i] = i\nl = list(range(4096))\n"
                      "return (len(d.items()), len(d.keys()), len(d.copy()), len(l + []), len(sorted(l)), 4095 in l)"))
    assert result.value == (4096, 4096, 4096, 4096, 4096, True)
    text_max = limits.contract_text_bytes_max
    assert run(body(f"return len('a' * {text_max}), len(b'a' * {text_max}), len('é' * {text_max // 2})")).value \
        == (text_max, text_max, text_max // 2)
    assert fault(body(f"return 'é' * {text_max // 2 + 1}")).code == "text_too_large"
    half = 2 ** (limits.contract_int_bits_max - 1)
    assert run(body(f"return {half} - 1 + {half}, -({half} - 1 + {half})")).value == (2 * half - 1, 1 - 2 * half)
    assert fault(body(f"return {half} + {half}")).code == "int_too_large"


def test_vm_only_builtins():
    assert run(body("return bytes_of_hex('00ff'), bytes_of_hex('')")).value == (b"\x00\xff", b"")
    error = fault(body("revert('not enough funds')"))
    assert isinstance(error, Revert) and error.code == "reverted" and error.message == "not enough funds"


def test_the_example_in_the_language_reference_runs():
    with open(os.path.join(REPO, "docs", "CONTRACTS.md"), encoding="utf-8") as file:
        example = file.read().split("```python\n", 1)[1].split("```", 1)[0]
    host = FakeHost()
    program = load_program(example)
    assert program.public_functions() == ("create_order",)
    order = call_function(program, "create_order", ("o-1", 10_000), host, GAS).value
    assert order == {"buyer": b"\x07" * 20, "amount": 10_000, "fee": 30, "state": "created"}
    with pytest.raises(Revert, match="order exists"):
        call_function(program, "create_order", ("o-1", 5), host, GAS)


def test_program_identity_and_public_functions():
    source = "def b():\n    pass\ndef a():\n    pass\ndef _hidden():\n    pass\n"
    program = load_program(source)
    assert isinstance(program, Program)
    assert program.code_hash == crypto.hash_bytes(source.encode())
    assert program.public_functions() == ("a", "b")
    assert set(program.functions) == {"a", "b", "_hidden"}


# --- forbidden constructs: rejected at load, naming the rule ------------------------------------

FORBIDDEN_SOURCES = {
    "import": ("import os", "imports are not allowed"),
    "from import": ("from os import path", "imports are not allowed"),
    "import in function": (body("import os"), "imports are not allowed"),
    "dunder attribute": (body("return x.__class__", "x"), "'__'"),
    "dunder chain": (body("return ().__class__.__bases__"), "'__'"),
    "dunder name": (body("return __name__"), "'__'"),
    "dunder parameter": ("def main(__x):\n    pass", "'__'"),
    "getattr": (body('return getattr(x, "y")', "x"), "'getattr' is not available"),
    "eval": (body('return eval("1")'), "'eval' is not available"),
    "exec": (body('exec("x = 1")'), "'exec' is not available"),
    "open": (body('return open("/etc/passwd")'), "'open' is not available"),
    "print": (body("print(1)"), "'print' is not available"),
    "type": (body("return type(1)"), "'type' is not available"),
    "builtin as value": (body("return len"), "functions are not values"),
    "f-string": (body('return f"{1}"'), "f-strings are not allowed"),
    "percent formatting": (body('return "%s" % x', "x"), "string formatting with % is not allowed"),
    "format method": (body('return "{}".format(x)', "x"), "method 'format' is not allowed"),
    "float literal": (body("return 1.5"), "floats are not allowed"),
    "exponent float literal": (body("return 1e3"), "floats are not allowed"),
    "complex literal": (body("return 2j"), "complex numbers are not allowed"),
    "true division": (body("return 1 / 2"), "true division"),
    "true division assignment": (body("x = 1\nx /= 2"), "true division"),
    "matmul": (body("return x @ x", "x"), "@"),
    "lambda": (body("return lambda: 1"), "lambda is not allowed"),
    "class": ("class A:\n    pass", "classes are not allowed"),
    "global": (body("global X\nX = 1"), "global is not allowed"),
    "nonlocal": (body("nonlocal x"), "nonlocal is not allowed"),
    "try": (body("try:\n    pass\nexcept:\n    pass"), "try is not allowed"),
    "with": (body("with x:\n    pass", "x"), "with is not allowed"),
    "yield": (body("yield 1"), "yield is not allowed"),
    "raise": (body("raise ValueError()"), "raise is not allowed"),
    "assert": (body("assert 1"), "assert is not allowed"),
    "set literal": (body("return {1}"), "sets are not allowed"),
    "set comprehension": (body("return {x for x in []}"), "sets are not allowed"),
    "list comprehension": (body("return [x for x in []]"), "comprehensions are not allowed"),
    "generator": (body("return sum(x for x in [])"), "comprehensions are not allowed"),
    "attribute read": (body("return x.y", "x"), "attribute access is not allowed"),
    "attribute write": (body("x.y = 1", "x"), "attribute access is not allowed"),
    "unknown method": (body("return x.mro()", "x"), "method 'mro' is not allowed"),
    "decorator": ("@foo\ndef main():\n    pass", "decorators are not allowed"),
    "nested def": (body("def inner():\n    pass"), "module level only"),
    "async def": ("async def main():\n    pass", "async functions are not allowed"),
    "walrus": (body("return (x := 1)"), ":="),
    "starred argument": (body("return len(*x)", "x"), "starred"),
    "starred assignment": (body("a, *b = [1, 2]"), "starred"),
    "keyword argument": (body("return sorted(x, reverse=True)", "x"), "keyword arguments are not allowed"),
    "kwargs parameter": ("def main(**kw):\n    pass", "*args and **kwargs"),
    "varargs parameter": ("def main(*a):\n    pass", "*args and **kwargs"),
    "keyword-only parameter": ("def main(*, a):\n    pass", "keyword-only"),
    "del name": (body("x = 1\ndel x"), "del only removes an item"),
    "slice assignment": (body("x[1:2] = []", "x"), "slice assignment is not allowed"),
    "is with non-None": (body("return x is True", "x"), "only compare with None"),
    "match": (body("match x:\n    case 1:\n        pass", "x"), "match is not allowed"),
    "module statement": ("x = 1", "UPPER_CASE"),
    "module expression": ("len([])", "module level holds only"),
    "module if": ("if True:\n    pass", "module level holds only"),
    "unknown name": (body("return y"), "unknown name 'y'"),
    "local shadows builtin": (body("len = 1"), "builtin name"),
    "local shadows constant": ("X = 1\n" + body("X = 2"), "already defined"),
    "function defined twice": ("def main():\n    pass\ndef main():\n    pass", "already defined"),
    "call a variable": (body("return x()", "x"), "is a variable, not a function"),
    "call a constant": ("X = 1\n" + body("return X()"), "is a constant, not a function"),
    "wrong arity": ("def f(a):\n    pass\n" + body("return f(1, 2)"), "takes 1 arguments, 2 given"),
    "builtin arity": (body("return len(1, 2)"), "len() takes 1 arguments, 2 given"),
    "break outside loop": (body("break"), "only allowed inside a loop"),
    "dict unpacking": (body("return {**x}", "x"), "** in a dict display"),
    "non-constant default": ("def main(x=[]):\n    pass", "constant"),
    "constant calls": ("X = len('a')", "constant is a literal"),
    "huge int literal": (body(f"return {2 ** 256}"), "integer literals are limited to 256 bits"),
    "very huge int literal": (body("return " + "9" * 5000), "integer literals are limited to 256 bits"),
    "surrogate literal": (body('return "\\ud800"'), "lone surrogates"),
    "non-ASCII name": (body("café = 1"), "names are ASCII"),
    "syntax error": ("def main(:\n    pass", "syntax error"),
    "NUL byte": ("def main():\n    return '\x00'", "null bytes"),
    "ellipsis": (body("return ..."), "not allowed"),
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN_SOURCES))
def test_invalid_contract_forbidden_construct(name):
    source, rule = FORBIDDEN_SOURCES[name]
    with pytest.raises(InvalidContract) as raised:
        load_program(source)
    assert raised.value.code == "invalid_contract"
    assert rule in raised.value.message


def test_invalid_contract_messages_name_the_line():
    with pytest.raises(InvalidContract) as raised:
        load_program("def main():\n    x = 1\n    import os\n")
    assert raised.value.message == "line 3: imports are not allowed"


HOSTILE_SOURCES = {
    "deep unary": "x = " + "-" * 16000 + "1",
    "deep not": body("return " + "not " * 3000 + "1"),
    "long chain": body("return 1" + " + 1" * 5000),
    "deep parentheses": body("return " + "(" * 1000 + "1" + ")" * 1000),
    "deep brackets": body("return " + "[" * 1000 + "]" * 1000),
    "deep attributes": body("return x" + ".y" * 5000, "x"),
    "deep calls": body("return " + "f(" * 100 + ")" * 100),
    "deep lambdas": "X = " + "lambda: " * 2000 + "1",
    "deep indentation": "".join(" " * i + "if 1:\n" for i in range(120)) + " " * 120 + "pass\n",
    "deep statements": "def main():\n" + "".join("    " * (i + 1) + "while 1:\n" for i in range(40))
                       + "    " * 41 + "pass\n",
    "nested 33 expressions": body("return " + "-(" * 33 + "1" + ")" * 33),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SOURCES))
def test_invalid_contract_hostile_source_is_rejected_quickly(name):
    start = time.perf_counter()
    with pytest.raises(InvalidContract):
        load_program(HOSTILE_SOURCES[name])
    assert time.perf_counter() - start < 1.0


def test_invalid_contract_size_caps():
    with pytest.raises(InvalidContract, match="bytes, more than"):
        load_program("#" * (limits.contract_source_bytes_max + 1))
    many_nodes = body("return (" + "-y," * 5300 + ")", "y")   # 4 nodes per 3 bytes
    assert len(many_nodes.encode()) <= limits.contract_source_bytes_max
    with pytest.raises(InvalidContract, match="syntax-tree nodes"):
        load_program(many_nodes)
    with pytest.raises(InvalidContract):
        load_program(123)


# --- run-time rules ---------------------------------------------------------------------------

RUNTIME_FAULTS = {
    "infinite loop": ("while True:\n    pass", "out_of_gas"),
    "huge list": ("x = [0] * 10**9", "container_too_large"),
    "huge str": ('s = "a" * 10**9', "text_too_large"),
    "huge bytes": ('s = b"a" * 10**9', "text_too_large"),
    "huge power": ("return 2 ** 10**9", "int_too_large"),
    "huge shift": ("return 1 << 10**9", "int_too_large"),
    "huge multiplication": ("return (2 ** 200) * (2 ** 100)", "int_too_large"),
    "list doubling": ("x = [1]\nwhile True:\n    x = x + x", "container_too_large"),
    "list doubling in place": ("x = [1]\nwhile True:\n    x += x", "container_too_large"),
    "list repeat in place": ("x = [1]\nwhile True:\n    x *= 2", "container_too_large"),
    "str doubling": ('x = "ab"\nwhile True:\n    x = x + x', "text_too_large"),
    "int squaring": ("x = 3\nwhile True:\n    x = x * x", "int_too_large"),
    "dict growth": ("d = {}\ni = 0\nwhile True:\n    d[i] = i\n    i += 1", "container_too_large"),
    "append growth": ("x = []\nwhile True:\n    x.append(0)", "container_too_large"),
    "range to list": ("return list(range(10**70))", "container_too_large"),
    "join too long": ('return ",".join(["a" * 10000, "b" * 10000])', "text_too_large"),
    "replace too long": ('return "abc".replace("", "x" * 10000)', "text_too_large"),
    "hex too long": ('return (b"a" * 10000).hex()', "text_too_large"),
    "deep recursion": ("return main()", "call_depth"),
    "cyclic comparison": ("a = []\na.append(a)\nb = []\nb.append(b)\nreturn a == b", "value_too_deep"),
    "deep value returned": ("a = []\nfor i in range(100):\n    a = [a]\nreturn a", "value_too_deep"),
    "comparison blow-up": ("x = [1] * 4000\ny = [x] * 4000\nz = [x] * 4000\nreturn y == z", "out_of_gas"),
    "division by zero": ("return 1 // 0", "division_by_zero"),
    "modulo by zero": ("x = 0\nreturn 5 % x", "division_by_zero"),
    "index": ("return [1][5]", "index_error"),
    "index assignment": ("x = [1]\nx[5] = 1", "index_error"),
    "key": ("return {1: 2}[3]", "key_error"),
    "del missing key": ("x = {}\ndel x['a']", "key_error"),
    "tuple key": ("return {(1,): 2}", "type_error"),
    "list key lookup": ("return [1] in {1: 2}", "type_error"),
    "mixed types": ('return 1 + "a"', "type_error"),
    "ordering mixed types": ('return 1 < "a"', "type_error"),
    "sorting mixed types": ('return sorted([1, "a"])', "type_error"),
    "percent on str": ('x = "%s"\nreturn x % 1', "type_error"),
    "no such method": ("return (1).append(2)", "type_error"),
    "method arity": ("return [].append()", "bad_argument"),
    "tuple assignment": ("x = (1,)\nx[0] = 2", "type_error"),
    "not iterable": ("for x in 5:\n    pass", "type_error"),
    "in on iterator": ("return 1 in enumerate([1])", "type_error"),
    "str of list": ("return str([1])", "type_error"),
    "negative exponent": ("return 2 ** -1", "value_error"),
    "negative shift": ("return 1 << -1", "value_error"),
    "unpack count": ("a, b = [1, 2, 3]", "value_error"),
    "int of junk": ('return int("x")', "value_error"),
    "int of a long text": ('return int("1" * 700)', "value_error"),
    "min of nothing": ("return min([])", "value_error"),
    "index of missing": ("return [1].index(2)", "value_error"),
    "zero step": ("return [1][::0]", "value_error"),
    "bad utf-8": ("return b'\\xff'.decode()", "value_error"),
    "dict changed during loop": ("d = {1: 2}\nfor k in d:\n    d[k + 1] = 0", "iteration_error"),
    "unbound local": ("if False:\n    x = 1\nreturn x", "unbound_local"),
    "unknown host function": ("return no_such_function(1)", "unknown_function"),
    "range returned": ("return range(3)", "type_error"),
    "len of a huge range": ("return len(range(10**70))", "int_too_large"),
}


@pytest.mark.parametrize("name", sorted(RUNTIME_FAULTS))
def test_runtime_fault(name):
    code, expected = RUNTIME_FAULTS[name]
    start = time.perf_counter()
    error = fault(body(code))
    assert time.perf_counter() - start < 2.0
    assert error.code == expected, error
    assert isinstance(error, OutOfGas if expected == "out_of_gas" else VMFault)
    assert 0 < error.gas_used <= GAS


def test_out_of_gas_uses_the_whole_limit():
    for limit in (0, 1, 57, 10_000):
        error = fault(body("x = 0\nwhile True:\n    x += 1"), gas_limit=limit)
        assert isinstance(error, OutOfGas) and error.gas_used == limit


def test_hostile_allocations_take_a_fraction_of_a_second():
    start = time.perf_counter()
    for code in ("x = [0] * 10**9", 's = "a" * 10**9', "return 2 ** 10**9", "return 1 << 10**9",
                 "x = [1]\nwhile True:\n    x = x + x"):
        fault(body(code))
    assert time.perf_counter() - start < 0.5


def test_gas_limit_above_the_maximum_is_refused():
    with pytest.raises(VMFault) as raised:
        run(body("pass"), gas_limit=limits.contract_gas_max + 1)
    assert raised.value.code == "bad_argument" and raised.value.gas_used == 0


def test_call_errors():
    program = load_program("def main(a, b=1):\n    return a\ndef _private():\n    return 1\n")
    host = FakeHost()
    for name, args, code in [("nope", (), "unknown_function"), ("_private", (), "unknown_function"),
                             ("main", (), "bad_argument"), ("main", (1, 2, 3), "bad_argument"),
                             ("main", [1], "bad_argument"), ("main", (1.5,), "type_error"),
                             ("main", (range(3),), "type_error"), ("main", ({(1,): 2},), "type_error")]:
        with pytest.raises(VMFault) as raised:
            call_function(program, name, args, host, GAS)
        assert raised.value.code == code, (name, args)
    assert call_function(program, "main", ([1, {"k": (2,)}],), host, GAS).value == [1, {"k": (2,)}]


def test_large_return_value_is_refused():
    error = fault(body("x = []\nfor i in range(4):\n    x.append('a' * 5000)\nreturn x"))
    assert error.code == "value_too_large"
    assert run(body("return ['a' * 5000, 'b' * 5000]")).value[1] == "b" * 5000


def test_python_recursion_stays_far_below_the_default_limit():
    """Deepest nesting the checker allows, at the deepest call depth, under a lowered recursion limit."""
    expression = "f(n - 1)"
    for _ in range(limits.contract_nesting_depth_max - 5):
        expression = f"(1 + {expression})"
    program = load_program(f"def f(n):\n    if n == 0:\n        return 0\n    return {expression}\n")
    depth = len(inspect.stack(0))
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 600)
    try:
        result = call_function(program, "f", (limits.contract_call_depth_max - 1,), FakeHost(), GAS)
    finally:
        sys.setrecursionlimit(old_limit)
    assert result.value == (limits.contract_call_depth_max - 1) * (limits.contract_nesting_depth_max - 5)


# --- gas ------------------------------------------------------------------------------------------

def test_gas_follows_the_documented_schedule():
    # call 20 + return statement 1 + constant 1 + result 1 unit
    assert run(body("return 1")).gas_used == 23
    # + 1 argument: call 21, argument 1 unit; x = a + 1: statement 1, name 1, constant 1, binary 3,
    # store 1; return x: 1 + 1; result 1 unit
    assert run(body("x = a + 1\nreturn x", "a"), args=(5,)).gas_used == 21 + 1 + 7 + 2 + 1
    # a loop of 3: for 1 + call range 5 + constant 1; 3 iterations of 2 + store 1; pass 1 each
    assert run(body("for i in range(3):\n    pass")).gas_used == 20 + 7 + 3 * 3 + 3 + 1
    # text produced: 1 gas per 32 bytes (rounded up), on top of the static costs
    small = run(body("return 'a' * 1")).gas_used
    large = run(body("return 'a' * 3200")).gas_used
    assert large - small == (100 - 1) + (3200 // 32 - 0)   # 99 more to make it, 100 more units to return it


def test_gas_of_big_integers_grows_with_their_size():
    small = run(body("x = 2 ** 10\nreturn 0")).gas_used
    big = run(body("x = 2 ** 250\nreturn 0")).gas_used
    assert big - small == (251 - 1) // gas.int_bits_per_gas


def test_failed_call_reports_gas_used_up_to_the_failure():
    error = fault(body("x = 1\nrevert('no')"))
    assert error.gas_used == 20 + 3 + 1 + 5 + 1   # call, assignment, revert statement, builtin, argument


def test_same_program_twice_gives_identical_value_and_gas():
    source = body("d = {'b': 2, 'a': 1, b'z': [3]}\nout = []\nfor k in d:\n    out.append(k)\n"
                  "return (out, sorted(['x', 'b', 'a']), d, storage_get('k'))")
    assert run(source) == run(source)


DETERMINISM_SOURCE = """
def main():
    d = {}
    for i in range(60):
        d["key" + str(i)] = i
        d[str(i * 7).encode()] = [i]
    text_keys = []
    byte_keys = []
    for k in d:
        if k[:3] == "key":
            text_keys.append(k)
        else:
            byte_keys.append(k)
    return (sorted(text_keys)[:10], sorted(byte_keys)[-10:], d, caller(), list(d.items())[-3:], byte_keys[:5])
"""
DETERMINISM_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from node.contracts.vm import load_program, call_function
from tests.unit.test_vm import DETERMINISM_SOURCE, FakeHost
result = call_function(load_program(DETERMINISM_SOURCE), "main", (), FakeHost(), 100_000)
print(repr((result.value, result.gas_used)))
"""


def test_results_do_not_depend_on_the_hash_seed():
    outputs = []
    for seed in ("0", "12345"):
        environment = {**os.environ, "PYTHONHASHSEED": seed}
        completed = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT.format(repo=REPO)], env=environment,
                                   cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
        outputs.append(completed.stdout.strip())
    result = call_function(load_program(DETERMINISM_SOURCE), "main", (), FakeHost(), 100_000)
    assert outputs[0] == outputs[1] == repr((result.value, result.gas_used))


# --- host calls -------------------------------------------------------------------------------------

def test_host_calls_pass_arguments_and_results_and_charge_base_gas():
    host = FakeHost()
    source = body("storage_put(('balance', who), {'amount': amount, 'tags': ['x']})\n"
                  "return (storage_get(('balance', who)), storage_get('missing'), caller())", "who, amount")
    result = run(source, args=("bob", 5), host=host)
    assert result.value == ({"amount": 5, "tags": ["x"]}, None, b"\x07" * 20)
    assert [name for name, _ in host.calls] == ["storage_put", "storage_get", "storage_get", "caller"]
    base = FakeHost.BASE_GAS
    assert result.gas_used > base["storage_put"] + 2 * base["storage_get"] + base["caller"]

    cheap = FakeHost()
    cheap.BASE_GAS = {**base, "caller": 0}
    assert result.gas_used - run(source, args=("bob", 5), host=cheap).gas_used == base["caller"]


def test_host_call_gas_grows_with_argument_size():
    short = run(body("emit('e', 'a' * 1)")).gas_used
    long = run(body("emit('e', 'a' * 3200)")).gas_used
    assert long - short == 99 + 100   # making the str, then passing it (1 unit per 32 bytes)


def test_host_revert_propagates_with_gas_used():
    error = fault(body("x = 1\nrefuse()"))
    assert isinstance(error, Revert) and error.message == "the host refuses"
    assert error.gas_used > FakeHost.BASE_GAS["refuse"]


def test_host_result_must_be_a_contract_value():
    error = fault(body("return float_result()"))
    assert error.code == "type_error"


def test_host_arguments_must_be_contract_values():
    assert fault(body("emit(range(3))")).code == "type_error"
    assert fault(body("a = []\na.append(a)\nemit(a)")).code == "value_too_deep"


def test_unknown_function_is_resolved_at_run_time():
    source = body("if flag:\n    return missing_host_function()\nreturn 1", "flag")
    program = load_program(source)
    assert call_function(program, "main", (False,), FakeHost(), GAS).value == 1
    with pytest.raises(VMFault) as raised:
        call_function(program, "main", (True,), FakeHost(), GAS)
    assert raised.value.code == "unknown_function"


def test_contract_functions_shadow_host_functions():
    source = "def caller():\n    return 'mine'\n" + body("return caller()")
    assert run(source).value == "mine"


# --- cross-check against CPython on random programs -------------------------------------------------

VARIABLES = ("a", "b", "c", "i")
ERROR_CODES = {ZeroDivisionError: "division_by_zero", IndexError: "index_error", KeyError: "key_error"}


@st.composite
def int_expressions(draw, depth=2):
    choice = draw(st.integers(0, 7 if depth else 2))
    if choice == 0:
        return str(draw(st.integers(-20, 20)))
    if choice <= 2:
        return draw(st.sampled_from(VARIABLES + ("len(L)",)))
    if choice <= 5:
        operator = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
        return f"({draw(int_expressions(depth - 1))} {operator} {draw(int_expressions(depth - 1))})"
    if choice == 6:
        return f"({draw(int_expressions(depth - 1))} if {draw(conditions(depth - 1))} else " \
               f"{draw(int_expressions(depth - 1))})"
    return draw(st.sampled_from(["L[{}]", "D[{}]", "D.get({}, 7)"])).format(draw(int_expressions(depth - 1)))


@st.composite
def conditions(draw, depth=1):
    left, right = draw(int_expressions(depth)), draw(int_expressions(depth))
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return f"{left} {draw(st.sampled_from(['<', '<=', '==', '!=', '>']))} {right}"
    if choice == 1:
        return f"{left} in {draw(st.sampled_from(['L', 'D']))}"
    if choice == 2:
        return f"not {left} > {right}"
    if choice == 3:
        return f"({left} < {right} and {right} != 0)"
    return f"({left} == 0 or {left} < {right} < 10)"


@st.composite
def statement_blocks(draw, depth=2, indent="    "):
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        choice = draw(st.integers(0, 9 if depth else 6))
        target = draw(st.sampled_from(VARIABLES[:3]))
        expression = draw(int_expressions())
        if choice <= 1:
            lines.append(f"{indent}{target} = {expression}")
        elif choice == 2:
            lines.append(f"{indent}{target} {draw(st.sampled_from(['+=', '-=', '*=', '//=', '%=']))} {expression}")
        elif choice == 3:
            lines.append(f"{indent}L.append({expression})")
        elif choice == 4:
            lines.append(f"{indent}D[{expression}] = {draw(int_expressions())}")
        elif choice == 5:
            lines.append(f"{indent}{target} = {draw(conditions())}")
        elif choice == 6:
            lines.append(f"{indent}if {expression} in D:\n{indent}    del D[{expression}]")
        elif choice == 7:
            lines.append(f"{indent}if {draw(conditions())}:\n{draw(statement_blocks(depth - 1, indent + '    '))}\n"
                         f"{indent}else:\n{draw(statement_blocks(depth - 1, indent + '    '))}")
        elif choice == 8:
            lines.append(f"{indent}for i in range({draw(st.integers(0, 4))}):\n"
                         f"{draw(statement_blocks(depth - 1, indent + '    '))}")
        else:
            counter = f"w{depth}"
            lines.append(f"{indent}{counter} = 0\n{indent}while {counter} < {draw(st.integers(0, 3))}:\n"
                         f"{indent}    {counter} += 1\n{draw(statement_blocks(depth - 1, indent + '    '))}")
    return "\n".join(lines)


def outcome(call):
    """('ok', value) or ('error', code) for a VM call or a CPython call."""
    try:
        return "ok", call()
    except VMFault as error:
        return "error", error.code
    except tuple(ERROR_CODES) as error:
        return "error", ERROR_CODES[type(error)]


@settings(max_examples=200)
@given(a=st.integers(-1000, 1000), b=st.integers(-1000, 1000), block=statement_blocks())
def test_random_programs_compute_what_python_computes(a, b, block):
    source = ("def main(a, b):\n    c = 0\n    i = 0\n    w1 = 0\n    w2 = 0\n    L = [1, 2]\n    D = {0: 5}\n"
              f"{block}\n    return (a, b, c, i, L, D)\n")
    program = load_program(source)
    vm = outcome(lambda: call_function(program, "main", (a, b), FakeHost(), GAS).value)
    if vm == ("error", "int_too_large"):
        return   # a cap, not a difference of semantics
    python = outcome(lambda: python_result(source, args=(a, b)))
    assert vm == python, source
    if vm[0] == "ok":
        assert repr(vm[1]) == repr(python[1])


# --- the value boundary ---------------------------------------------------------------------------

def test_returned_values_survive_the_canonical_encoding():
    value = run(body("return {'a': [1, (2, b'3')], 5: None, True: 2 ** 200, b'k': -(2 ** 255)}")).value
    assert decode_value(encode_value(value), limits.contract_value_bytes_max) == value
