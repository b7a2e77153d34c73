"""The model-step bases: `Step.runtime` (never pickled, never in a cache key), `ModelStep` (loaded once,
a load failure with every item) and `ImageBatchStep` (the next batch decoded ahead, in threads, at the
step's draft scale)."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from PIL import ImageStat

from captionary import ImageBatchStep, ItemError, Load, ModelStep, Runtime, Workspace
from captionary.core.item import Item

LOADS: list[str] = []


class TModelCounter(ModelStep):
    """A stand-in model: counts its loads; `fail` makes loading raise."""

    name: ClassVar[str] = "t_model_counter"
    writes: ClassVar[tuple[str, ...]] = ("model_calls",)
    reads_image: ClassVar[bool] = False

    fail: bool = False
    batch_size: int = 4

    def load_model(self) -> dict[str, int]:
        LOADS.append(self.name)
        if self.fail:
            raise FileNotFoundError("weights.onnx")
        return {"calls": 0}

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        model = self.loaded()
        model["calls"] += 1
        return [{"model_calls": model["calls"]} for _ in items]


@dataclass
class _Seen(Runtime):
    decoded_sizes: list[tuple[int, int]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)


class TMeanRed(ImageBatchStep):
    """The mean red value of each image, decoded at a quarter of its size (a JPEG draft)."""

    name: ClassVar[str] = "t_mean_red"
    writes: ClassVar[tuple[str, ...]] = ("red",)

    batch_size: int = 4

    def load_model(self) -> str:
        return "model"

    def draft_scale(self, width: int, height: int) -> float:
        return 0.25

    def prepare(self, image: Any, item: Item) -> float:
        SEEN.decoded_sizes.append(image.size)
        SEEN.threads.add(threading.current_thread().name)
        return ImageStat.Stat(image.convert("RGB")).mean[0]

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        assert self.loaded() == "model"
        return [{"red": round(value, 3)} for value in self.inputs(items)]


SEEN = _Seen()


def test_runtime_is_not_pickled_nor_a_parameter_nor_in_the_cache_key():
    step = TModelCounter()
    prefix = step.cache_prefix
    step.setup()
    assert step.runtime.ready and step.runtime.model == {"calls": 0}
    assert "runtime" not in step.params and "_runtime" not in step.recipe_json
    copy = pickle.loads(pickle.dumps(step))  # as sent to a Ray actor or a pool process
    assert not copy.runtime.ready and copy.runtime.model is None
    assert copy.cache_prefix == prefix == TModelCounter().cache_prefix
    assert step.runtime.ready  # the original keeps its model


def test_the_model_loads_once_when_many_threads_ask_at_once():
    LOADS.clear()
    step = TModelCounter()
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        step.loaded()

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert LOADS == ["t_model_counter"]
    step.teardown()
    assert not step.runtime.ready  # torn down: the next run loads again
    step.setup()
    assert LOADS == ["t_model_counter"] * 2


def test_a_load_failure_is_tried_once_and_fails_every_item_of_the_run(photos, ws_path):
    LOADS.clear()
    step = TModelCounter(fail=True)
    step.setup()  # does not raise: remembered
    for _ in range(2):
        with pytest.raises(ItemError, match=r"t_model_counter: cannot load the model: FileNotFoundError"):
            step.compute_batch([Item("a" * 64, name="x")])
    assert LOADS == ["t_model_counter"]
    step.teardown()
    with Workspace(ws_path) as ws:
        first = ws.run(Load(photos) >> TModelCounter(fail=True), progress=False)
        again = ws.run(Load(photos) >> TModelCounter(fail=True), progress=False)
    assert (first.step("t_model_counter").failed, first.status) == (12, "completed")
    assert {e["reason"] for e in first.errors} == {
        "t_model_counter: cannot load the model: FileNotFoundError: weights.onnx"
    }
    assert again.step("t_model_counter").failed == 12  # failures are not cached: the next run tries again


def test_images_are_decoded_ahead_in_threads_at_the_draft_scale(photos, ws_path):
    SEEN.decoded_sizes.clear()
    SEEN.threads.clear()
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> TMeanRed(), progress=False)
        items = list(ws.items())
    assert summary.step("t_mean_red").computed == 12
    full = sorted((item.width, item.height) for item in items)
    # a JPEG drafted to 1/4 decodes at ceil(size / 4) (DCT scaling), never at full size
    assert sorted(SEEN.decoded_sizes) == sorted(((w + 3) // 4, (h + 3) // 4) for w, h in full)
    assert SEEN.threads and all(name.startswith("captionary-t_mean_red-decode") for name in SEEN.threads)
    assert all(0 <= item["red"] <= 255 for item in items)


def test_inputs_prefetched_for_a_batch_that_failed_are_dropped(photos, ws_path):
    class Broken(TMeanRed):
        def load_model(self) -> str:
            raise OSError("no device")

    with Workspace(ws_path) as ws:
        ws.run(Load(photos), progress=False)
        items = list(ws.items())[:4]
    step = Broken()
    step.prefetch(items)
    assert len(step.runtime.queued) == 4
    with pytest.raises(ItemError, match="cannot load the model: OSError: no device"):
        step.compute_batch(items)
    assert step.runtime.queued == {}
    pool = step.runtime.pool
    step.teardown()
    assert pool._shutdown and step.runtime.pool is None


def test_a_step_that_reads_no_pixels_prefetches_nothing(photos, ws_path):
    class NoPixels(TMeanRed):
        reads_image: ClassVar[bool] = False

    with Workspace(ws_path) as ws:
        ws.run(Load(photos), progress=False)
        items = list(ws.items())[:2]
    step = NoPixels()
    step.prefetch(items)
    assert step.runtime.queued == {} and step.runtime.pool is None


def test_a_parameter_may_not_hide_a_model_step_method():
    with pytest.raises(TypeError, match=r"\['inputs'\] would hide Step attributes"):

        class Hiding(ImageBatchStep):
            inputs: int = 1
