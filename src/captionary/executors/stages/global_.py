"""Global stage: waits for every item, then runs the step once over all of them (cached as one row)."""

from __future__ import annotations

import json
import time
from typing import Any

from captionary.core.arrays import externalize_many
from captionary.core.cache import INSERT_RESULT, apply, item_key, lookup_one
from captionary.core.hashing import cache_key, canonical_json
from captionary.core.item import Item, order_key
from captionary.executors.context import RunContext
from captionary.executors.stages.base import Stage
from captionary.executors.worker import describe_error
from captionary.pipeline.step import GlobalStep, Outcome

REPORT = ""
"""The key of the step's `usage()` report in its cached row (never an item id)."""


class GlobalStage(Stage):
    def __init__(self, ctx: RunContext, index: int, step: GlobalStep):
        super().__init__()
        self.ctx = ctx
        self.index = index
        self.step = step
        self.stats = ctx.stats[index]
        self.items: list[Item] = []

    def push(self, items: list[Item]) -> list[Item]:
        self.items.extend(items)
        self.stats.note = self.step.waiting(len(self.items))
        return []

    def finish(self) -> list[Item]:
        items = sorted(self.items, key=order_key)
        self.items = []
        self.stats.n_in = len(items)
        self.step.runtime.note = ""
        outcomes = self.outcomes(items)
        self.stats.note = self.step.runtime.note
        if outcomes is None:  # the step failed; every item was recorded as failed
            return []
        ready: list[Item] = []
        for item in items:
            outcome = outcomes[item.id]
            if outcome.dropped is not None:
                self.stats.dropped += 1
                # a dropped item keeps the properties the step gave it (why: a duplicate group, a score)
                self.ctx.drop(self.index, apply(item, outcome, self.step), outcome.dropped)
                continue
            self.stats.n_out += 1
            ready.append(apply(item, outcome, self.step))
        return sorted(ready, key=order_key) if self.step.writes_order else ready

    def outcomes(self, items: list[Item]) -> dict[str, Outcome] | None:
        try:
            extra = self.step.prepare(self.ctx.ws)  # inputs from the workspace (human decisions, ...)
        except Exception as exc:
            return self.failed(items, exc)
        inputs = "".join(item_key(self.step, item).hex() for item in items)
        key = cache_key(self.step.cache_prefix, inputs + extra if extra else inputs)
        db = self.ctx.ws.reader()
        try:
            cached = lookup_one(db, key)
        finally:
            db.close()
        if cached is not None:
            self.stats.cached = len(items)
            table = dict(cached.props or {})
            self.stats.usage = table.pop(REPORT, None) or {}
            return {i: Outcome(*value) for i, value in table.items()}
        try:
            computed = list(self.step.apply_all(items))
            if len(computed) != len(items):
                raise ValueError(f"apply_all returned {len(computed)} outcomes for {len(items)} items")
            model, blobs = self.step.model_id(), self.ctx.ws.blobs
            props_list = externalize_many([o.props for o in computed], blobs, model)
            table: dict[str, Any] = {
                item.id: [p, o.image, o.dropped] for item, o, p in zip(items, computed, props_list)
            }
            report = self.step.usage()  # e.g. a learned step's held-out accuracy: kept with the result
            if report:
                table[REPORT] = report
            props = canonical_json(table)
        except Exception as exc:
            return self.failed(items, exc)
        self.stats.computed = len(items)
        self.ctx.writer.write(
            INSERT_RESULT, (key, self.step.name, None, props, None, None, time.time(), None)
        )
        table = json.loads(props)
        self.stats.usage = table.pop(REPORT, None) or {}
        return {i: Outcome(*value) for i, value in table.items()}

    def failed(self, items: list[Item], exc: Exception) -> None:
        """The step failed: every item is recorded as failed with the reason."""
        reason = describe_error(exc)
        for item in items:
            self.ctx.fail(self.index, item, reason)
