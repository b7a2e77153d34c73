"""A small, safe expression language over item properties, for `filter: {expr: ...}` in YAML.

    width >= 512 and height >= 512
    "dog" in tags and not blurry
    len(caption) < 300 or score > 0.8

Names are properties (a missing one is None); literals, arithmetic, comparisons, `and/or/not`, `in`,
and the functions len, min, max, abs, lower. Nothing else (no attributes, no imports).
"""

from __future__ import annotations

import ast
import operator
from typing import Any

FUNCTIONS = {"len": len, "min": min, "max": max, "abs": abs, "lower": lambda s: str(s).lower()}
BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}
COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}


class Expression:
    def __init__(self, text: str):
        try:
            self.tree = ast.parse(text, mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"invalid expression {text!r}: {exc.msg}") from None
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
        allowed = (
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
            *COMPARE,
        )
        if not isinstance(node, allowed):
            raise ValueError(f"{type(node).__name__} is not allowed in an expression")
        for child in ast.iter_child_nodes(node):
            self._check(child)

    def __call__(self, props: dict[str, Any]) -> Any:
        return _eval(self.tree, props)


def _eval(node: ast.AST, props: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return props.get(node.id)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, props) for e in node.elts]
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, props) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, props)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.BinOp):
        return BINARY[type(node.op)](_eval(node.left, props), _eval(node.right, props))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, props)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, props)
            if not COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return FUNCTIONS[node.func.id](*(_eval(a, props) for a in node.args))
    raise ValueError(f"cannot evaluate {type(node).__name__}")
