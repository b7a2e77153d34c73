"""The Ray executor: the local executor's plan and driver, with the heavy work on a Ray cluster.

The driver (this process) still reads the source, filters cache hits against the workspace and commits
every result as it arrives, so a killed driver loses only the batches in flight. What moves to Ray:

- chains of `parallel` per-item steps (decode, resize, ...) run in a pool of CPU actors, a few items
  per task, each actor holding the chains and a read-only view of the workspace (`ChainActors`);
- batch (model) steps run in a pool of model actors that load the model once each and keep it until
  the step has seen its last item; with GPUs in the cluster each actor takes what one copy of the
  model needs (`ModelActors`, `model_actor_plan`).

Dead actors are restarted and their tasks sent again (`MAX_RESTARTS`, `TASK_RETRIES`). Ray core actors
rather than Ray Data: the plan's per-step cache filtering and streaming commit map onto futures
directly, and cached items never leave the driver. Workers read blobs from the store's path or URL,
and the database where their node sees it (see `init_worker`).
"""

from __future__ import annotations

import functools
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from captionary.core import optional
from captionary.core.item import Item
from captionary.core.workspace import Workspace
from captionary.errors import ConfigError
from captionary.executors.context import RunContext
from captionary.executors.local import LocalExecutor
from captionary.executors.stages.base import Stage
from captionary.executors.stages.batch import BatchStage, compute_isolated
from captionary.executors.worker import describe_error, init_worker, run_task
from captionary.pipeline.step import BatchStep, Outcome, PerItemStep

MAX_RESTARTS = 4
"""Times Ray restarts a model actor whose process died (a lost or preempted node, an out-of-memory
kill); the restarted actor loads its model again. Chain actors, which hold no model, restart always."""
TASK_RETRIES = 2
"""Times a task whose actor died is sent again, to the restarted actor: a preempted node loses no
work. A chain task failing still then has its items tried one at a time (`ChainActors`): only an
item that kills its worker every time alone (a poison image) fails; the run goes on."""


