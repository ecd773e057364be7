"""Load-time checks of contract source: the only place that decides what a contract may say.

Parses the source without ever compiling or running it, enforces the source, syntax-tree and
nesting caps before anything walks the tree recursively, and accepts only the whitelisted
subset of Python (docs/CONTRACTS.md). What passes is handed to the compiler in vm.py as a
CheckedModule: the constants and functions in source order, with each function's local names.
Every rejection is InvalidContract naming the rule broken and, where there is one, the line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass

from node import limits
from node.contracts.gas import INT_LIMIT, ITEMS_MAX, TEXT_BYTES_MAX, InvalidContract

PYTHON_BUILTIN_NAMES = frozenset("""
    ArithmeticError AssertionError AttributeError BaseException BaseExceptionGroup BlockingIOError
    BrokenPipeError BufferError BytesWarning ChildProcessError ConnectionAbortedError ConnectionError
    ConnectionRefusedError ConnectionResetError DeprecationWarning EOFError Ellipsis EncodingWarning
    EnvironmentError Exception ExceptionGroup FileExistsError FileNotFoundError FloatingPointError
    FutureWarning GeneratorExit IOError ImportError ImportWarning IndentationError IndexError
    InterruptedError IsADirectoryError KeyError KeyboardInterrupt LookupError MemoryError
    ModuleNotFoundError NameError NotADirectoryError NotImplemented NotImplementedError OSError
    OverflowError PendingDeprecationWarning PermissionError ProcessLookupError RecursionError
    ReferenceError ResourceWarning RuntimeError RuntimeWarning StopAsyncIteration StopIteration
    SyntaxError SyntaxWarning SystemError SystemExit TabError TimeoutError TypeError
    UnboundLocalError UnicodeDecodeError UnicodeEncodeError UnicodeError UnicodeTranslateError
    UnicodeWarning UserWarning ValueError Warning ZeroDivisionError abs aiter all anext any ascii bin
    bool breakpoint bytearray bytes callable chr classmethod compile complex copyright credits delattr
    dict dir divmod enumerate eval exec exit filter float format frozenset getattr globals hasattr hash
    help hex id input int isinstance issubclass iter len license list locals map max memoryview min next
    object oct open ord pow print property quit range repr reversed round set setattr slice sorted
    staticmethod str sum super tuple type vars zip
""".split())
"""Python 3.11's builtins, written out so that what a contract may name never depends on the Python
build. A name here that is not a VM builtin is rejected, so it can never reach a host function."""

CONSTANT_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
DEPTH_MESSAGE = f"statements and expressions nest more than {limits.contract_nesting_depth_max} levels deep"
INT_LITERAL_MESSAGE = f"integer literals are limited to {limits.contract_int_bits_max} bits"

BINARY_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
                    ast.BitOr, ast.BitXor, ast.BitAnd)
FORBIDDEN = {
    ast.Import: "imports are not allowed", ast.ImportFrom: "imports are not allowed",
    ast.ClassDef: "classes are not allowed", ast.AsyncFunctionDef: "async functions are not allowed",
    ast.FunctionDef: "functions are defined at module level only (no nested def)",
    ast.Global: "global is not allowed", ast.Nonlocal: "nonlocal is not allowed",
    ast.Try: "try is not allowed (call revert to fail)", ast.TryStar: "try is not allowed (call revert to fail)",
    ast.With: "with is not allowed", ast.AsyncWith: "with is not allowed", ast.AsyncFor: "async for is not allowed",
    ast.Raise: "raise is not allowed (call revert)", ast.Assert: "assert is not allowed (call revert)",
    ast.Match: "match is not allowed",
    ast.Lambda: "lambda is not allowed", ast.Yield: "yield is not allowed", ast.YieldFrom: "yield is not allowed",
    ast.Await: "await is not allowed", ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.Set: "sets are not allowed (their order is not deterministic)",
    ast.SetComp: "sets are not allowed (their order is not deterministic)",
    ast.ListComp: "comprehensions are not allowed (use a for loop)",
    ast.DictComp: "comprehensions are not allowed (use a for loop)",
    ast.GeneratorExp: "comprehensions are not allowed (use a for loop)",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.Attribute: "attribute access is not allowed (only calls of the listed methods)",
    ast.Slice: "a slice is only allowed inside x[...]",
    ast.Div: "true division / is not allowed (it makes floats); use //",
    ast.MatMult: "the @ operator is not allowed",
}


@dataclass(frozen=True, slots=True)
class CheckedFunction:
    """A contract function that passed every check."""

    node: ast.FunctionDef
    parameters: tuple[str, ...]
    """Parameter names, in order."""
    defaults: tuple[ast.expr, ...]
    """Constant expressions of the last len(defaults) parameters' defaults."""
    local_names: tuple[str, ...]
    """Names assigned in the body that are not parameters, in order of first appearance."""


