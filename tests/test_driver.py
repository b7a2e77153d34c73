"""The driver and stage contract: no item is ever lost between stages."""

from __future__ import annotations

import random
from concurrent.futures import Future

from PIL import Image

from captionary import Load, Resize, Save, Workspace
from captionary.executors.stages.base import Stage


class FinishesWhileLookedAt(Future):
    """A future that completes between two looks at it (as a pool future can)."""

    def __init__(self, value):
        super().__init__()
        self.value = value
        self.looks = 0

    def done(self) -> bool:
        self.looks += 1
        if self.looks == 2 and not super().done():
            self.set_result(self.value)
        return super().done()


class Passthrough(Stage):
    def collect(self, result):
        return [result]


def test_a_future_finishing_during_poll_is_not_lost():
    stage = Passthrough()
    finished = Future()
    finished.set_result("first")
    stage.futures = [finished, FinishesWhileLookedAt("second")]
    collected = stage.poll() + stage.poll()
    assert collected == ["first", "second"]
    assert stage.futures == []


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
