"""Per-step counters of a run and the run's summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepStats:
    """Counts for one step. in = computed + cached + failed; out = in - dropped - failed."""

    name: str
    kind: str = ""
    n_in: int = 0
    n_out: int = 0
    computed: int = 0
    cached: int = 0
    dropped: int = 0
    failed: int = 0
    seconds: float = 0.0  # time the driver spent on this step (its background work not included)
    expected: int | None = None  # a source may say how many records it will produce
    done: bool = False
    usage: dict[str, float] = field(default_factory=dict)  # model tokens; a learned step's accuracy
    note: str = ""  # what the step is doing or found, for the progress line (a global step waiting)


@dataclass
class RunSummary:
    run_id: int
    status: str
    seconds: float
    steps: list[StepStats]
    errors: list[dict[str, Any]] = field(default_factory=list)

    def step(self, name: str) -> StepStats:
        for stats in self.steps:
            if stats.name == name:
                return stats
        raise KeyError(f"no step {name!r} in this run (steps: {', '.join(s.name for s in self.steps)})")

    @property
    def computed(self) -> int:
        return sum(s.computed for s in self.steps)

    def table(self) -> str:
        return stats_table(self.steps)


def stats_table(steps: list[StepStats]) -> str:
    """The per-step counts as a text table, then what model steps used (what `captionary run` and
    `status` print)."""
    lines = [f"{'step':<24}{'in':>8}{'out':>8}{'computed':>10}{'cached':>8}{'dropped':>9}{'failed':>8}"]
    for s in steps:
        lines.append(
            f"{s.name:<24}{s.n_in:>8}{s.n_out:>8}{s.computed:>10}{s.cached:>8}{s.dropped:>9}{s.failed:>8}"
        )
    for s in steps:
        if s.usage:
            lines.append(
                f"{s.name}: " + ", ".join(f"{k.replace('_', ' ')} {_number(v)}" for k, v in s.usage.items())
            )
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"
