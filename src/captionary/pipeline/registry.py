"""The step registry: snake_case names to step classes. Refuses duplicates; suggests on a miss."""

from __future__ import annotations

from typing import TYPE_CHECKING

from captionary.core.recipes import set_step_builder
from captionary.errors import RegistryError, UnknownStepError

if TYPE_CHECKING:
    from captionary.pipeline.step import Step


class Registry:
    def __init__(self) -> None:
        self._steps: dict[str, type[Step]] = {}

    def add(self, cls: type[Step]) -> type[Step]:
        existing = self._steps.get(cls.name)
        if existing is not None and _origin(existing) != _origin(cls):
            raise RegistryError(
                f"step name {cls.name!r} is taken by {_origin(existing)}; cannot register {_origin(cls)}"
            )
        self._steps[cls.name] = cls
        return cls

    def get(self, name: str) -> type[Step]:
        try:
            return self._steps[name]
        except KeyError:
            pass
        import difflib  # only for an error message

        close = difflib.get_close_matches(name, self._steps, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownStepError(f"unknown step {name!r}{hint} (valid steps: {', '.join(sorted(self._steps))})")

    def __contains__(self, name: str) -> bool:
        return name in self._steps

    def __iter__(self):
        return iter(sorted(self._steps.items()))


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


STEPS = Registry()
"""Every registered step. Builtin steps register on `import captionary`."""

set_step_builder(lambda name, params: STEPS.get(name).from_recipe(params))  # core rebuilds recipes with it
