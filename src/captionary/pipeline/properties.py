"""Before a run: does every property a step names exist by the time it runs?

A name counts as known when a source provides it or an earlier step declares it in `writes`. An
unknown name is an error when the source's properties are all known (`Source.open_properties` is
False); when the source may bring properties nobody can know before the run (.json sidecars, manifest
columns, dataset fields) it is a `PipelineWarning`. Either way it comes with "did you mean".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from captionary.errors import ConfigError, PipelineWarning
from captionary.pipeline.step import Step


@dataclass
class PropertyProblem:
    position: int  # the step's index in the pipeline
    message: str
    fatal: bool


def property_problems(steps: Sequence[Step]) -> list[PropertyProblem]:
    """The names each step expects that neither a source nor an earlier step provides."""
    sources = []
    for step in steps:
        if step.kind != "source":
            break
        sources.append(step)
    if not sources:
        return []
    known = {name for source in sources for name in getattr(source, "provides", ())}
    open_ended = any(getattr(source, "open_properties", True) for source in sources)
    problems = []
    for position, step in enumerate(steps[len(sources) :], start=len(sources)):
        for name in step.expected_properties():
            if name not in known:
                message = _message(step, name, sources, known, open_ended)
                problems.append(PropertyProblem(position, message, fatal=not open_ended))
        known.update(step.writes)
    return problems


def report_property_problems(
    steps: Sequence[Step], lines: Sequence[int] | None = None, file: str | None = None
) -> None:
    """Raise a ConfigError for the first fatal problem; warn (PipelineWarning) for the others.
    `lines[i]` is step i's line in the pipeline `file`, for the messages."""
    for problem in property_problems(steps):
        error = ConfigError(problem.message, line=lines[problem.position] if lines else None, file=file)
        if problem.fatal:
            raise error
        warnings.warn(str(error), PipelineWarning, stacklevel=3)


def _message(step: Step, name: str, sources: list[Step], known: set[str], open_ended: bool) -> str:
    import difflib  # only for an error message

    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if not close:  # a property some other step writes: say which, so the missing step is obvious
        writers = _writers()
        close = difflib.get_close_matches(name, sorted(writers), n=1, cutoff=0.6)
        if close and close[0] == name:
            hint = f"; it is written by {', '.join(sorted(writers[name]))}: none of them comes before"
        elif close:
            hint = f"; did you mean {close[0]} (written by {', '.join(sorted(writers[close[0]]))})?"
    source = " / ".join(dict.fromkeys(s.name for s in sources))
    text = f"{step.name}: no earlier step writes {name!r} and {source} does not provide it{hint}"
    if open_ended:
        text += f" (a warning only: {source}'s items may have it from their sidecars or columns)"
    else:
        text += f" (known here: {', '.join(sorted(known)) or 'none'})"
    return text


def _writers() -> dict[str, set[str]]:
    """property -> the registered steps that declare it in their class-level `writes`."""
    from captionary.pipeline.registry import STEPS

    writers: dict[str, set[str]] = {}
    for step_name, cls in STEPS:
        declared = cls.__dict__.get("writes", getattr(cls, "writes", ()))
        for prop in declared if isinstance(declared, tuple) else ():
            writers.setdefault(prop, set()).add(step_name)
        for prop in getattr(cls, "provides", ()):
            writers.setdefault(prop, set()).add(step_name)
    return writers