@dataclass(frozen=True, slots=True)
class CheckedModule:
    constants: tuple[tuple[str, ast.expr], ...]
    """(NAME, constant expression), in source order; a constant may use the ones before it."""
    functions: tuple[CheckedFunction, ...]
    node_count: int
    """Syntax-tree nodes of the whole source (what loading it costs is linear in this)."""


@dataclass(frozen=True, slots=True)
class _Names:
    """What a name in a function body can mean."""

    constants: frozenset[str]
    functions: Mapping[str, tuple[int, int]]
    """Contract function name -> (fewest, most) arguments."""
    builtins: Mapping[str, tuple[int, int]]
    """VM builtin name -> (fewest, most) arguments."""
    methods: frozenset[str]
    variables: frozenset[str]
    """Parameters and locals of the function being checked."""


def reject(node: ast.AST | None, message: str) -> InvalidContract:
    line = getattr(node, "lineno", None)
    return InvalidContract(f"line {line}: {message}" if line else message)


def check_module(source: str, builtins: Mapping[str, tuple[int, int]], methods: frozenset[str]) -> CheckedModule:
    """Parse and check a contract; `builtins` (name -> arity range) and `methods` are the VM's."""
    tree = parse_source(source)
    node_count = check_shape(tree)
    constants: list[tuple[str, ast.expr]] = []
    constant_names: set[str] = set()
    definitions: list[ast.FunctionDef] = []
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef):
            definitions.append(statement)
        elif isinstance(statement, ast.Assign):
            constants.append(_check_constant_definition(statement, constant_names, builtins))
            constant_names.add(constants[-1][0])
        elif not (isinstance(statement, ast.Expr) and _is_text_constant(statement.value)):
            raise reject(statement, FORBIDDEN.get(type(statement), "the module level holds only functions and "
                                                  "UPPER_CASE constants"))
    constant_names = frozenset(constant_names)
    arities = _function_arities(definitions, constant_names, builtins)
    functions = tuple(_check_function(node, _Names(constant_names, arities, builtins, methods, frozenset()))
                      for node in definitions)
    return CheckedModule(tuple(constants), functions, node_count)


def parse_source(source: str) -> ast.Module:
    """ast.parse within the source cap, with every parser failure turned into InvalidContract."""
    if type(source) is not str:
        raise InvalidContract("a contract's source is text")
    try:
        size = len(source.encode())
    except UnicodeEncodeError:
        raise InvalidContract("the source is not valid Unicode") from None
    if size > limits.contract_source_bytes_max:
        raise InvalidContract(f"the source is {size} bytes, more than {limits.contract_source_bytes_max}")
    try:
        return ast.parse(source, "<contract>", "exec")
    except SyntaxError as error:
        if "Exceeds the limit" in str(error.msg):   # Python's int-to-text digit limit
            raise reject(error, INT_LITERAL_MESSAGE) from None
        raise reject(error, f"syntax error: {error.msg}") from None
    except (RecursionError, MemoryError):
        # The parser's own depth limits: the same rule the shape check enforces, in the same words,
        # since where Python gives up may depend on the caller's stack depth.
        raise InvalidContract(DEPTH_MESSAGE) from None
    except ValueError:
        raise InvalidContract("the source contains a NUL character") from None


