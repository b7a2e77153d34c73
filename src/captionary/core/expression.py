"""A small, safe expression language over item properties: `filter: {expr: ...}` and the review
app's browse view evaluate it the same way.

    width >= 512 and height >= 512
    "dog" in tags and not blurry
    len(caption) < 300 or score > 0.8

Names are properties; literals, arithmetic, comparisons, `and/or/not`, `in`, and the functions len,
min, max, abs, lower. Nothing else (no attributes, no imports, no calls of anything else).

A property the item lacks (or whose value is null) is *absent*: an ordering comparison or `in` with
an absent operand is false, arithmetic and functions of it stay absent, `not` of it is true, and
`==` / `!=` / `is` / `is not` compare it as None (`tags is None` tests for a missing property).
`evaluate` says which absent properties made a comparison false, so a filter's drop reason names
them. Expressions nest at most `MAX_DEPTH` levels and build values of at most `MAX_SIZE`
characters or elements.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

MAX_DEPTH = 100
"""Deepest nesting of an expression (a 3,000-deep one is refused with one clear error)."""
MAX_SIZE = 1_000_000
"""Longest string or list an expression may build (`'x' * 10**9` is refused, not allocated)."""
MAX_INT_BITS = 4096

FUNCTIONS = {"len": len, "min": min, "max": max, "abs": abs, "lower": lambda s: str(s).lower()}
BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}
EQUALITY = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
ORDERING = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
ALLOWED = (
    ast.Constant,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.Compare,
    ast.List,
    ast.Tuple,
    ast.And,
    ast.Or,
    ast.Not,
    ast.USub,
    ast.Load,
    *BINARY,
    *EQUALITY,
    *ORDERING,
)


class Absent:
    """The value of a property an item lacks (`null` says whether it is there with value null)."""

    __slots__ = ("name", "null")

    def __init__(self, name: str | None, null: bool = False):
        self.name = name
        self.null = null

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"Absent({self.name!r})"

    def describe(self) -> str:
        if self.name is None:
            return "a value is None"
        return f"{self.name} is null" if self.null else f"{self.name} is missing"


class ExpressionError(ValueError):
    """An expression that cannot be evaluated on some input (a value too large, `%` on a string)."""


class Expression:
    """A parsed, checked expression. `expr(props)` is its value; `expr.evaluate(props)` also returns
    the absent properties that made a comparison false. Raises ValueError for text it refuses."""

    def __init__(self, text: str):
        self.text = text
        try:
            self.tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"invalid expression {_short(text)}: {exc.msg}") from None
        except (RecursionError, MemoryError):
            raise ValueError(_too_deep(text)) from None
        if _depth(self.tree) > MAX_DEPTH:
            raise ValueError(_too_deep(text))
        self.names: list[str] = []
        self._check(self.tree)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if node.id not in FUNCTIONS and node.id not in self.names:
                self.names.append(node.id)
            return
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS) or node.keywords:
                raise ValueError(f"only these functions may be called: {', '.join(FUNCTIONS)}")
            for arg in node.args:
                self._check(arg)
            return
        if not isinstance(node, ALLOWED):
            raise ValueError(f"{type(node).__name__} is not allowed in an expression")
        for child in ast.iter_child_nodes(node):
            self._check(child)

    def __call__(self, props: dict[str, Any]) -> Any:
        value, _ = self.evaluate(props)
        return value

    def evaluate(self, props: dict[str, Any]) -> tuple[Any, list[str]]:
        """(value, why): `why` describes each absent property that made a comparison false, e.g.
        `tags is missing`. An absent result is None. Raises ExpressionError, or TypeError and the like
        for values of the wrong type (`'dog' in 3`)."""
        why: list[str] = []
        value = _Evaluation(props, why).eval(self.tree)
        return (None if isinstance(value, Absent) else value), why

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


class _Evaluation:
    def __init__(self, props: dict[str, Any], why: list[str]):
        self.props = props
        self.why = why

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return Absent(None) if node.value is None else node.value
        if isinstance(node, ast.Name):
            if node.id not in self.props:
                return Absent(node.id)
            value = self.props[node.id]
            return Absent(node.id, null=True) if value is None else value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [_plain(self.eval(e)) for e in node.elts]
        if isinstance(node, ast.BoolOp):
            values = (self.eval(v) for v in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            value = self.eval(node.operand)
            if isinstance(node.op, ast.Not):
                return not value
            return value if isinstance(value, Absent) else -value
        if isinstance(node, ast.BinOp):
            return _binary(type(node.op), self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            args = [self.eval(a) for a in node.args]
            absent = next((a for a in args if isinstance(a, Absent)), None)
            return absent if absent is not None else _sized(FUNCTIONS[node.func.id](*args))
        raise ExpressionError(f"cannot evaluate {type(node).__name__}")

    def _compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.eval(right_node)
            kind = type(op)
            if kind in EQUALITY:
                holds = EQUALITY[kind](_plain(left), _plain(right))
            elif isinstance(left, Absent) or isinstance(right, Absent):
                self.why.extend(a.describe() for a in (left, right) if isinstance(a, Absent))
                return False
            else:
                holds = ORDERING[kind](left, right)
            if not holds:
                return False
            left = right
        return True


def _binary(kind: type, left: Any, right: Any) -> Any:
    for value in (left, right):
        if isinstance(value, Absent):
            return value
    if kind is ast.Mod and isinstance(left, (str, bytes)):
        raise ExpressionError("% formatting of strings is not allowed in an expression")
    if kind is ast.Mult:
        sequence, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(sequence, (str, list, bytes)) and isinstance(times, int):
            _check_size(len(sequence) * times)
    if kind is ast.Add and isinstance(left, (str, list, bytes)) and isinstance(right, (str, list, bytes)):
        _check_size(len(left) + len(right))
    return _sized(BINARY[kind](left, right))


def _sized(value: Any) -> Any:
    if isinstance(value, (str, list, bytes)):
        _check_size(len(value))
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ExpressionError(f"a number in the expression exceeds {MAX_INT_BITS} bits")
    return value


def _check_size(size: int) -> None:
    if size > MAX_SIZE:
        raise ExpressionError(
            f"the expression would build a value of {size:,} characters or elements "
            f"(at most {MAX_SIZE:,} are allowed)"
        )


def _plain(value: Any) -> Any:
    return None if isinstance(value, Absent) else value


def _depth(tree: ast.AST) -> int:
    """The nesting depth of `tree`, found without recursion (stops counting past MAX_DEPTH)."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if not _leaf(child))
    return deepest


def _leaf(node: ast.AST) -> bool:
    return isinstance(node, (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop))


def _too_deep(text: str) -> str:
    return f"expression nested too deeply (at most {MAX_DEPTH} levels): {_short(text)}"


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
