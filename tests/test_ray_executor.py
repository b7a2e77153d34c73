"""The Ray executor: the same plan on a (local, 2-CPU) Ray cluster gives the same results."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from captionary import FilterBySize, Load, Resize, Save, SetCaption, Workspace
from conftest import REPO, tree
from steps_for_ray import TModelDies, TOverlap, TRayMeanColour, TWorkerDies
from test_crash import check_finished, command, committed_results, wait_for, write_project

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    tests = str(Path(__file__).parent)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([tests, str(REPO / "src")])}},
    )
    yield
    ray.shutdown()


def pipeline(photos: Path, out: Path, log: Path):
    return (
        Load(photos)
        >> FilterBySize(min_edge=64)
        >> Resize(max_edge=96)
        >> TRayMeanColour(log=str(log))
        >> SetCaption(template="a photo, mean {mean}")
        >> Save(out, json_sidecar=True)
    )


def cache_rows(ws_path: Path) -> set[tuple]:
    con = sqlite3.connect(ws_path / "captionary.db")
    try:
        return set(con.execute("SELECT key, step, item, props, image, dropped FROM results"))
    finally:
        con.close()


def test_local_and_ray_give_identical_outputs_and_cache(photos, tmp_path):
    summaries = {}
    for executor in ("local", "ray"):
        with Workspace(tmp_path / f"ws-{executor}") as ws:
            summaries[executor] = ws.run(
                pipeline(photos, tmp_path / f"out-{executor}", tmp_path / "setups.log"),
                executor=executor,
                progress=False,
            )
    assert tree(tmp_path / "out-local") == tree(tmp_path / "out-ray")
    assert len(tree(tmp_path / "out-ray")) == 2 * 11 + 11  # 11 images (one breaks the model) + .txt + .json
    assert cache_rows(tmp_path / "ws-local") == cache_rows(tmp_path / "ws-ray")
    for name in ("local", "ray"):
        model = summaries[name].step("t_ray_mean_colour")
        assert (model.computed, model.failed) == (11, 1)
        assert [e["reason"] for e in summaries[name].errors] == ["ValueError: this image breaks the model"]


def test_model_loads_once_per_actor_and_a_cached_rerun_starts_none(photos, tmp_path):
    log = tmp_path / "setups.log"
    with Workspace(tmp_path / "ws") as ws:
        first = ws.run(
            pipeline(photos, tmp_path / "out", log), executor="ray", model_actors=2, progress=False
        )
        loads = log.read_text().count("setup")
        assert 1 <= loads <= 2  # three batches, at most one model per actor
        assert log.read_text().count("teardown") == loads  # every model released when the step was done
        prefetched = [
            int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("prefetch")
        ]
        assert sum(prefetched) == 12  # every batch's inputs prepared in the actor before its model call
        again = ws.run(
            pipeline(photos, tmp_path / "out", log), executor="ray", model_actors=2, progress=False
        )
        runs = ws.query("SELECT executor FROM runs ORDER BY id")
    assert first.step("t_ray_mean_colour").computed == 11
    assert again.step("t_ray_mean_colour").cached == 11
    assert again.step("resize").computed == 0
    assert log.read_text().count("setup") == loads + 1  # cat/04 (failed, so not cached) needs one model
    assert [r[0] for r in runs] == ["ray", "ray"]


def test_killed_driver_resumes_without_recomputing_committed_work(photos, tmp_path):
    pipeline_file = write_project(tmp_path, photos)
    db = tmp_path / "ws" / "captionary.db"
    spec = command(pipeline_file)
    spec["args"] = [*spec["args"], "--executor", "ray"]
    process = subprocess.Popen(**spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: committed_results(db, "t_crash_slow") >= 3, timeout=120)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = committed_results(db, "t_crash_slow")
    assert 3 <= before < 12

    rerun = subprocess.run(**spec, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    with Workspace(tmp_path / "ws") as ws:
        (run,) = ws.query("SELECT id, executor, status FROM runs ORDER BY id DESC LIMIT 1")
        slow = ws.query(
            "SELECT computed, cached FROM run_steps WHERE run = ? AND name = 't_crash_slow'", (run[0],)
        )
    assert run[1:] == ("ray", "completed")
    assert slow == [(12 - before, before)]  # nothing committed is computed again
    check_finished(tmp_path, rerun)


def test_ray_workers_read_blobs_from_the_workspace_url(photos, tmp_path):
    remote = tmp_path / "bucket"
    with Workspace(tmp_path / "ws", blobs=f"file://{remote}") as ws:
        summary = ws.run(
            pipeline(photos, tmp_path / "out", tmp_path / "setups.log"), executor="ray", progress=False
        )
    assert summary.step("resize").computed == 12 and summary.step("t_ray_mean_colour").computed == 11
    assert len([p for p in remote.rglob("*") if p.is_file() and p.parent.name != "tmp"]) == 12


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_the_model_stage_is_fed_while_it_works(photos, tmp_path, executor):
    """While the model works on a batch, the next batch's images are already being prepared (decoded
    and downscaled by `prefetch`): on a GPU, the device does not wait for the CPU between batches."""
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> TOverlap(), executor=executor, progress=False)
        answers = [item.props.get("next_batch_prepared") for item in ws.items()]
    assert summary.step("t_overlap").computed == 12
    assert answers.count(True) == 3 and False not in answers  # the first batch saw the next one coming


def test_work_on_a_dead_worker_is_sent_again_to_its_restarted_actor(photos, tmp_path):
    """A preempted node or an out-of-memory kill loses no work: Ray restarts the actor (the model
    loads again) and the batch in flight runs again there."""
    log, markers = tmp_path / "setups.log", tmp_path / "markers"
    markers.mkdir()
    steps = Load(photos) >> TWorkerDies(die_on="dog/02", marker_dir=str(markers))
    steps = steps >> TModelDies(log=str(log), die_on="cat/01", marker_dir=str(markers))
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(steps, executor="ray", progress=False)
    assert summary.status == "completed" and summary.errors == []
    assert summary.step("t_worker_dies").computed == 12 and summary.step("t_model_dies").computed == 12
    assert log.read_text().count("setup") == 2  # the model loaded again in the restarted actor
    assert sorted(p.name for p in markers.iterdir()) == ["cat_01", "dog_02"]


@pytest.mark.parametrize("one_task", [False, True])
def test_an_item_that_kills_its_worker_every_time_fails_alone_and_the_run_goes_on(
    photos, tmp_path, monkeypatch, one_task
):
    """However the items were cut into tasks, only the poison image fails."""
    if one_task:  # all 12 images in the poison's task
        from captionary.executors.stages import chain

        monkeypatch.setattr(chain, "pool_tasks", lambda misses, spread=1: [misses] if misses else [])
    markers = tmp_path / "markers"
    markers.mkdir()
    steps = Load(photos) >> TWorkerDies(die_on="dog/02", marker_dir=str(markers), always=True)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(steps >> Save(tmp_path / "out"), executor="ray", progress=False)
    assert summary.status == "completed"
    assert [e["source"].split("photos/")[1] for e in summary.errors] == ["dog/02.jpg"]
    assert "the worker process died running this item" in summary.errors[0]["reason"]
    # the items that shared its task (or its actor) were tried again alone, and made it
    assert summary.step("save").computed == 11


def test_a_model_actor_that_is_dead_for_good_is_replaced(photos, tmp_path, monkeypatch):
    from captionary.executors import ray_executor

    monkeypatch.setattr(ray_executor, "MAX_RESTARTS", 0)  # the first death is final
    monkeypatch.setattr(ray_executor, "TASK_RETRIES", 0)
    log, markers = tmp_path / "setups.log", tmp_path / "markers"
    markers.mkdir()
    model = TModelDies(log=str(log), die_on="*", marker_dir=str(markers))  # the first batch kills its actor
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> model, executor="ray", progress=False)
    step = summary.step("t_model_dies")
    assert summary.status == "completed"
    assert {e["reason"].split(" (")[0] for e in summary.errors} == {"the model actor died running this batch"}
    # without retries the batch sharing the dead actor fails too (two batches of 4 at most)
    assert 1 <= step.failed <= 8 and step.computed + step.failed == 12 and step.computed >= 4
    assert log.read_text().count("setup") == 2  # a second actor took over


def test_a_worker_that_cannot_see_the_database_computes_instead_of_looking_up(photos, tmp_path):
    """On another node without a shared file system, a worker has the blobs (at their URL) but not
    the database: it runs its chain without cache lookups, and its results equal the looked-up ones."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from captionary.core.item import Item
    from captionary.executors.worker import init_worker, run_task

    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) >> Resize(max_edge=96) >> Resize(max_edge=48), progress=False)
        items = list(ws.items())
        chain = [Resize(max_edge=96), Resize(max_edge=48)]
        results = {}
        for name, db in (("with the database", ws.db_path), ("without", tmp_path / "elsewhere" / "x.db")):
            with ProcessPoolExecutor(
                1, multiprocessing.get_context("spawn"), init_worker, (ws.blobs.root, db, [chain])
            ) as pool:
                originals = [Item(i.id, i.base, {}, i.source, i.name, None, i.format, i.base) for i in items]
                results[name] = pool.submit(run_task, 0, [(item, 0) for item in originals]).result()
    for (with_db, events_db), (without, events) in zip(results["with the database"], results["without"]):
        assert [e[3] for e in events] == [None, None]  # no errors
        assert [e[4] for e in events_db] == [False, True]  # the second step found in the cache
        assert [e[4] for e in events] == [False, False]  # ... or computed when the database is not there
        assert events[1][2].props == events_db[1][2].props
        assert without.image_hash == with_db.image_hash  # the same derived image (its id names its recipe)


