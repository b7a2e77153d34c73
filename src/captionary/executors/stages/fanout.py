"""Fan-out stage: a step that makes new items (children) from each input. Cache hits rebuild the
children from the cached row; misses run in the driver (fan-out steps are cheap: they read properties
such as boxes). `spread` turns any outcome with children into items, for the batch stage too."""

from __future__ import annotations

from captionary.core.cache import INSERT_RESULT, StepCache, apply, item_key, result_row
from captionary.core.children import make_children
from captionary.core.item import NO_IMAGE_ERROR, Item
from captionary.core.outcome import Outcome
from captionary.executors.context import RunContext
from captionary.executors.stages.base import Stage
from captionary.executors.worker import describe_error
from captionary.pipeline.step import FanOut, Step


class FanOutStage(Stage):
    def __init__(self, ctx: RunContext, index: int, step: FanOut):
        super().__init__()
        self.ctx = ctx
        self.index = index
        self.step = step
        self.stats = ctx.stats[index]
        self.db = ctx.ws.reader()
        self.cache: StepCache | None = None  # read on first use

    def push(self, items: list[Item]) -> list[Item]:
        items = refuse_imageless(self.ctx, self.index, self.step, items)
        keys = [item_key(self.step, item) for item in items]
        self.cache = self.cache or StepCache(self.db, self.step)
        found = self.cache.lookup(keys)
        ready: list[Item] = []
        rows = []
        for item, key in zip(items, keys):
            self.stats.n_in += 1
            outcome = found.get(key)
            if outcome is not None:
                self.stats.cached += 1
            else:
                try:
                    outcome = self.step.compute(item, self.ctx.ws.blobs)
                    rows.append(result_row(key, self.step, item, outcome))
                except Exception as exc:
                    self.ctx.fail(self.index, item, describe_error(exc))
                    continue
                self.stats.computed += 1
            ready.extend(spread(self.ctx, self.index, self.step, item, outcome))
        self.ctx.writer.write_many(INSERT_RESULT, rows)
        return ready

    def collect(self, result) -> list[Item]:
        return []

    def close(self, complete: bool) -> None:
        self.db.close()


def spread(ctx: RunContext, index: int, step: Step, item: Item, outcome: Outcome) -> list[Item]:
    """The items that go on after `outcome` of `step` on `item`: the item itself unless dropped, then
    its children (made from the item as the outcome left it). Counts them and records a drop."""
    stats = ctx.stats[index]
    updated = apply(item, outcome, step)
    out = []
    if outcome.dropped is not None:
        stats.dropped += 1
        ctx.drop(index, updated if outcome.children is not None else item, outcome.dropped)
    else:
        out.append(updated)
    if outcome.children:
        out.extend(make_children(updated, step.cache_prefix, outcome.children))
    stats.n_out += len(out)
    return out


def refuse_imageless(ctx: RunContext, index: int, step: Step, items: list[Item]) -> list[Item]:
    """Fail the items without pixels (prompt items) at a step that reads pixels; return the others."""
    if not step.reads_image:
        return items
    kept = []
    for item in items:
        if item.has_image:
            kept.append(item)
        else:
            ctx.stats[index].n_in += 1
            ctx.fail(index, item, f"{step.name} reads pixels: {NO_IMAGE_ERROR}")
    return kept
