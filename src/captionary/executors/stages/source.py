"""Source stage: turns a source's records into items (the driver pulls them in chunks)."""

from __future__ import annotations

from collections.abc import Iterator

from captionary.core.item import Item
from captionary.executors.context import RunContext
from captionary.pipeline.step import Source


class SourceStage:
    def __init__(self, ctx: RunContext, index: int, step: Source):
        self.ctx = ctx
        self.index = index
        self.step = step

    def items(self) -> Iterator[Item]:
        stats = self.ctx.stats[self.index]
        for record in self.step.scan(self.ctx):
            stats.n_in += 1
            if record.error is not None:
                self.ctx.fail(self.index, record.item, record.error, record.source)
                continue
            if record.dropped is not None:
                stats.dropped += 1
                continue
            if record.cached:
                stats.cached += 1
            else:
                stats.computed += 1
            stats.n_out += 1
            yield record.item
        stats.done = True
