"""Sink stage: items pass through; the sink decides per item what is unchanged (done at once) and
writes the rest in its own threads while upstream steps keep working."""

from __future__ import annotations

from captionary.core.item import Item
from captionary.executors.context import RunContext
from captionary.executors.stages.base import Stage
from captionary.pipeline.context import SinkContext
from captionary.pipeline.step import Sink


class SinkStage(Stage):
    max_pending = 256

    def __init__(self, ctx: RunContext, index: int, step: Sink):
        super().__init__()
        self.ctx = ctx
        self.index = index
        self.step = step
        self.stats = ctx.stats[index]
        step.open(SinkContext(ctx.ws, ctx.writer, ctx.run_id, ctx.errors, ctx.after_kill))

    def push(self, items: list[Item]) -> list[Item]:
        ready = []
        for item, result in zip(items, self.step.write(items)):
            if hasattr(result, "result"):  # a Future: being written in the background
                self.futures.append(result)
            else:
                ready.extend(self.collect((item, result)))
        return ready

    def collect(self, result: tuple[Item, bool | str]) -> list[Item]:
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
