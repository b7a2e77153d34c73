"""Steps the Ray tests send to Ray workers (importable there through PYTHONPATH)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from PIL import ImageStat

from captionary import BatchStep, Map
from captionary.pipeline.step import Runtime


class TRayMeanColour(BatchStep):
    """A stand-in model: the mean colour of each image; every setup is logged to a file."""

    name: ClassVar[str] = "t_ray_mean_colour"
    writes: ClassVar[tuple[str, ...]] = ("mean",)

    log: str
    batch_size: int = 4

    def setup(self) -> None:
        with Path(self.log).open("a") as f:
            f.write("setup\n")

    def teardown(self) -> None:
        with Path(self.log).open("a") as f:
            f.write("teardown\n")

    def prefetch(self, items) -> None:
        with Path(self.log).open("a") as f:
            f.write(f"prefetch {len(items)}\n")

    def apply_batch(self, items):
        out = []
        for item in items:
            if item.name == "cat/04":
                raise ValueError("this image breaks the model")
            mean = ImageStat.Stat(item.image.convert("RGB").resize((8, 8))).mean
            out.append({"mean": [round(value, 3) for value in mean]})
        return out


@dataclass
class _Feed(Runtime):
    prefetched: int = 0
    computed: int = 0
    more: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class TOverlap(BatchStep):
    """A stand-in model that checks it is fed: while it works on its first batch, the next batch's
    inputs must be getting prepared (`prefetch` called for it). It waits up to `wait` seconds for that
    and writes the answer into that batch's items; a serial stage would make it wait in vain."""

    name: ClassVar[str] = "t_overlap"
    writes: ClassVar[tuple[str, ...]] = ("next_batch_prepared",)
    runtime_type: ClassVar[type[Runtime]] = _Feed  # prefetch (driver or actor thread) may come first

    batch_size: int = 3
    wait: float = 30.0

    def prefetch(self, items) -> None:
        state = self.runtime
        with state.lock:
            state.prefetched += 1
            if state.prefetched >= 2:
                state.more.set()

    def apply_batch(self, items):
        state = self.runtime
        with state.lock:
            state.computed += 1
            first = state.computed == 1
        if not first:
            return [{} for _ in items]
        prepared = state.more.wait(self.wait)
        return [{"next_batch_prepared": prepared} for _ in items]


def _die_here(marker_dir: str, name: str, always: bool) -> None:
    """Kill this process as a lost node or an out-of-memory kill would: once per item, or every time."""
    marker = Path(marker_dir) / name.replace("/", "_")
    if always or not marker.exists():
        marker.touch()
        os._exit(1)


class TWorkerDies(Map):
    """An image step whose process dies on the item named `die_on`."""

    name: ClassVar[str] = "t_worker_dies"
    parallel: ClassVar[bool] = True
    writes: ClassVar[tuple[str, ...]] = ("survived",)

    die_on: str
    marker_dir: str
    always: bool = False

    def apply(self, item):
        if item.name == self.die_on:
            _die_here(self.marker_dir, item.name, self.always)
        return {"survived": True}


class TModelDies(TRayMeanColour):
    """The stand-in model, whose process dies on a batch holding the item named `die_on` ("*": on the
    first batch any actor runs)."""

    name: ClassVar[str] = "t_model_dies"

    die_on: str = ""
    marker_dir: str = ""
    always: bool = False

    def apply_batch(self, items):
        if self.die_on == "*":
            _die_here(self.marker_dir, "first batch", self.always)
        for item in items:
            if item.name == self.die_on:
                _die_here(self.marker_dir, item.name, self.always)
        return [{"mean": [0.0, 0.0, 0.0]} for _ in items]
