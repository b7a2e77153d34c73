"""Sink stage: items pass through; the sink checks what is unchanged and writes the rest in its own
threads (per item, or a batch per task) while upstream steps keep working."""

from __future__ import annotations

from captionary.core.item import Item
from captionary.executors.context import RunContext
from captionary.executors.stages.base import Stage
from captionary.pipeline.context import SinkContext
from captionary.pipeline.step import Sink, WrittenLater


class SinkStage(Stage):
    max_pending = 256

    def __init__(self, ctx: RunContext, index: int, step: Sink):
        super().__init__()
        self.ctx = ctx
        self.index = index
        self.step = step
        self.stats = ctx.stats[index]
        step.open(SinkContext(ctx.ws, ctx.writer, ctx.run_id, ctx.errors))

    def push(self, items: list[Item]) -> list[Item]:
        results = self.step.write(items)
        if isinstance(results, WrittenLater):
            self.futures.extend(results.futures)
            return []
        ready = []
        for item, result in zip(items, results):
            if hasattr(result, "result"):  # a Future: being written in the background
                self.futures.append(result)
            else:
                ready.extend(self.collect((item, result)))
        return ready

    def collect(self, result: tuple[Item, bool | str] | list[tuple[Item, bool | str]]) -> list[Item]:
        if isinstance(result, list):  # a batch's outcomes
            return [item for one in result for item in self.collect(one)]
        item, outcome = result
        self.stats.n_in += 1
        if isinstance(outcome, str):
            self.ctx.fail(self.index, item, outcome)
            return []
        if outcome:
            self.stats.computed += 1
        else:
            self.stats.cached += 1
        self.stats.n_out += 1
        return [item]

    def close(self, complete: bool) -> None:
        self.step.close(complete)
        self.stats.usage = dict(self.step.usage())
