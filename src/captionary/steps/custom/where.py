"""`filter` and `apply`: custom logic from YAML, as an expression or a Python function by dotted path."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cached_property
from typing import Any, ClassVar

from captionary.core.expression import Expression, ExpressionError
from captionary.core.item import Item
from captionary.errors import ItemError
from captionary.pipeline.step import Filter, Map, require


def import_function(path: str) -> Callable:
    """The function named "package.module:function" or "package.module.function"."""
    module, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    if not module or not name:
        raise ValueError(f"{path!r} is not a dotted path like 'my_steps.keep_dogs'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load {path!r}: {exc}") from None


class FilterWhere(Filter):
    """Keep items for which `expr` (over properties) or `function(item)` is true; drop the rest."""

    name: ClassVar[str] = "filter"

    expr: str | None = None
    function: str | None = None
    reads_properties: list[str] | None = None  # for `function`: what it reads (cache key)
    pixels: bool = False  # for `function`: does it look at the image?

    def validate(self) -> None:
        require((self.expr is None) != (self.function is None), self, "give exactly one of expr or function")
        try:
            self.test  # noqa: B018 (compiled or imported now: a bad one fails the pipeline)
        except ValueError as exc:
            require(False, self, str(exc), param="expr" if self.expr else "function")

    @cached_property
    def test(self) -> Expression | Callable[[Item], Any]:
        return Expression(self.expr) if self.expr else import_function(self.function)

    @property
    def reads(self) -> tuple[str, ...]:
        test = self.test
        return tuple(test.names if isinstance(test, Expression) else self.reads_properties or ())

    @property
    def reads_image(self) -> bool:
        return self.function is not None and self.pixels

    def expected_properties(self) -> tuple[str, ...]:
        test = self.test
        return tuple(test.names) if isinstance(test, Expression) else ()

    def drop_reason(self, item: Item) -> str | None:
        test = self.test
        why: list[str] = []
        try:
            if isinstance(test, Expression):
                keep, why = test.evaluate(item.props)
            else:
                keep = test(item)
        except ExpressionError as exc:
            raise ItemError(f"filter {self.expr}: {exc}") from None
        except Exception as exc:
            raise ItemError(f"filter {self.expr or self.function}: {type(exc).__name__}: {exc}") from None
        if keep:
            return None
        reason = f"filter: not {self.expr or self.function}"
        return f"{reason} ({', '.join(dict.fromkeys(why))})" if why else reason


class Apply(Map):
    """Run `function(item) -> dict` (dotted path) and write the properties it returns."""

    name: ClassVar[str] = "apply"

    function: str
    writes_properties: list[str]
    reads_properties: list[str] | None = None
    pixels: bool = True

    def validate(self) -> None:
        try:
            self.imported  # noqa: B018 (imported now: a bad path fails the pipeline)
        except ValueError as exc:
            require(False, self, str(exc), param="function")

    @cached_property
    def imported(self) -> Callable[[Item], dict[str, Any] | None]:
        return import_function(self.function)

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(self.reads_properties or ())

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(self.writes_properties)

    @property
    def reads_image(self) -> bool:
        return self.pixels

    def apply(self, item: Item) -> dict[str, Any] | None:
        return self.imported(item)
