"""The driver and stage contract: no item is ever lost between stages."""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future

import pytest
from PIL import Image

from captionary import FilterBySize, Load, Resize, Save, Workspace
from captionary.core.hashing import KEY_PREFIX
from captionary.core.item import Item
from captionary.executors.stages.base import Stage
from captionary.executors.stages.chain import MAX_TASK, pool_tasks
from captionary.executors.worker import _worker, init_worker, run_task


class Passthrough(Stage):
    def collect(self, result):
        return [result]


def finished(value) -> Future:
    future = Future()
    future.set_result(value)
    return future


def test_a_future_finishing_after_it_was_tracked_is_collected_once():
    stage = Passthrough()
    later = Future()
    stage.track(finished("first"))
    stage.track(later)
    assert stage.poll() == ["first"]
    assert stage.poll() == [] and stage.pending == 1
    later.set_result("second")
    assert stage.poll() + stage.poll() == ["second"]
    assert stage.pending == 0


def test_work_finished_by_a_poll_comes_out_in_the_order_it_was_submitted():
    stage = Passthrough()
    futures = [Future() for _ in range(6)]
    for future in futures:
        stage.track(future)
    for i in [4, 1, 5, 0, 3]:  # finish out of order (as pool tasks do)
        futures[i].set_result(i)
    assert stage.poll() == [0, 1, 3, 4, 5]
    futures[2].set_result(2)
    assert stage.poll() == [2]


def test_a_blocking_poll_wakes_when_another_thread_finishes_work():
    stage = Passthrough()
    future = Future()
    stage.track(future)
    threading.Timer(0.05, future.set_result, ["done"]).start()
    assert stage.poll(block=True) == ["done"]
    assert stage.finish() == []


def test_a_future_that_raised_raises_from_poll():
    stage = Passthrough()
    failed = Future()
    failed.set_exception(OSError("disk on fire"))
    stage.track(failed)
    with pytest.raises(OSError, match="disk on fire"):
        stage.poll()


def test_weighted_work_counts_against_max_pending():
    stage = Passthrough()
    futures = [Future() for _ in range(3)]
    for future in futures:
        stage.track(future, weight=8)
    assert stage.pending == 24
    futures[1].set_result("b")
    assert stage.poll() == ["b"] and stage.pending == 16


def test_every_item_reaches_the_sink_under_load(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(300):
        noise = random.Random(i).randbytes(32 * 24 * 3)
        Image.frombytes("RGB", (32, 24), noise).save(photos / f"{i:04d}.png")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(
            Load(photos) >> Resize(max_edge=16) >> Save(tmp_path / "out"),
            progress=False,
            workers=2,
            chunk_size=16,
        )
    assert [s.n_out for s in summary.steps] == [300, 300, 300]
    assert len(list((tmp_path / "out").glob("*.png"))) == 300


def test_pool_tasks_hold_many_thumbnails_few_photos_and_spread_over_the_workers():
    thumbs = [(Item(f"t{i}", props={"width": 96, "height": 72}), 0) for i in range(100)]
    assert [len(t) for t in pool_tasks(thumbs, spread=4)] == [MAX_TASK] * 6 + [100 - 6 * MAX_TASK]
    assert [len(t) for t in pool_tasks(thumbs[:12], spread=4)] == [3, 3, 3, 3]  # every worker gets some
    photos = [(Item(f"p{i}", props={"width": 2000, "height": 1500}), 0) for i in range(10)]
    assert [len(t) for t in pool_tasks(photos, spread=1)] == [3, 3, 3, 1]  # about TASK_PIXELS each
    unknown = [(Item(f"u{i}"), 0) for i in range(8)]
    assert [len(t) for t in pool_tasks(unknown)] == [4, 4]
    assert sorted(m[0].id for t in pool_tasks(thumbs, spread=4) for m in t) == sorted(m[0].id for m in thumbs)


def test_a_pool_worker_looks_up_only_steps_that_had_results_when_the_run_began(photos, ws_path):
    """Later steps of a chain with nothing cached are computed without a query per item (`cold`);
    a step with results is still looked up, so an edited pipeline reuses them."""
    chain = [FilterBySize(min_edge=512), Resize(max_edge=64)]
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Resize(max_edge=64), progress=False)
        # the edited pipeline, through the pool: resize's 11 results are found, not computed
        edited = ws.run(Load(photos) >> FilterBySize(min_edge=512) >> Resize(max_edge=64), progress=False)
        assert (edited.step("resize").cached, edited.step("resize").computed) == (11, 0)
        ws.run(Load(photos), progress=False)
        originals = list(ws.items())  # as load leaves them
        init_worker(ws.blobs.root, ws.db_path, [chain])
        queries: list[str] = []
        _worker["db"].set_trace_callback(queries.append)
        resize_prefix = chain[1].cache_prefix[:KEY_PREFIX]
        try:
            warm = run_task(0, [(item, 0) for item in originals])
            looked_up = len(queries)
            cold = run_task(0, [(item, 0) for item in originals], None, frozenset({resize_prefix}))
        finally:
            _worker["db"].close()
            _worker.clear()
    resized = [events[1] for _, events in warm if len(events) == 2]
    assert len(resized) == 11 and all(cached for *_, cached in resized)
    assert looked_up == 11  # one query per item that reached resize
    assert len(queries) == looked_up  # the cold run asked nothing
    computed = [events[1] for _, events in cold if len(events) == 2]
    assert len(computed) == 11 and not any(cached for *_, cached in computed)
    assert [done.image_hash for done, _ in cold] == [done.image_hash for done, _ in warm]