def check_shape(tree: ast.Module) -> int:
    """Check node count and nesting depth without recursion (nothing may recurse over the tree before
    this); returns the node count."""
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    nested_types = (ast.stmt, ast.expr)
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > limits.contract_ast_nodes_max:
            raise InvalidContract(f"the contract has more than {limits.contract_ast_nodes_max} syntax-tree nodes")
        if depth > limits.contract_nesting_depth_max:
            raise InvalidContract(DEPTH_MESSAGE)
        elif_node = node.orelse[0] if isinstance(node, ast.If) and len(node.orelse) == 1 else None
        elif_node = elif_node if isinstance(elif_node, ast.If) else None
        for name in node._fields:
            field = getattr(node, name, None)
            for child in field if isinstance(field, list) else (field,):
                if isinstance(child, ast.AST):
                    # An elif chain is flat: the compiler runs it as one statement.
                    nested = isinstance(child, nested_types) and child is not elif_node
                    stack.append((child, depth + 1 if nested else depth))
    return count


# --- module level ----------------------------------------------------------------------

def _check_identifier(node: ast.AST, name: str) -> None:
    if "__" in name:
        raise reject(node, f"names containing '__' are not allowed: {name!r}")
    if not name.isascii():
        raise reject(node, f"names are ASCII: {name!r}")


def _check_new_name(node: ast.AST, name: str, builtins: Mapping, *taken: Mapping | set | frozenset) -> None:
    """A name a definition or an assignment introduces must not hide anything (nor be in any of `taken`;
    several collections rather than their union, so that checking a whole module stays linear)."""
    _check_identifier(node, name)
    if name in builtins or name in PYTHON_BUILTIN_NAMES:
        raise reject(node, f"{name!r} is a builtin name and cannot be redefined")
    if any(name in names for names in taken):
        raise reject(node, f"{name!r} is already defined")


def _check_constant_definition(statement: ast.Assign, earlier: set[str], builtins: Mapping) -> tuple[str, ast.expr]:
    """`earlier`: the names of the constants defined above (kept by the caller, so checking is linear)."""
    if len(statement.targets) != 1 or not isinstance(statement.targets[0], ast.Name):
        raise reject(statement, "a module-level assignment defines one UPPER_CASE constant")
    name = statement.targets[0].id
    _check_new_name(statement, name, builtins, earlier)
    if not CONSTANT_NAME.match(name):
        raise reject(statement, f"module-level names assigned are UPPER_CASE constants: {name!r}")
    _check_constant_expression(statement.value, earlier)
    return name, statement.value


def _check_constant_expression(node: ast.expr, constants: set[str] | frozenset[str]) -> None:
    """Literals, earlier constants, tuples and arithmetic of them (evaluated once, at load)."""
    if isinstance(node, ast.Constant):
        _check_literal(node)
    elif isinstance(node, ast.Name):
        if node.id not in constants:
            raise reject(node, f"a constant expression may only use constants defined above it, not {node.id!r}")
    elif isinstance(node, ast.Tuple):
        _check_display_size(node, node.elts)
        for item in node.elts:
            _check_constant_expression(item, constants)
    elif isinstance(node, ast.UnaryOp):
        _check_constant_expression(node.operand, constants)
    elif isinstance(node, ast.BinOp):
        _check_operator(node, node.op)
        _check_constant_expression(node.left, constants)
        _check_constant_expression(node.right, constants)
    else:
        raise reject(node, FORBIDDEN.get(type(node), "a constant is a literal, a tuple or arithmetic of constants"))


