"""Source stage: turns the sources' records into items, one source after another (the driver pulls
them in chunks). With several sources, an item a later source produces again (the same bytes) does
not go on twice; each item's origins are recorded."""

from __future__ import annotations

from collections.abc import Iterator

from captionary.core.item import Item
from captionary.executors.context import RunContext
from captionary.pipeline.context import SourceContext
from captionary.pipeline.step import Source


class SourceStage:
    def __init__(self, ctx: RunContext, sources: list[Source]):
        self.ctx = ctx
        self.sources = sources
        self.index = 0  # the source being read (its position in the pipeline)

    def items(self) -> Iterator[Item]:
        several = len(self.sources) > 1
        for index, step in enumerate(self.sources):
            self.index = index
            stats = self.ctx.stats[index]
            label = stats.name
            scan_ctx = SourceContext(
                self.ctx.ws,
                self.ctx.writer,
                self.ctx.run_id,
                self.ctx.decodes_later,
                on_expect=lambda total, stats=stats: setattr(stats, "expected", total),
                count=lambda stats=stats: stats.n_in,
                on_known=self.ctx.covered.update,
                on_fresh=lambda count: self.ctx.warm_workers(),
            )
            for record in step.scan(scan_ctx):
                stats.n_in += 1
                if record.error is not None:
                    self.ctx.fail(index, record.item, record.error, record.source)
                    continue
                if record.dropped is not None:
                    stats.dropped += 1
                    continue
                item = record.item
                if several:
                    self.ctx.origins.setdefault(item.id, []).append((index, label, item.source or ""))
                    if len(self.ctx.origins[item.id]) > 1:  # the same bytes again: one item, two origins
                        stats.dropped += 1
                        continue
                if record.cached:
                    stats.cached += 1
                else:
                    stats.computed += 1
                stats.n_out += 1
                yield item
            stats.done = True

    @property
    def stats(self):
        return self.ctx.stats[self.index]
