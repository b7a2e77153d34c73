"""The step registry: snake_case names to step classes. Refuses duplicates; suggests on a miss."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from captionary.core.recipes import set_step_builder
from captionary.errors import RegistryError, UnknownStepError

if TYPE_CHECKING:
    from captionary.pipeline.step import Step


class Registry:
    """Registered step classes by name, and (`declare`) where steps not imported yet are defined: a
    lookup imports the module that registers the name; listing imports every declared module."""

    def __init__(self) -> None:
        self._steps: dict[str, type[Step]] = {}
        self._declared: dict[str, str] = {}  # name -> module that registers it when imported

    def declare(self, modules: dict[str, str]) -> None:
        """Steps registered by importing a module, imported when a name is first looked up."""
        self._declared.update(modules)

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
        if name in self._declared:
            importlib.import_module(self._declared[name])
            if name in self._steps:
                return self._steps[name]
        import difflib  # only for an error message

        names = sorted(self._steps.keys() | self._declared.keys())
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownStepError(f"unknown step {name!r}{hint} (valid steps: {', '.join(names)})")

    def __contains__(self, name: str) -> bool:
        return name in self._steps or name in self._declared

    def __iter__(self):
        """Every step, sorted by name (imports the declared modules not imported yet)."""
        for module in sorted(set(self._declared.values())):
            importlib.import_module(module)
        return iter(sorted(self._steps.items()))


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


STEPS = Registry()
"""Every step: builtin ones are declared by `import captionary` (captionary/builtin_steps.py) and
register when their module is imported; plugins register when theirs is."""

set_step_builder(lambda name, params: STEPS.get(name).from_recipe(params))  # core rebuilds recipes with it