class RayExecutor(LocalExecutor):
    """Runs a pipeline with its heavy steps on Ray.

    address: the cluster to join (`ray.init(address=...)`, e.g. "auto" or "ray://host:10001"); None
      starts a local Ray with `num_cpus` (default: all cores). An already initialised Ray is reused.
    workers: CPU actors for image steps (default: the cluster's CPUs).
    model_actors: actors per batch (model) step (default: one per GPU, or per group of GPUs a model
      split over several needs; 1 without GPUs).
    gpus_per_model_actor: GPUs each model actor reserves (default: what the step's model needs, e.g.
      vLLM's `tensor_parallel_size`, else 1, when the cluster has GPUs; 0 without).
    Other options as for `local` (`max_errors`, `progress`, `chunk_size`).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        workers: int | None = None,
        model_actors: int | None = None,
        gpus_per_model_actor: float | None = None,
        **options: Any,
    ):
        self.ray = optional.require("ray", "ray")
        if not self.ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None:
                kwargs["num_cpus"] = num_cpus or os.cpu_count()
            self.ray.init(address=address, **kwargs)
        resources = self.ray.cluster_resources()
        cpus, self.cluster_gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
        super().__init__(workers=cpus if workers is None else workers, **options)
        self.gpus_per_model_actor = gpus_per_model_actor
        self.model_actors = model_actors

    def run(self, ws: Workspace, pipeline) -> Any:
        for step in pipeline:  # a model the cluster cannot hold fails here, before the run is recorded
            if isinstance(step, BatchStep):
                model_actor_plan(step, self.cluster_gpus, self.gpus_per_model_actor, self.model_actors)
        return super().run(ws, pipeline)

    def _spawns_workers(self, pipeline) -> bool:
        return False  # Ray actors import step modules, never the main script

    def _pool(self, ctx: RunContext, chains: list[list[PerItemStep]]) -> ChainActors:
        return ChainActors(self.ray, max(1, self.workers), ctx.ws, chains)

    def _stage(self, ctx: RunContext, index: int, step) -> Stage:
        if isinstance(step, BatchStep):
            count, gpus = model_actor_plan(
                step, self.cluster_gpus, self.gpus_per_model_actor, self.model_actors
            )
            return RayBatchStage(ctx, index, step, ModelActors(self.ray, step, count, gpus))
        return super()._stage(ctx, index, step)


def model_actor_plan(
    step: BatchStep, cluster_gpus: int, gpus: float | None = None, actors: int | None = None
) -> tuple[int, float]:
    """(actors, GPUs each) for a model step: as given, else each actor takes the GPUs one copy of the
    step's model needs (`gpus_per_model`, else 1) and there is an actor per such group; on a cluster
    without GPUs, one actor and none. A model needing more GPUs than the cluster has is an error (it
    would wait for them forever), unless `gpus` says so explicitly (an autoscaling cluster)."""
    if gpus is None:
        needed = step.gpus_per_model() or 1
        if cluster_gpus and needed > cluster_gpus:
            raise ConfigError(
                f"{step.name}: one copy of its model needs {needed} GPUs and the cluster has "
                f"{cluster_gpus}; lower tensor_parallel_size, or set --gpus-per-model-actor"
            )
        gpus = float(needed) if cluster_gpus else 0.0
    if actors is None:
        actors = max(1, int(cluster_gpus // gpus)) if gpus else 1
    return actors, gpus


class ChainActors:
    """A pool of CPU actors running chain tasks; `pool().submit(run_task, ...)` as with a process pool.

    A chain actor holds no model, so Ray restarts it without limit. A task that still fails after
    `TASK_RETRIES` (its actor died each time) may hold one poison image among innocent ones, or only
    have shared an actor with one: its items are sent again one at a time to a quarantine actor, where
    an item that kills the worker takes nothing else down. Only those fail; the run goes on.
    """

    def __init__(self, ray: Any, workers: int, ws: Workspace, chains: list[list[PerItemStep]]):
        self.ray = ray
        self.workers = workers
        self.ws = ws
        self.chains = chains
        self.actors: list[Any] = []
        self.in_flight: list[int] = []
        self.lock = threading.Lock()
        self.suspects: deque[tuple[tuple, Callable[[list], None]]] = deque()
        self.quarantine: Any = None
        self.quarantine_busy = False

    def __call__(self) -> ChainActors:
        if not self.actors:  # started on first use: a cached re-run starts none
            self.actors = [self._actor(num_cpus=1) for _ in range(self.workers)]
            self.in_flight = [0] * self.workers
        return self

    def _actor(self, num_cpus: float) -> Any:
        options = {"num_cpus": num_cpus, "max_restarts": -1, "max_task_retries": TASK_RETRIES}
        actor_class = self.ray.remote(**options)(ChainWorker)
        return actor_class.remote(self.ws.blobs.root, self.ws.db_path, self.chains)

    def submit(self, fn: Callable, *args: Any) -> Future:
        if fn is not run_task:
            raise TypeError(f"chain actors run chain tasks only, not {fn!r}")
        with self.lock:
            slot = min(range(len(self.actors)), key=self.in_flight.__getitem__)
            self.in_flight[slot] += 1
        done: Future = Future()
        future = self.actors[slot].run_task.remote(*args).future()
        future.add_done_callback(lambda ray_future: self._done(slot, ray_future, done, args))
        return done

    def _done(self, slot: int, ray_future: Future, done: Future, args: tuple) -> None:
        with self.lock:
            self.in_flight[slot] -= 1
        try:
            done.set_result(ray_future.result())
        except Exception:  # its actor died every time: find which of its items did that
            self._retry_alone(args, done)

    def _retry_alone(self, args: tuple, done: Future) -> None:
        """Queue each item of a failed task as a task of its own; `done` gets their results together."""
        chain, batch, *rest = args
        parts: list[list] = [[] for _ in batch]
        left = [len(batch)]

        def settle(index: int, result: list) -> None:
            with self.lock:
                parts[index] = result
                left[0] -= 1
                finished = left[0] == 0
            if finished:
                done.set_result([entry for part in parts for entry in part])

        with self.lock:
            for index, miss in enumerate(batch):
                self.suspects.append(((chain, [miss], *rest), functools.partial(settle, index)))
        self._next_suspect()

    def _next_suspect(self) -> None:
        """Send the quarantine actor its next item, once the one before has finished (alone)."""
        with self.lock:
            if self.quarantine_busy or not self.suspects:
                return
            self.quarantine_busy = True
            args, settle = self.suspects.popleft()
            if self.quarantine is None:  # no CPU reserved: the chain actors hold them all
                self.quarantine = self._actor(num_cpus=0)
            actor = self.quarantine
        future = actor.run_task.remote(*args).future()
        future.add_done_callback(lambda ray_future: self._suspect_done(ray_future, args, settle))

    def _suspect_done(self, ray_future: Future, args: tuple, settle: Callable[[list], None]) -> None:
        try:
            result = ray_future.result()
        except Exception as exc:  # alone, it killed its worker every time: it fails, nothing else
            reason = f"the worker process died running this item ({_died(exc)})"
            result = [(item, [(start, b"", None, reason, False)]) for item, start in args[1]]
        with self.lock:
            self.quarantine_busy = False
        settle(result)
        self._next_suspect()

    def shutdown(self) -> None:
        for actor in [*self.actors, *([self.quarantine] if self.quarantine is not None else [])]:
            self.ray.kill(actor)
        self.actors, self.quarantine = [], None


class ChainWorker:
    """A Ray actor doing what a local pool process does (see executors/worker.py)."""

    def __init__(self, objects, db_path, chains):
        init_worker(objects, db_path, chains)

    def run_task(self, chain: int, batch: list, render: Any = None, cold: frozenset = frozenset()) -> list:
        return run_task(chain, batch, render, cold)


class ModelWorker:
    """A Ray actor holding one batch step's model: loaded once, used for every batch sent to it.

    It takes two batches at a time (a threaded actor): while the model works on one, the next one's
    inputs are prepared (`BatchStep.prefetch`: caption steps decode and downscale its images on the
    other cores), so the device does not wait for decoding.
    """

    CONCURRENCY = 2

    def __init__(self, step: BatchStep, objects):
        from captionary.core.blobstore import open_blob_store

        self.step = step
        self.store = open_blob_store(objects)
        self.model_lock = threading.Lock()
        step.setup()

    def compute(self, items: list[Item]) -> list[Outcome | str]:
        """Outcomes of a batch; a batch that raises is retried item by item, so one bad image fails alone."""
        for item in items:
            item.attach(self.store)
        self.step.prefetch(items)
        with self.model_lock:
            return compute_isolated(self.step, items)

    def ping(self) -> bool:
        return True

    def usage(self) -> dict:
        return dict(self.step.usage())

    def teardown(self) -> None:
        self.step.teardown()


class ModelActors:
    """The actors of one batch step (up to `count`), each created when a batch finds none idle."""

    def __init__(self, ray: Any, step: BatchStep, count: int, gpus: float):
        self.ray = ray
        self.step = step
        self.count = max(1, count)
        self.gpus = gpus
        self.idle: list[Any] = []
        self.all: list[Any] = []
        self.available = threading.Condition()

    def start(self, objects) -> None:
        # no CPU reserved: the chain actors hold the CPUs, and a model actor waits on its device (or,
        # without GPUs, shares the cores as the local executor's batch thread does)
        self.actor_class = self.ray.remote(
            num_cpus=0,
            num_gpus=self.gpus,
            max_concurrency=ModelWorker.CONCURRENCY,
            max_restarts=MAX_RESTARTS,
            max_task_retries=TASK_RETRIES,
        )(ModelWorker)
        self.objects = objects

    def compute(self, items: Sequence[Item]) -> list[Outcome | str]:
        """Run one batch on an idle actor (blocks the calling thread until one is free)."""
        with self.available:
            while not self.idle:
                if len(self.all) < self.count:  # one more model, only when needed
                    self.all.append(self.actor_class.remote(self.step, self.objects))
                    self.idle.extend([self.all[-1]] * ModelWorker.CONCURRENCY)  # a slot per batch
                else:
                    self.available.wait()
            actor = self.idle.pop()
        healthy = True
        try:
            return self.ray.get(actor.compute.remote(list(items)))
        except self.ray.exceptions.RayActorError:
            healthy = self._alive(actor)
            raise
        finally:
            with self.available:
                if healthy:
                    self.idle.append(actor)
                else:  # out of restarts: its slots go, and a new actor is made when a batch needs one
                    self.all = [a for a in self.all if a is not actor]
                    self.idle = [a for a in self.idle if a is not actor]
                self.available.notify()

    def _alive(self, actor: Any) -> bool:
        """False once Ray gave up restarting the actor (waits while it restarts)."""
        try:
            self.ray.get(actor.ping.remote())
            return True
        except self.ray.exceptions.RayActorError:
            return False

    def close(self) -> dict:
        """Tear every model down (frees its GPU); return the summed usage counters."""
        usage: dict = {}
        for actor in self.all:
            try:
                for name, value in self.ray.get(actor.usage.remote()).items():
                    usage[name] = usage.get(name, 0) + value
                self.ray.get(actor.teardown.remote())
            except self.ray.exceptions.RayActorError:
                pass  # it died for good: nothing left to count or free
            self.ray.kill(actor)
        self.all = self.idle = []
        return usage


class RayBatchStage(BatchStage):
    """A batch stage whose batches run on model actors; this process only stores and commits results."""

    def __init__(self, ctx: RunContext, index: int, step: BatchStep, actors: ModelActors):
        super().__init__(ctx, index, step)
        from concurrent.futures import ThreadPoolExecutor

        self.actors = actors
        self.thread.shutdown()
        slots = actors.count * ModelWorker.CONCURRENCY
        self.thread = ThreadPoolExecutor(slots, thread_name_prefix=f"captionary-ray-{step.name}")
        self.max_pending = 2 * slots

    def submit(self, batch: list[tuple[Item, bytes]]) -> None:
        if not self.loaded:
            self.actors.start(self.ctx.ws.blobs.root)
            self.loaded = True
        self.track(self.thread.submit(self.compute, batch))

    def compute(self, batch: list[tuple[Item, bytes]]) -> list[tuple[Item, bytes, Outcome | str]]:
        items = [item for item, _ in batch]
        try:
            outcomes = self.actors.compute(items)
        except Exception as exc:  # the actor died on this batch every time: these items fail
            outcomes = [f"the model actor died running this batch ({_died(exc)})"] * len(items)
        computed = [o for o in outcomes if not isinstance(o, str)]
        try:
            self.stored_all(computed)  # a batch's arrays stored together, as the local stage does
        except Exception as exc:
            outcomes = [o if isinstance(o, str) else describe_error(exc) for o in outcomes]
        return [(item, key, outcome) for (item, key), outcome in zip(batch, outcomes)]

    def may_load(self) -> bool:
        return True  # Ray gives each model actor its own GPU

    def release(self) -> None:
        """The step has seen its last item (or the run stops): tear the models down, free the GPUs."""
        if self.loaded:
            self.stats.usage = self.actors.close()
            self.loaded = False


def _died(exc: BaseException) -> str:
    """A short reason for a dead actor (Ray's own message runs to many lines)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__