class TSplitModel(TRayMeanColour):
    """The stand-in model, claiming to need `gpus` GPUs per copy (as vLLM with tensor_parallel_size)."""

    name = "t_split_model"
    gpus: int = 2

    def gpus_per_model(self):
        return self.gpus


def test_model_actors_take_the_gpus_one_copy_of_the_model_needs(tmp_path):
    from captionary.errors import ConfigError
    from captionary.executors.ray_executor import model_actor_plan

    one, split = TRayMeanColour(log=str(tmp_path / "log")), TSplitModel(log=str(tmp_path / "log"))
    assert model_actor_plan(one, cluster_gpus=8) == (8, 1.0)  # an actor per GPU
    assert model_actor_plan(split, cluster_gpus=8) == (4, 2.0)  # an actor per pair of GPUs
    assert model_actor_plan(split, cluster_gpus=0) == (1, 0.0)  # no GPUs: one actor, on CPU
    assert model_actor_plan(split, cluster_gpus=8, gpus=1.0, actors=3) == (3, 1.0)  # as given
    with pytest.raises(ConfigError, match="needs 2 GPUs and the cluster has 1"):
        model_actor_plan(split, cluster_gpus=1)
    assert model_actor_plan(split, cluster_gpus=1, gpus=2.0) == (1, 2.0)  # explicit: an autoscaler adds GPUs


