"""Ranking stage: a human step that needs every item (`collects_all`, e.g. human_rank).

It records the items it sees for the review app as the human stage does, but lets none go on. While
items arrive it serves the app if fewer answers are stored than the budget (pairs come from the items
here so far). When the last item has arrived (`finish`), it fits the ranking from the stored
comparisons; if the ranking is not done (budget not spent, target not reached) it serves the app and
refits whenever an answer is stored, until it is. Then every item goes on with its scores. A re-run
whose budget is spent asks nothing: the scores come from the stored comparisons.
"""

from __future__ import annotations

import time
from typing import Any

from captionary.core.arrays import items_matrix
from captionary.core.comparisons import ComparisonStore
from captionary.core.item import Item, order_key
from captionary.executors.context import RunContext
from captionary.executors.stages.base import Stage
from captionary.executors.stages.human import HumanStage, HumanStep
from captionary.executors.worker import describe_error

LOOK_EVERY = 0.2
"""Seconds between looks for new answers while the ranking is not done."""


def human_stage(ctx: RunContext, index: int, step: HumanStep) -> Stage:
    """The stage for a human step: per item, or over all items for steps that rank them."""
    if getattr(step, "collects_all", False):  # e.g. human_rank: `session(ids, answers, x)`, `embedding`
        return RankStage(ctx, index, step)
    return HumanStage(ctx, index, step)


class RankStage(HumanStage):
    def __init__(self, ctx: RunContext, index: int, step: Any):
        super().__init__(ctx, index, step)
        self.items: dict[str, Item] = {}
        self.answers = ComparisonStore(ctx.ws.db_path, durable=False)  # reads only

    def push(self, items: list[Item]) -> list[Item]:
        self.stats.n_in += len(items)
        self._register(items)
        for item in items:
            self.items[item.id] = item
        if len(self.items) >= 2 and self.answers.latest(self.task)[0] < self.step.budget_for(len(self.items)):
            self._serve()  # the person can start on the items here so far while the rest arrive
        return []

    def poll(self, block: bool = False) -> list[Item]:
        return []  # nothing goes on before the ranking is done (pending stays 0: finish() waits)

    def finish(self) -> list[Item]:
        items = sorted(self.items.values(), key=order_key)
        self.items = {}
        try:
            x = items_matrix(items, self.step.embedding) if self.step.embedding and items else None
        except Exception as exc:
            reason = describe_error(exc)
            for item in items:
                self.ctx.fail(self.index, item, reason)
            return []
        ids = [item.id for item in items]
        seen, asked = self.answers.latest(self.task), False
        session = self.step.session(ids, self.answers.answers(self.task), x)
        while not session.progress().done:
            if not asked:
                self._serve()
                asked = True
            self.ctx.check()
            time.sleep(LOOK_EVERY)
            latest = self.answers.latest(self.task)
            if latest != seen:
                seen = latest
                session = self.step.session(ids, self.answers.answers(self.task), x)
        scores = session.scores()
        ready = []
        for item in items:
            if asked:
                self.stats.computed += 1
            else:
                self.stats.cached += 1
            self.stats.n_out += 1
            ready.append(item.evolve(scores[item.id]))
        return ready

    def close(self, complete: bool) -> None:
        super().close(complete)
        self.answers.close()