def _is_text_constant(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is str


def _check_literal(node: ast.Constant) -> None:
    value = node.value
    kind = type(value)
    if kind is float:
        raise reject(node, "floats are not allowed (use integers in minor units)")
    if kind is complex:
        raise reject(node, "complex numbers are not allowed")
    if kind is int and not -INT_LIMIT < value < INT_LIMIT:
        raise reject(node, INT_LITERAL_MESSAGE)
    if kind is str or kind is bytes:
        try:
            size = len(value.encode()) if kind is str else len(value)
        except UnicodeEncodeError:
            raise reject(node, "string literals are valid Unicode (no lone surrogates)") from None
        if size > TEXT_BYTES_MAX:
            raise reject(node, f"string literals are limited to {TEXT_BYTES_MAX} bytes")
    elif value is not None and kind is not bool and kind is not int:
        raise reject(node, f"the literal {value!r} is not allowed")


def _function_arities(definitions: list[ast.FunctionDef], constants: frozenset[str],
                      builtins: Mapping) -> dict[str, tuple[int, int]]:
    arities: dict[str, tuple[int, int]] = {}
    for node in definitions:
        _check_new_name(node, node.name, builtins, arities, constants)
        _check_signature(node, constants)
        count = len(node.args.posonlyargs) + len(node.args.args)
        arities[node.name] = (count - len(node.args.defaults), count)
    return arities


def _check_signature(node: ast.FunctionDef, constants: frozenset[str]) -> None:
    arguments = node.args
    if node.decorator_list:
        raise reject(node, "decorators are not allowed")
    if arguments.vararg or arguments.kwarg:
        raise reject(node, "*args and **kwargs parameters are not allowed")
    if arguments.kwonlyargs:
        raise reject(node, "keyword-only parameters are not allowed")
    for default in arguments.defaults:
        _check_constant_expression(default, constants)
    for argument in (*arguments.posonlyargs, *arguments.args):
        if argument.annotation is not None:
            _check_annotation(argument.annotation)
    if node.returns is not None:
        _check_annotation(node.returns)


def _check_annotation(node: ast.expr) -> None:
    """Type hints are allowed and never evaluated; they may only be names, None, strings and X[Y] | Z."""
    if isinstance(node, ast.Name):
        _check_identifier(node, node.id)
    elif isinstance(node, ast.Constant) and (node.value is None or type(node.value) is str):
        pass
    elif isinstance(node, ast.Subscript):
        _check_annotation(node.value)
        _check_annotation(node.slice)
    elif isinstance(node, ast.Tuple):
        for item in node.elts:
            _check_annotation(item)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        _check_annotation(node.left)
        _check_annotation(node.right)
    else:
        raise reject(node, "a type annotation is a name, None, a string, X[Y] or X | Y")


# --- functions ------------------------------------------------------------------------------

def _check_function(node: ast.FunctionDef, names: _Names) -> CheckedFunction:
    parameters = tuple(argument.arg for argument in (*node.args.posonlyargs, *node.args.args))
    earlier: set[str] = set()
    for parameter in parameters:
        _check_new_name(node, parameter, names.builtins, names.constants, names.functions, earlier)
        earlier.add(parameter)
    local_names: dict[str, None] = {}
    for statement in node.body:
        _collect_assigned_names(statement, local_names)
    for name, target in list(local_names.items()):
        if name not in parameters:
            _check_new_name(target, name, names.builtins, names.constants, names.functions)
    local_names = {name: None for name in local_names if name not in parameters}
    scope = _Names(names.constants, names.functions, names.builtins, names.methods,
                   frozenset(parameters) | local_names.keys())
    _check_block(node.body, scope, loop_depth=0)
    return CheckedFunction(node, parameters, tuple(node.args.defaults), tuple(local_names))


def elif_chain(node: ast.If) -> list[ast.If]:
    """`if` and each `elif` after it (the parser nests each elif in the orelse of the one before);
    the last one's orelse is the chain's `else` block."""
    chain = [node]
    while len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
        node = node.orelse[0]
        chain.append(node)
    return chain


def _collect_assigned_names(statement: ast.stmt, found: dict) -> None:
    """Python's rule: a name assigned anywhere in a function is local to all of it."""
    if isinstance(statement, ast.If):   # along an elif chain without recursion
        chain = elif_chain(statement)
        for child in [item for branch in chain for item in branch.body] + chain[-1].orelse:
            _collect_assigned_names(child, found)
        return
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AugAssign, ast.AnnAssign, ast.For)):
        targets = [statement.target]
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                found.setdefault(node.id, node)
    for child in ast.iter_child_nodes(statement):
        if isinstance(child, ast.stmt):
            _collect_assigned_names(child, found)


