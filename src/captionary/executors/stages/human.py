"""Human stage: a review task. Decided items go on at once; the rest wait while the review app is
served, and go on one by one as the person decides them. The stage is done when all are decided."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol
from urllib.parse import quote

from captionary.core.decisions import DecisionStore, TaskItem
from captionary.core.hashing import canonical_json
from captionary.core.item import Item
from captionary.core.outcome import Outcome
from captionary.core.recipes import recipe_json
from captionary.executors.context import RunContext
from captionary.executors.review_host import start_review_host
from captionary.executors.stages.base import Stage
from captionary.executors.summary import StepStats

POLL_EVERY = 0.1
"""Seconds between looks for new decisions while items wait."""
CLOCK_MARGIN = 5.0
"""Decisions stamped this long before the last look are read again (a commit may lag its stamp)."""


class HumanStep(Protocol):
    """What the stage needs of a human step (`steps/human/base.py: HumanStep` is one)."""

    name: str
    task_kind: str

    def task_name(self) -> str: ...
    def task_config(self) -> dict[str, Any]: ...
    def describe(self) -> dict[str, Any]: ...
    def asks(self, item: Item) -> bool: ...
    def check(self, value: Any) -> Any: ...
    def outcome(self, item: Item, value: Any) -> Outcome: ...


class HumanStage(Stage):
    max_pending = sys.maxsize  # waiting for a person never holds back the machine steps

    def __init__(self, ctx: RunContext, index: int, step: HumanStep):
        super().__init__()
        self.ctx = ctx
        self.index = index
        self.step = step
        self.stats = ctx.stats[index]
        self.task = step.task_name()
        self.store = DecisionStore(ctx.ws.db_path, durable=False)  # task items only: never decisions
        self.store.register_task(self.task, step.task_kind, {"step": step.describe(), **step.task_config()})
        self.known = {  # item -> hash of (image, properties) as the app shows them (small in memory)
            item: hash((image, props))
            for item, image, props in self.store.read(
                "SELECT item, image, props FROM task_items WHERE task = ?", (self.task,)
            )
        }
        self.waiting: dict[str, Item] = {}
        self.since = time.time() - CLOCK_MARGIN
        self.last_look = 0.0

    def push(self, items: list[Item]) -> list[Item]:
        self.stats.n_in += len(items)
        passing = [item for item in items if not self.step.asks(item)]  # not asked: on unchanged
        if passing:
            self.stats.cached += len(passing)
            self.stats.n_out += len(passing)
            items = [item for item in items if self.step.asks(item)]
        self._register(items)
        decided = self.store.decisions(self.task, [item.id for item in items])
        ready = []
        for item in items:
            if item.id in decided:
                ready.extend(self.settle(item, decided[item.id], cached=True))
            else:
                self.waiting[item.id] = item
        if self.waiting:
            self._serve()
        return passing + ready

    def poll(self, block: bool = False) -> list[Item]:
        if not self.waiting:
            return []
        wait = self.last_look + POLL_EVERY - time.monotonic()
        if wait > 0:
            if not block:
                return []
            time.sleep(wait)
        self.last_look = time.monotonic()
        looked = time.time()
        ready = []
        for item_id, value, _ in self.store.decided_since(self.task, self.since):
            item = self.waiting.pop(item_id, None)
            if item is not None:
                ready.extend(self.settle(item, value, cached=False))
        self.since = looked - CLOCK_MARGIN
        return ready

    def finish(self) -> list[Item]:
        out: list[Item] = []
        while self.waiting:
            self.ctx.check()
            out.extend(self.poll(block=True))
        return out

    @property
    def pending(self) -> int:
        return len(self.waiting)

    def settle(self, item: Item, value: Any, cached: bool) -> list[Item]:
        """Apply a decision (made before this run: `cached`); a stored value the step refuses (its
        tag list changed, say) fails the item."""
        try:
            outcome = self.step.outcome(item, self.step.check(value))
        except ValueError as exc:
            self.ctx.fail(self.index, item, f"bad decision in task {self.task!r}: {exc}")
            return []
        if cached:
            self.stats.cached += 1
        else:
            self.stats.computed += 1
        if outcome.dropped is not None:
            self.stats.dropped += 1
            self.ctx.drop(self.index, item, outcome.dropped)
            return []
        self.stats.n_out += 1
        return [item.evolve(outcome.props)]

    def _register(self, items: list[Item]) -> None:
        """Record the task's items so the review app can show them (new or changed rows are written,
        the others only stamped with this run)."""
        rows, seen = [], []
        for item in items:
            state = hash((item.image_hash, canonical_json(item.props)))
            if self.known.get(item.id) == state:
                seen.append(item.id)
            else:
                self.known[item.id] = state
                rows.append(
                    TaskItem(
                        item.id,
                        0,
                        item.image_hash,
                        item.name,
                        item.props,
                        item.base,
                        recipe_json(item.recipe),
                    )
                )
        self.store.register_items(self.task, rows, self.ctx.run_id, seen)

    def _serve(self) -> None:
        """Start the run's review server (one per run, shared by its human stages) and announce it."""
        if self.ctx.review_server is not None:
            return
        options = dict(self.ctx.review_options)
        announce = options.pop("announce", None) or _announce
        watch = RunWatch(self.ctx.stats)
        server = start_review_host(self.ctx.ws.path, watch, **options)
        self.ctx.review_watch = watch
        self.ctx.review_server = server
        announce(f"{server.url}#/task/{quote(self.task)}")

    def close(self, complete: bool) -> None:
        server = self.ctx.review_server
        if server is not None:
            watch = getattr(self.ctx, "review_watch", None)
            if complete and watch is not None:
                watch.wait_until_seen()  # an open page learns the run completed; then the server stops
            server.stop()
            self.ctx.review_server = None
        self.store.close()


class RunWatch:
    """The run's per-step counts for the review app's run line (`GET /api/run`), remembering when a
    page last asked, so that at the end of a complete run the server stays until an open page has
    seen every step done (the page then says the run is complete, with the counts)."""

    POLL = 2.0  # how often the page asks (review.js)

    def __init__(self, stats: list[StepStats]):
        self.stats = stats
        self.asked = 0.0
        self.seen_done = threading.Event()

    def __call__(self) -> list[dict[str, Any]]:
        self.asked = time.monotonic()
        steps = [
            {"name": s.name, "in": s.n_in, "out": s.n_out, "failed": s.failed, "done": s.done}
            for s in self.stats
        ]
        if all(step["done"] for step in steps):
            self.seen_done.set()
        return steps

    def wait_until_seen(self) -> None:
        """Wait (at most one poll interval and a half) for a page that asked recently to see the end."""
        if time.monotonic() - self.asked < 3 * self.POLL:
            self.seen_done.wait(self.POLL * 1.5)


def _announce(url: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"Review: {url}", file=sys.stdout)
    sys.stdout.flush()
