"""The local executor: one driver thread streams chunks of items through the stages; image steps run
in a process pool, batch steps and sink writes in threads of their own."""

from __future__ import annotations

import gc
import itertools
import json
import os
import pickle
import sys
import time
import warnings
from typing import TYPE_CHECKING

from captionary.core.db import connect
from captionary.core.item import Item
from captionary.core.workspace import Workspace
from captionary.core.writer import DbWriter
from captionary.errors import CaptionaryError, RunAborted
from captionary.executors.context import RunContext, Stopped
from captionary.executors.main_guard import check_main_guard
from captionary.executors.progress import Progress
from captionary.executors.stages.base import Stage
from captionary.executors.stages.batch import BatchStage
from captionary.executors.stages.chain import ChainStage
from captionary.executors.stages.fanout import FanOutStage
from captionary.executors.stages.global_ import GlobalStage
from captionary.executors.stages.human_rank import human_stage
from captionary.executors.stages.sink import SinkStage
from captionary.executors.stages.source import SourceStage
from captionary.executors.summary import RunSummary, StepStats
from captionary.executors.worker import init_worker
from captionary.pipeline.pipeline import Pipeline
from captionary.pipeline.step import ImageMap, PerItemStep

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor


class LazyPool:
    """The process pool for `parallel` steps, started on first use (a cached re-run never starts it)."""

    def __init__(self, workers: int, ws: Workspace, chains: list[list[PerItemStep]]):
        self.workers = workers
        self.ws = ws
        self.chains = chains
        self.needed = False  # a parallel chain runs here (set while planning)
        self._pool: ProcessPoolExecutor | None = None

    def __call__(self) -> ProcessPoolExecutor:
        if self._pool is None:  # only the driver thread calls this
            import multiprocessing  # here: a cached run starts no pool and skips these 10 ms of imports
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
                initargs=(self.ws.blobs.root, self.ws.db_path, self.chains),
            )
        return self._pool

    def warm(self) -> None:
        """Start the worker processes now (a source has new files to read): their start-up (imports,
        opening the workspace) overlaps the reading instead of waiting for the first items."""
        if self.needed and self._pool is None:
            pool = self()
            for _ in range(self.workers):  # a spawn pool starts a process per task it cannot place
                pool.submit(os.getpid)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class LocalExecutor:
    """Runs a pipeline on this machine.

    workers: processes for CPU-heavy steps (default: all cores; 0 runs them in the driver).
    max_errors: abort once more items than this have failed (default: never).
    progress: show progress bars (terminal) or log lines (otherwise).
    chunk_size: items the driver pushes through the stages at a time.
    review: options of the review app a human step serves (`host`, `port`, `announce(url)`).
    """

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        max_errors: int | None = None,
        progress: bool = True,
        chunk_size: int = 512,
        review: dict | None = None,
    ):
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.max_errors = max_errors
        self.progress = progress
        self.chunk_size = chunk_size
        self.review = review or {}

    def run(self, ws: Workspace, pipeline: Pipeline) -> RunSummary:
        pipeline.check()
        if self._spawns_workers(pipeline):
            check_main_guard()  # before the lock and the pool: one clear message, not a broken pool
        with ws.run_lock():
            ws.blobs.clear_tmp()
            return self._run(ws, pipeline)

    def _run(self, ws: Workspace, pipeline: Pipeline) -> RunSummary:
        started = time.time()
        # runs still 'running' under our lock were killed: say so, and let sinks clear their temp files
        killed = ws.db.execute("UPDATE runs SET status = 'killed' WHERE status = 'running'").rowcount
        run_id = ws.db.execute(
            "INSERT INTO runs (started, status, pipeline, executor) VALUES (?, 'running', ?, ?)",
            (started, json.dumps(pipeline.describe(), default=str), self.name),
        ).lastrowid
        stats = [StepStats(name, step.kind) for name, step in zip(_unique_names(pipeline), pipeline)]
        writer = DbWriter(connect(ws.db_path))
        ctx = RunContext(ws, run_id, writer, stats, self.max_errors)
        ctx.decodes_later = any(isinstance(step, ImageMap) for step in pipeline)
        ctx.review_options = self.review
        ctx.after_kill = killed > 0
        progress = Progress(stats, enabled=self.progress)
        source, stages, pool = self._plan(ctx, pipeline)
        ctx.warm_workers = getattr(pool, "warm", ctx.warm_workers)  # (Ray's actors start as they do)
        status = "completed"
        gc_threshold = gc.get_threshold()
        gc.set_threshold(100_000, 50, 100)  # millions of small objects: collect far less often
        try:
            Driver(ctx, source, stages, progress, self.chunk_size).run()
        except KeyboardInterrupt:
            ctx.abort("interrupted (Ctrl-C)")
            status = "interrupted"
        except Stopped:
            pass  # too many errors: ctx.abort_reason says so
        except BaseException as exc:
            ctx.crashed(exc)
        finally:
            gc.set_threshold(*gc_threshold)
            complete = not ctx.stop.is_set()
            pool.shutdown()
            for stage in stages:
                stage.close(complete)
            progress.close()
        if ctx.crash is not None:
            status = "crashed"
        elif ctx.abort_reason is not None and status == "completed":
            status = "aborted"
        if status == "completed":
            ctx.forget_unseen()
        writer.write_many(
            "INSERT OR REPLACE INTO run_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (run_id, i, s.name, s.n_in, s.n_out, s.computed, s.cached, s.dropped, s.failed, usage)
                for i, s in enumerate(stats)
                for usage in [json.dumps(s.usage) if s.usage else None]
            ],
        )
        writer.write("UPDATE runs SET finished = ?, status = ? WHERE id = ?", (time.time(), status, run_id))
        writer.close()
        writer.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # readers of the next run skip the WAL
        writer.db.close()
        summary = RunSummary(run_id, status, time.time() - started, stats, ctx.errors)
        if ctx.crash is not None and _broken_pool(ctx.crash):
            raise CaptionaryError(
                "a worker process died before finishing its images (out of memory, or killed). If you "
                'run a Python script, put the pipeline under `if __name__ == "__main__":`: workers '
                "import your script again. Committed work is kept; run again to go on."
            ) from ctx.crash
        if ctx.crash is not None:
            raise ctx.crash
        if status != "completed":
            error = RunAborted(f"run {run_id} stopped: {ctx.abort_reason}; committed work is kept")
            error.summary = summary
            raise error
        return summary

    def _plan(self, ctx: RunContext, pipeline: Pipeline) -> tuple[SourceStage, list[Stage], LazyPool]:
        """Group the steps into stages: a source, chains of per-item steps, batch, global, sink."""
        steps = list(pipeline)
        chains: list[list[PerItemStep]] = []
        stages: list[Stage] = []
        pool = self._pool(ctx, chains)
        index = len(pipeline.sources)
        while index < len(steps):
            step = steps[index]
            if isinstance(step, PerItemStep):
                end = index
                while end < len(steps) and isinstance(steps[end], PerItemStep):
                    end += 1
                chain = steps[index:end]
                parallel = self.workers > 0 and any(s.parallel for s in chain) and _workers_can_load(chain)
                if parallel:
                    pool.needed = True
                stages.append(
                    ChainStage(ctx, list(range(index, end)), chain, len(chains), pool if parallel else None)
                )
                chains.append(chain)
                index = end
                continue
            stages.append(self._stage(ctx, index, step))
            index += 1
        for chain, following in itertools.pairwise(stages):
            if isinstance(chain, ChainStage) and isinstance(following, SinkStage):
                chain.render = following.step.renderer()
        return SourceStage(ctx, pipeline.sources), stages, pool

    def _spawns_workers(self, pipeline: Pipeline) -> bool:
        """Whether this run may start the spawn process pool (which re-imports the main script)."""
        return self.workers > 0 and any(getattr(step, "parallel", False) for step in pipeline)

    def _pool(self, ctx: RunContext, chains: list[list[PerItemStep]]) -> LazyPool:
        """Where `parallel` chain steps run (another executor may put them elsewhere)."""
        return LazyPool(max(1, self.workers), ctx.ws, chains)

    def _stage(self, ctx: RunContext, index: int, step) -> Stage:
        return STAGES[step.kind](ctx, index, step)


