"""Checking step parameters against their type hints, with messages a user can act on."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from captionary.errors import ParamError


def type_name(hint: Any) -> str:
    """A short, readable spelling of a type hint (`int | None`, `list[str]`, `'a' | 'b'`)."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else type_name(a) for a in typing.get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(hint, "__name__", str(hint))


def check(value: Any, hint: Any, where: str, param: str | None = None) -> Any:
    """Return `value` converted to `hint` (int -> float, str -> Path, list -> tuple) or raise ParamError."""
    try:
        return _check(value, hint)
    except _Mismatch:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise ParamError(
            f"{where}: expected {type_name(hint)}, got {type(value).__name__} {shown}", param=param
        ) from None


class _Mismatch(Exception):
    pass


def _check(value: Any, hint: Any) -> Any:
    if hint is Any or hint is object:
        return value
    if hint is type(None) or hint is None:
        if value is None:
            return None
        raise _Mismatch
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return _check(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise _Mismatch
            return tuple(_check(v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        checked = [_check(v, inner) for v in value]
        return tuple(checked) if origin is tuple else checked
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        key_hint, value_hint = args or (Any, Any)
        return {_check(k, key_hint): _check(v, value_hint) for k, v in value.items()}
    if origin is not None:  # Callable and other generics: trust the runtime check of the origin
        if callable(value) or isinstance(value, origin):
            return value
        raise _Mismatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if hint is Path:
        if isinstance(value, (str, Path)) and str(value):
            return Path(value)
        raise _Mismatch
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    return value
