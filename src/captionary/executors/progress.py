"""Progress: a live bar per step on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from captionary.executors.summary import StepStats

LOG_EVERY = 10.0


class Progress:
    """Rendered from the shared step counters by the driver thread, a few times per second."""

    def __init__(self, stats: list[StepStats], enabled: bool = True, stream: TextIO | None = None):
        self.stats = stats
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.bars: list = []
        self.last_log = time.monotonic()
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            width = max(len(s.name) for s in stats)
            self.bars = [
                tqdm(
                    desc=s.name.ljust(width),
                    position=i,
                    file=self.stream,
                    unit="img",
                    leave=True,
                    dynamic_ncols=True,
                )
                for i, s in enumerate(stats)
            ]

    def update(self) -> None:
        if not self.enabled:
            return
        if self.bars:
            for bar, total, s in zip(self.bars, self._totals(), self.stats):
                if total is not None and bar.total != total:
                    bar.total = total
                bar.update(s.n_in - bar.n)
                bar.set_postfix_str(_counts(s), refresh=False)
                bar.refresh()
        elif time.monotonic() - self.last_log >= LOG_EVERY:
            self.last_log = time.monotonic()
            self.log()

    def _totals(self) -> list[int | None]:
        """What each step will see: the source's count less what earlier steps dropped or failed."""
        source = self.stats[0]
        known = source.n_in if source.done else source.expected
        totals: list[int | None] = []
        lost = 0
        for s in self.stats:
            totals.append(None if known is None else known - lost)
            lost += s.dropped + s.failed
        return totals

    def log(self) -> None:
        for s in self.stats:
            print(f"[captionary] {s.name}: in {s.n_in}, {_counts(s)}", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bars:
            self.update()
            for bar in self.bars:
                bar.close()
        else:
            self.log()


def _counts(s: StepStats) -> str:
    parts = [f"computed {s.computed}", f"cached {s.cached}"]
    if s.dropped:
        parts.append(f"dropped {s.dropped}")
    if s.failed:
        parts.append(f"failed {s.failed}")
    if s.note:
        parts.append(s.note)
    return ", ".join(parts)