STAGES = {
    "batch": BatchStage,
    "global": GlobalStage,
    "sink": SinkStage,
    "human": human_stage,
    "fanout": FanOutStage,
}


class Driver:
    """Pulls chunks from the source and pushes them through the stages, in one thread.

    Cheap work (cache hits, bookkeeping) happens here without any hand-off between threads; heavy
    work runs in the process pool, the batch thread and the sink's writer threads, and its results
    come back through `poll`. Each stage holds at most `max_pending` futures (backpressure).
    """

    FEED_EVERY = 0.2  # seconds: a partial chunk goes downstream when the source is slow
    FIRST_FEED = 0.02  # ... the first after this, each next after twice as long, up to FEED_EVERY:
    # the workers get their first images while the source is still reading (large photos are read
    # ~40 per 0.2 s, and idle workers at the start were a tenth of a 158-photo run)

    def __init__(
        self, ctx: RunContext, source: SourceStage, stages: list[Stage], progress: Progress, chunk_size: int
    ):
        self.ctx = ctx
        self.source = source
        self.stages = stages
        self.progress = progress
        self.chunk_size = chunk_size
        self.last_tick = time.monotonic()

    def run(self) -> None:
        chunk: list[Item] = []
        last_feed = time.monotonic()
        wait = self.FIRST_FEED
        items = self.source.items()
        while True:
            started = time.perf_counter()
            item = next(items, None)
            self.source.stats.seconds += time.perf_counter() - started
            if item is None:
                break
            chunk.append(item)
            if len(chunk) >= self.chunk_size or time.monotonic() - last_feed > wait:
                self.feed(0, chunk)
                chunk, last_feed, wait = [], time.monotonic(), min(2 * wait, self.FEED_EVERY)
                self.step()
        self.feed(0, chunk)
        for position, stage in enumerate(self.stages):
            while stage.pending:
                self.feed(position + 1, stage.poll(block=True))
                self.step()
            self.feed(position + 1, stage.finish())
            for index in getattr(stage, "indices", None) or [stage.index]:
                self.ctx.stats[index].done = True
        self.progress.update()

    def feed(self, position: int, items: list[Item]) -> None:
        """Push items into stage `position` and on downstream as far as they get at once."""
        for stage in self.stages[position:]:
            if not items:
                return
            started = time.perf_counter()
            items = stage.push(items)
            if not isinstance(stage, ChainStage):  # a chain times each of its steps itself
                self.ctx.stats[stage.index].seconds += time.perf_counter() - started
        for item in items:
            self.ctx.finish(item)

    def step(self) -> None:
        """Collect finished background work, apply backpressure, show progress, honour a stop."""
        if self.ctx.stop.is_set():
            raise Stopped
        for position, stage in enumerate(self.stages):
            self.feed(position + 1, stage.poll())
            while stage.pending > stage.max_pending:
                self.feed(position + 1, stage.poll(block=True))
        if time.monotonic() - self.last_tick > 0.1:
            self.last_tick = time.monotonic()
            self.progress.update()