def test_fan_out_on_ray_gives_the_local_output(photos, tmp_path):
    """Children made in the driver (crop_boxes) and on a model actor (a batch step that splits), their
    crops replayed on chain actors: the same files and cache rows as the local executor."""
    from captionary import CropBoxes
    from steps_for_fanout import TBatchSplit, TBoxes

    def split(out):
        return (
            Load(photos)
            >> TBoxes()
            >> CropBoxes(padding=0.1)
            >> Resize(max_edge=80)
            >> TBatchSplit()
            >> Resize(max_edge=32)
            >> Save(out, json_sidecar=True)
        )

    summaries = {}
    for executor in ("local", "ray"):
        with Workspace(tmp_path / f"ws-{executor}") as ws:
            summaries[executor] = ws.run(
                split(tmp_path / f"out-{executor}"), executor=executor, progress=False
            )
            again = ws.run(split(tmp_path / f"out-{executor}"), executor=executor, progress=False)
            assert again.computed == 0
    assert summaries["ray"].step("t_batch_split").n_out == 48
    assert tree(tmp_path / "out-local") == tree(tmp_path / "out-ray")
    assert len([p for p in tree(tmp_path / "out-ray") if p.endswith(".jpg")]) == 48
    assert cache_rows(tmp_path / "ws-local") == cache_rows(tmp_path / "ws-ray")
