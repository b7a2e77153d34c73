"""A detector split on the Ray executor gives what the local executor gives: the same files and the
same cache rows (children and grandchildren made on a model actor, cropped in the chain actors)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_split_steps import fixed_detector

from captionary import Load, Resize, Save, ThreeStageSplit, Workspace
from conftest import REPO, tree

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    tests = Path(__file__).parent
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent), str(REPO / "src")])}
        },
    )
    yield
    ray.shutdown()


def test_three_stage_split_on_ray_matches_local(photos, tmp_path):
    for extra in ("cat", "duck_toy", "teapot"):  # the five dog photos are enough
        shutil.rmtree(photos / extra)
    split = ThreeStageSplit(
        person=fixed_detector(tmp_path / "p.onnx", [0.2, 0.2, 0.8, 0.8]),
        halfbody=fixed_detector(tmp_path / "h.onnx", [0.0, 0.0, 1.0, 0.5], "halfbody"),
        head=fixed_detector(tmp_path / "d.onnx", [0.25, 0.0, 0.75, 0.5], "head"),
        resize="stretch",
        min_size=8,
    )
    for executor in ("local", "ray"):
        pipeline = Load(photos) >> split >> Resize(max_edge=64) >> Save(tmp_path / f"out-{executor}")
        with Workspace(tmp_path / f"ws-{executor}") as ws:
            summary = ws.run(pipeline, executor=executor, progress=False)
        assert summary.step("three_stage_split").n_out == 15, executor
    assert tree(tmp_path / "out-local") == tree(tmp_path / "out-ray")
    assert len(list((tmp_path / "out-ray").rglob("*.jpg"))) == 15
    assert rows(tmp_path / "ws-local") == rows(tmp_path / "ws-ray")


def rows(ws_path: Path) -> set[tuple]:
    con = sqlite3.connect(ws_path / "captionary.db")
    try:
        return set(con.execute("SELECT key, step, item, props, image, dropped, children FROM results"))
    finally:
        con.close()