def _workers_can_load(chain: list[PerItemStep]) -> bool:
    """Spawned workers import step classes by module: one defined in a notebook or in exec'd code
    cannot be loaded there, so such a chain runs in the driver instead (with a warning)."""
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if main_file and not os.path.exists(main_file):  # `python - < script`: workers would fail to start
        warnings.warn(
            f"worker processes cannot start from {main_file}; image steps run in one process. "
            f"Run a script file to use every core.",
            stacklevel=1,
        )
        return False
    for step in chain:
        module = sys.modules.get(type(step).__module__)
        if module is None or not getattr(module, "__file__", None):
            warnings.warn(
                f"step {step.name!r} is defined in {type(step).__module__!r}, which worker processes "
                f"cannot import (a notebook?); its chain runs in one process. Define it in a .py module "
                f"to use every core.",
                stacklevel=1,
            )
            return False
    try:
        pickle.dumps(chain)
    except Exception as exc:
        warnings.warn(
            f"steps {[s.name for s in chain]} cannot be sent to worker processes ({exc}); "
            f"they run in one process",
            stacklevel=1,
        )
        return False
    return True


def _unique_names(pipeline: Pipeline) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for step in pipeline:
        seen[step.name] = seen.get(step.name, 0) + 1
        names.append(step.name if seen[step.name] == 1 else f"{step.name}#{seen[step.name]}")
    return names


def _broken_pool(crash: BaseException) -> bool:
    """The crash is a worker process that died (the pool's module is loaded once a pool started)."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(crash, BrokenProcessPool)