def _check_block(statements: list[ast.stmt], names: _Names, loop_depth: int) -> None:
    for statement in statements:
        _check_statement(statement, names, loop_depth)


def _check_statement(node: ast.stmt, names: _Names, loop_depth: int) -> None:
    if isinstance(node, ast.If):
        for branch in elif_chain(node):   # a loop, not a recursion: a chain may be as long as the source allows
            _check_expression(branch.test, names)
            _check_block(branch.body, names, loop_depth)
        _check_block(branch.orelse, names, loop_depth)
    elif isinstance(node, ast.While):
        _check_expression(node.test, names)
        _check_block(node.body, names, loop_depth + 1)
        _check_block(node.orelse, names, loop_depth)
    elif isinstance(node, ast.For):
        _check_target(node.target, names)
        _check_expression(node.iter, names)
        _check_block(node.body, names, loop_depth + 1)
        _check_block(node.orelse, names, loop_depth)
    elif isinstance(node, ast.Assign):
        for target in node.targets:
            _check_target(target, names)
        _check_expression(node.value, names)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        _check_special_assignment(node, names)
    elif isinstance(node, ast.Delete):
        for target in node.targets:
            if not isinstance(target, ast.Subscript) or isinstance(target.slice, ast.Slice):
                raise reject(node, "del only removes an item: del x[key]")
            _check_expression(target.value, names)
            _check_expression(target.slice, names)
    elif isinstance(node, (ast.Return, ast.Expr)):
        if node.value is not None:
            _check_expression(node.value, names)
    elif isinstance(node, (ast.Break, ast.Continue)):
        if loop_depth == 0:
            raise reject(node, "break and continue are only allowed inside a loop")
    elif not isinstance(node, ast.Pass):
        raise reject(node, FORBIDDEN.get(type(node), f"the statement {type(node).__name__} is not allowed"))


def _check_special_assignment(node: ast.AugAssign | ast.AnnAssign, names: _Names) -> None:
    if isinstance(node, ast.AnnAssign):
        if not isinstance(node.target, ast.Name) or node.value is None:
            raise reject(node, "an annotated assignment is `name: type = value`")
        _check_annotation(node.annotation)
    else:
        _check_operator(node, node.op)
        if isinstance(node.target, ast.Tuple | ast.List):
            raise reject(node, "augmented assignment takes one target")
    _check_target(node.target, names)
    _check_expression(node.value, names)


def _check_target(node: ast.expr, names: _Names) -> None:
    if isinstance(node, ast.Name):
        _check_identifier(node, node.id)
    elif isinstance(node, (ast.Tuple, ast.List)):
        for item in node.elts:
            _check_target(item, names)
    elif isinstance(node, ast.Subscript):
        if isinstance(node.slice, ast.Slice):
            raise reject(node, "slice assignment is not allowed")
        _check_expression(node.value, names)
        _check_expression(node.slice, names)
    else:
        raise reject(node, FORBIDDEN.get(type(node), "only names, x[key] and tuples of them can be assigned"))


def _check_operator(node: ast.AST, operator: ast.operator) -> None:
    if not isinstance(operator, BINARY_OPERATORS):
        raise reject(node, FORBIDDEN.get(type(operator), f"the operator {type(operator).__name__} is not allowed"))


# --- expressions -----------------------------------------------------------------------------

