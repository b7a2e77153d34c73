"""The worker processes start while a source reads its new files, not when the first items reach the
chain; a run with nothing new to read starts none."""

from __future__ import annotations

from captionary import Load, Resize, Save, Workspace
from captionary.executors import local


def test_workers_start_while_the_source_reads_and_never_for_a_cached_run(photos, tmp_path, monkeypatch):
    started: list[int] = []  # items the chain had received when the pool started
    pushed = [0]
    real_call = local.LazyPool.__call__
    real_push = local.ChainStage.push

    def call(pool):
        if pool._pool is None:
            started.append(pushed[0])
        return real_call(pool)

    def push(stage, items):
        pushed[0] += len(items)
        return real_push(stage, items)

    monkeypatch.setattr(local.LazyPool, "__call__", call)
    monkeypatch.setattr(local.ChainStage, "push", push)
    pipeline = Load(photos) >> Resize(max_edge=32) >> Save(tmp_path / "out")
    with Workspace(tmp_path / "ws") as ws:
        first = ws.run(pipeline, progress=False, workers=2)
        assert first.step("resize").computed == 12
        assert started == [0]  # before any item reached the chain
        again = ws.run(pipeline, progress=False, workers=2)
    assert again.computed == 0 and started == [0]  # the cached run started no pool
