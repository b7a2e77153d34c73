"""Pipeline: steps joined with `>>`. A plan, not code: an executor runs it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from captionary.errors import ConfigError
from captionary.pipeline.step import Step


class Pipeline:
    def __init__(self, steps: list[Step] | None = None):
        self.steps: list[Step] = []
        self.properties_checked = False  # the YAML loader checks them itself, with line numbers
        for step in steps or []:
            self.steps.append(_as_step(step))

    def __rshift__(self, other: Step | type[Step] | Pipeline) -> Pipeline:
        if isinstance(other, Pipeline):
            return Pipeline(self.steps + other.steps)
        return Pipeline([*self.steps, _as_step(other)])

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def check(self) -> None:
        """Structural checks (one source, first; no source later on), then the properties steps name
        (`pipeline/properties.py`: an error, or a warning where the source's properties are open)."""
        if not self.steps:
            raise ConfigError("the pipeline has no steps")
        if self.steps[0].kind != "source":
            raise ConfigError(
                f"a pipeline starts with a source step (e.g. load); it starts with {self.steps[0].name!r}"
            )
        for step in self.steps[1:]:
            if step.kind == "source":
                raise ConfigError(f"source step {step.name!r} can only come first")
        if not self.properties_checked:
            from captionary.pipeline.properties import report_property_problems

            report_property_problems(self.steps)
            self.properties_checked = True

    def describe(self) -> list[dict[str, Any]]:
        return [step.describe() for step in self.steps]

    def __repr__(self) -> str:
        return " >> ".join(repr(s) for s in self.steps)


def _as_step(value: Any) -> Step:
    if isinstance(value, Step):
        return value
    if isinstance(value, type) and issubclass(value, Step):
        return value()
    raise ConfigError(f"cannot add {value!r} to a pipeline: it is not a step")
