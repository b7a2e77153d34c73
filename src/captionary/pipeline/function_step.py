"""`@step`: turn a plain function into a registered step.

    @step(writes=("caption",), reads=("caption",), reads_image=False)
    def add_trigger(item, word: str = "sks"):
        return {"caption": f"{word}, {item['caption']}"}

    Load("photos") >> add_trigger(word="ohwx") >> Save("out")

The function's first argument is the item (a list of items for `kind="batch"`); the others are the
step's parameters, type-checked from their annotations. For `kind="filter"` return True to keep, or
False / a reason string to drop. The cache version defaults to a hash of the function's source, so
editing the function recomputes its results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, get_type_hints

from captionary.core.item import Item
from captionary.errors import ConfigError
from captionary.pipeline.step import BatchStep, Filter, Map, Step

_BASES: dict[str, type[Step]] = {"map": Map, "filter": Filter, "batch": BatchStep}


def step(
    fn: Callable | None = None,
    *,
    kind: str = "map",
    name: str | None = None,
    reads: Sequence[str] = (),
    writes: Sequence[str] = (),
    reads_image: bool = True,
    parallel: bool = False,
    version: int | str | None = None,
) -> Any:
    """Decorate a function to make it a step class (call the result with parameters to build one)."""

    def wrap(fn: Callable) -> type[Step]:
        if kind not in _BASES:
            raise ConfigError(f"@step kind must be one of {', '.join(_BASES)}; got {kind!r}")
        signature = inspect.signature(fn)
        hints = get_type_hints(fn)
        params = list(signature.parameters.values())[1:]
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {
            "__doc__": fn.__doc__,
            "__module__": fn.__module__,
            "__qualname__": fn.__qualname__,
            "name": name or fn.__name__,
            "version": version if version is not None else _source_hash(fn),
            "reads": tuple(reads),
            "writes": tuple(writes),
            "reads_image": reads_image,
            "parallel": parallel,
            "function": staticmethod(fn),
            "__annotations__": annotations,
        }
        for param in params:
            annotations[param.name] = hints.get(param.name, Any)
            if param.default is not inspect.Parameter.empty:
                namespace[param.name] = _default(param.default)
        namespace.update(_METHODS[kind])
        return type(fn.__name__, (_BASES[kind],), namespace)

    return wrap(fn) if fn is not None else wrap


def _default(value: Any) -> Any:
    if isinstance(value, (list, dict, set)):
        return dataclasses.field(default_factory=lambda v=value: type(v)(v))
    return value


def _source_hash(fn: Callable) -> str:
    try:
        code = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = fn.__code__.co_code
    return hashlib.sha256(code).hexdigest()[:12]


def _call(self: Step, first: Any) -> Any:
    return self.function(first, **self.params)


def _drop_reason(self: Step, item: Item) -> str | None:
    verdict = _call(self, item)
    if verdict is True or verdict is None:
        return None
    if verdict is False:
        return f"rejected by {self.name}"
    return str(verdict)


_METHODS: dict[str, dict[str, Any]] = {
    "map": {"apply": _call},
    "filter": {"drop_reason": _drop_reason},
    "batch": {"apply_batch": _call},
}
