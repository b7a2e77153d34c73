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
            self.steps.extend(_as_step(step).expanded())  # a shorthand step stands for several

    def __rshift__(self, other: Step | type[Step] | Pipeline) -> Pipeline:
        if isinstance(other, Pipeline):
            return Pipeline(self.steps + other.steps)
        return Pipeline([*self.steps, _as_step(other)])

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __add__(self, other: Step | Pipeline) -> Pipeline:
        """Sources one after another (`Load(a) + Load(b)`): their items merged in order."""
        return concat(self, other)

    @property
    def sources(self) -> list[Step]:
        """The source steps at the start (several are merged in order)."""
        out = []
        for step in self.steps:
            if step.kind != "source":
                break
            out.append(step)
        return out

    def check(self) -> None:
        """Structural checks (one or more sources, first; no source later on), then the properties
        steps name (`pipeline/properties.py`: an error, or a warning where a source's properties are
        open-ended)."""
        if not self.steps:
            raise ConfigError("the pipeline has no steps")
        if self.steps[0].kind != "source":
            raise ConfigError(
                f"a pipeline starts with a source step (e.g. load); it starts with {self.steps[0].name!r}"
            )
        for step in self.steps[len(self.sources) :]:
            if step.kind == "source":
                raise ConfigError(
                    f"source step {step.name!r} can only come at the start (several sources are merged "
                    f"in order: list them one after another before the other steps)"
                )
        if not self.properties_checked:
            from captionary.pipeline.properties import report_property_problems

            report_property_problems(self.steps)
            self.properties_checked = True

    def describe(self) -> list[dict[str, Any]]:
        return [step.describe() for step in self.steps]

    def __repr__(self) -> str:
        return " >> ".join(repr(s) for s in self.steps)


def concat(*parts: Step | Pipeline) -> Pipeline:
    """Several sources merged in order: `concat(Load("a"), LoadManifest("m.jsonl")) >> Resize(...)`."""
    steps: list[Step] = []
    for part in parts:
        for step in part if isinstance(part, Pipeline) else [_as_step(part)]:
            if step.kind != "source":
                raise ConfigError(f"concat takes source steps; {step.name!r} is a {step.kind} step")
            steps.append(step)
    if not steps:
        raise ConfigError("concat needs at least one source")
    return Pipeline(steps)


def _as_step(value: Any) -> Step:
    if isinstance(value, Step):
        return value
    if isinstance(value, type) and issubclass(value, Step):
        return value()
    raise ConfigError(f"cannot add {value!r} to a pipeline: it is not a step")
