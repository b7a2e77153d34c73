"""The local executor: streaming stages in threads, bounded queues, CPU steps in a process pool."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from captionary.core.db import connect
from captionary.core.workspace import Workspace
from captionary.core.writer import DbWriter
from captionary.errors import RunAborted
from captionary.executors.context import Channel, Collector, RunContext, Stopped
from captionary.executors.progress import Progress
from captionary.executors.stages.batch import BatchStage
from captionary.executors.stages.chain import ChainStage
from captionary.executors.stages.global_ import GlobalStage
from captionary.executors.stages.sink import SinkStage
from captionary.executors.stages.source import SourceStage
from captionary.executors.summary import RunSummary, StepStats
from captionary.executors.worker import init_worker
from captionary.pipeline.pipeline import Pipeline
from captionary.pipeline.step import PerItemStep


class LazyPool:
    """The process pool for `parallel` steps, started on first use (a cached re-run never starts it)."""

    def __init__(self, workers: int, ws: Workspace, chains: list[list[PerItemStep]]):
        self.workers = workers
        self.ws = ws
        self.chains = chains
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=init_worker,
                    initargs=(self.ws.blobs.root, self.ws.db_path, self.chains),
                )
            return self._pool

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class LocalExecutor:
    """Runs a pipeline on this machine.

    workers: processes for CPU-heavy steps (default: all cores; 0 runs them in the driver).
    max_errors: abort once more items than this have failed (default: never).
    progress: show progress bars (terminal) or log lines (otherwise).
    chunk_size: items per message between stages.
    """

    def __init__(
        self,
        workers: int | None = None,
        max_errors: int | None = None,
        progress: bool = True,
        chunk_size: int = 512,
    ):
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.max_errors = max_errors
        self.progress = progress
        self.chunk_size = chunk_size

    def run(self, ws: Workspace, pipeline: Pipeline) -> RunSummary:
        pipeline.check()
        with ws.run_lock():
            ws.blobs.clear_tmp()
            return self._run(ws, pipeline)

    def _run(self, ws: Workspace, pipeline: Pipeline) -> RunSummary:
        started = time.time()
        run_id = ws.db.execute(
            "INSERT INTO runs (started, status, pipeline, executor) VALUES (?, 'running', ?, 'local')",
            (started, json.dumps(pipeline.describe(), default=str)),
        ).lastrowid
        stats = [StepStats(name, step.kind) for name, step in zip(_unique_names(pipeline), pipeline)]
        writer = DbWriter(connect(ws.db_path))
        ctx = RunContext(ws, run_id, writer, stats, self.max_errors)
        stages, pool = self._plan(ctx, pipeline)
        progress = Progress(stats, enabled=self.progress)
        threads = self._start(ctx, stages)
        status = "completed"
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.1)
                progress.update()
        except KeyboardInterrupt:
            ctx.abort("interrupted (Ctrl-C)")
            status = "interrupted"
            for t in threads:
                t.join()
        finally:
            pool.shutdown()
            progress.close()
        if ctx.crash is not None:
            status = "crashed"
        elif ctx.abort_reason is not None and status == "completed":
            status = "aborted"
        writer.write_many(
            "INSERT OR REPLACE INTO run_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, i, s.name, s.n_in, s.n_out, s.computed, s.cached, s.dropped, s.failed)
             for i, s in enumerate(stats)],
        )
        writer.write("UPDATE runs SET finished = ?, status = ? WHERE id = ?", (time.time(), status, run_id))
        writer.close()
        writer.db.close()
        summary = RunSummary(run_id, status, time.time() - started, stats, ctx.errors)
        if ctx.crash is not None:
            raise ctx.crash
        if status != "completed":
            error = RunAborted(f"run {run_id} stopped: {ctx.abort_reason}; committed work is kept")
            error.summary = summary
            raise error
        return summary

    def _plan(self, ctx: RunContext, pipeline: Pipeline) -> tuple[list, LazyPool]:
        """Group the steps into stages: a source, chains of per-item steps, batch, global, sink."""
        steps = list(pipeline)
        chains: list[list[PerItemStep]] = []
        stages: list = [SourceStage(ctx, 0, steps[0], self.chunk_size)]
        pool = LazyPool(max(1, self.workers), ctx.ws, chains)
        index = 1
        while index < len(steps):
            step = steps[index]
            if isinstance(step, PerItemStep):
                end = index
                while end < len(steps) and isinstance(steps[end], PerItemStep):
                    end += 1
                chain = steps[index:end]
                parallel = self.workers > 0 and any(s.parallel for s in chain)
                stages.append(ChainStage(ctx, list(range(index, end)), chain, len(chains),
                                         pool if parallel else None))
                chains.append(chain)
                index = end
                continue
            if step.kind == "batch":
                stages.append(BatchStage(ctx, index, step))
            elif step.kind == "global":
                stages.append(GlobalStage(ctx, index, step, self.chunk_size))
            else:
                stages.append(SinkStage(ctx, index, step))
            index += 1
        return stages, pool

    def _start(self, ctx: RunContext, stages: list) -> list[threading.Thread]:
        channels: list = [None] + [Channel(ctx) for _ in stages[1:]] + [Collector(ctx)]
        threads = []
        for position, stage in enumerate(stages):
            thread = threading.Thread(
                target=_guarded, args=(ctx, stage, channels[position], channels[position + 1]),
                name=f"captionary-{type(stage).__name__}-{position}", daemon=True,
            )
            thread.start()
            threads.append(thread)
        return threads


def _guarded(ctx: RunContext, stage, inbox, outbox) -> None:
    indices = getattr(stage, "indices", None) or [stage.index]
    try:
        stage.run(inbox, outbox)
    except Stopped:
        pass
    except BaseException as exc:
        ctx.crashed(exc)
    finally:
        for index in indices:
            ctx.stats[index].done = True


def _unique_names(pipeline: Pipeline) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for step in pipeline:
        seen[step.name] = seen.get(step.name, 0) + 1
        names.append(step.name if seen[step.name] == 1 else f"{step.name}#{seen[step.name]}")
    return names