def _check_expression(node: ast.expr, names: _Names) -> None:
    if isinstance(node, ast.Constant):
        _check_literal(node)
    elif isinstance(node, ast.Name):
        _check_name_read(node, names)
    elif isinstance(node, ast.Call):
        _check_call(node, names)
    elif isinstance(node, ast.BinOp):
        _check_operator(node, node.op)
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
                and type(node.left.value) in (str, bytes):
            raise reject(node, "string formatting with % is not allowed (use + and str())")
        _check_children(node, names)
    elif isinstance(node, ast.Compare):
        _check_compare(node)
        _check_children(node, names)
    elif isinstance(node, ast.Subscript):
        _check_subscript(node, names)
    elif isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise reject(node, "** in a dict display is not allowed")
        _check_display_size(node, node.keys)
        _check_children(node, names)
    elif isinstance(node, (ast.List, ast.Tuple)):
        _check_display_size(node, node.elts)
        _check_children(node, names)
    elif isinstance(node, (ast.UnaryOp, ast.BoolOp, ast.IfExp)):
        _check_children(node, names)
    else:
        if isinstance(node, ast.Attribute):
            _check_identifier(node, node.attr)
        raise reject(node, FORBIDDEN.get(type(node), f"the expression {type(node).__name__} is not allowed"))


def _check_display_size(node: ast.expr, items: list) -> None:
    if len(items) > ITEMS_MAX:
        raise reject(node, f"a display holds at most {ITEMS_MAX} items")


def _check_children(node: ast.expr, names: _Names) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr):
            _check_expression(child, names)


def _check_name_read(node: ast.Name, names: _Names) -> None:
    name = node.id
    _check_identifier(node, name)
    if name in names.variables or name in names.constants:
        return
    if name in names.functions or name in names.builtins:
        raise reject(node, f"functions are not values: {name!r} can only be called")
    if name in PYTHON_BUILTIN_NAMES:
        raise reject(node, f"{name!r} is not available in contracts")
    raise reject(node, f"unknown name {name!r}")


def _check_compare(node: ast.Compare) -> None:
    operands = [node.left, *node.comparators]
    for index, operator in enumerate(node.ops):
        if isinstance(operator, (ast.Is, ast.IsNot)) and not any(
                isinstance(operand, ast.Constant) and operand.value is None
                for operand in operands[index:index + 2]):
            raise reject(node, "`is` and `is not` only compare with None")


def _check_subscript(node: ast.Subscript, names: _Names) -> None:
    _check_expression(node.value, names)
    index = node.slice
    if isinstance(index, ast.Slice):
        for part in (index.lower, index.upper, index.step):
            if part is not None:
                _check_expression(part, names)
    elif isinstance(index, ast.Tuple) and any(isinstance(item, ast.Slice) for item in index.elts):
        raise reject(node, "multi-dimensional slices are not allowed")
    else:
        _check_expression(index, names)


def _check_call(node: ast.Call, names: _Names) -> None:
    if node.keywords:
        raise reject(node, "keyword arguments are not allowed")
    for argument in node.args:
        if isinstance(argument, ast.Starred):
            raise reject(node, "starred arguments (*args) are not allowed")
        _check_expression(argument, names)
    function = node.func
    if isinstance(function, ast.Attribute):
        _check_identifier(function, function.attr)
        if function.attr not in names.methods:
            raise reject(node, f"the method {function.attr!r} is not allowed")
        _check_expression(function.value, names)
    elif isinstance(function, ast.Name):
        _check_called_name(node, function.id, names)
    else:
        raise reject(node, "only named functions and methods can be called")


def _check_called_name(node: ast.Call, name: str, names: _Names) -> None:
    _check_identifier(node, name)
    if name in names.variables:
        raise reject(node, f"{name!r} is a variable, not a function")
    if name in names.constants:
        raise reject(node, f"{name!r} is a constant, not a function")
    arity = names.functions.get(name) or names.builtins.get(name)
    if arity is None:
        if name in PYTHON_BUILTIN_NAMES:
            raise reject(node, f"{name!r} is not available in contracts")
        return   # a host function, resolved when called
    fewest, most = arity
    if not fewest <= len(node.args) <= most:
        expected = str(fewest) if fewest == most else f"{fewest} to {most}"
        raise reject(node, f"{name}() takes {expected} arguments, {len(node.args)} given")
