"""Sink stage: writes items in its own thread while upstream steps keep working; items pass through."""

from __future__ import annotations

from captionary.executors.context import Channel, Collector, RunContext
from captionary.pipeline.step import Sink


class SinkStage:
    def __init__(self, ctx: RunContext, index: int, step: Sink):
        self.ctx = ctx
        self.index = index
        self.step = step
        self.stats = ctx.stats[index]

    def run(self, inbox: Channel, outbox: Channel | Collector) -> None:
        self.step.open(self.ctx)
        complete = False
        try:
            for chunk in inbox:
                results = self.step.write(chunk)
                passed = []
                for item, result in zip(chunk, results):
                    self.stats.n_in += 1
                    if isinstance(result, str):
                        self.ctx.fail(self.index, item, result)
                        continue
                    if result:
                        self.stats.computed += 1
                    else:
                        self.stats.cached += 1
                    self.stats.n_out += 1
                    passed.append(item)
                outbox.put(passed)
            complete = not self.ctx.stop.is_set()
        finally:
            self.step.close(complete)
        outbox.close()
