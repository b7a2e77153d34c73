"""Batch and global steps through the executor; progress output; optional dependencies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pytest

from captionary import BatchStep, ConfigError, GlobalStep, Load, Outcome, Take, Workspace
from captionary.core.optional import require

CALLS: list[str] = []


class TKindsSizeClass(BatchStep):
    """Labels each image; raises for one photo to show that a bad item fails alone."""

    name: ClassVar[str] = "t_kinds_size_class"
    writes: ClassVar[tuple[str, ...]] = ("size_class",)
    batch_size: int = 4
    poison: str = "cat/01"

    def setup(self) -> None:
        CALLS.append("setup")

    def teardown(self) -> None:
        CALLS.append("teardown")

    def apply_batch(self, items):
        CALLS.append(f"batch:{len(items)}")
        if any(item.name == self.poison for item in items):
            raise RuntimeError(f"cannot label {self.poison}")
        return [{"size_class": "large" if item.width >= 512 else "small"} for item in items]


class TKindsBroken(GlobalStep):
    name: ClassVar[str] = "t_kinds_broken"

    def apply_all(self, items: Sequence) -> list[Outcome]:
        raise ValueError("no statistics today")


class TKindsNoModel(BatchStep):
    name: ClassVar[str] = "t_kinds_no_model"
    writes: ClassVar[tuple[str, ...]] = ("label",)
    batch_size: int = 5

    def setup(self) -> None:
        raise FileNotFoundError("weights.safetensors")

    def teardown(self) -> None:
        raise AttributeError("nothing was loaded")

    def apply_batch(self, items):
        raise AssertionError("never called without a model")


EVENTS: list[str] = []


class TKindsGpuModel(BatchStep):
    """Pretends to hold a GPU model: logs when it loads, computes and releases."""

    name: ClassVar[str] = "t_kinds_gpu_model"
    writes: ClassVar[tuple[str, ...]] = ("labels",)
    reads: ClassVar[tuple[str, ...]] = ("labels",)
    label: str
    batch_size: int = 3

    def accelerator(self) -> str | None:
        return "cuda:0"

    def setup(self) -> None:
        EVENTS.append(f"load {self.label}")

    def teardown(self) -> None:
        EVENTS.append(f"release {self.label}")

    def apply_batch(self, items):
        EVENTS.append(f"batch {self.label}")
        return [{"labels": [*item.get("labels", []), self.label]} for item in items]


def test_two_gpu_steps_in_a_row_never_hold_two_models(photos, ws_path):
    EVENTS.clear()
    with Workspace(ws_path) as ws:
        summary = ws.run(
            Load(photos) >> TKindsGpuModel(label="a") >> TKindsGpuModel(label="b"), progress=False
        )
        labels = {tuple(item["labels"]) for item in ws.items()}
    assert summary.step("t_kinds_gpu_model").computed == summary.step("t_kinds_gpu_model#2").computed == 12
    assert labels == {("a", "b")}
    assert EVENTS.index("release a") < EVENTS.index("load b")  # b waited for a's model to go
    assert EVENTS.count("load a") == EVENTS.count("load b") == 1


def test_a_model_that_fails_to_load_fails_every_item_with_the_reason(photos, ws_path):
    with Workspace(ws_path) as ws:
        first = ws.run(Load(photos) >> TKindsNoModel(), progress=False)
        again = ws.run(Load(photos) >> TKindsNoModel(), progress=False)
    assert (first.step("t_kinds_no_model").failed, first.status) == (12, "completed")
    assert {e["reason"] for e in first.errors} == {
        "t_kinds_no_model could not load its model: FileNotFoundError: weights.safetensors"
    }
    assert again.step("t_kinds_no_model").failed == 12  # not cached: the next run tries again


def test_batch_step_batches_isolates_a_bad_item_and_loads_once(photos, ws_path):
    CALLS.clear()
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> TKindsSizeClass(), progress=False)
        items = {item.name: item for item in ws.items()}
    assert CALLS[0] == "setup" and CALLS[-1] == "teardown"
    assert CALLS.count("setup") == 1 and CALLS.count("teardown") == 1
    batches = [int(c.split(":")[1]) for c in CALLS if c.startswith("batch:")]
    assert max(batches) == 4  # batch_size respected
    stats = summary.step("t_kinds_size_class")
    assert (stats.computed, stats.failed, stats.n_out) == (11, 1, 11)
    [error] = summary.errors
    assert error["step"] == "t_kinds_size_class" and "cannot label cat/01" in error["reason"]
    assert items["duck_toy/01"]["size_class"] == "small"
    assert items["dog/00"]["size_class"] == "large"

    CALLS.clear()
    with Workspace(ws_path) as ws:
        again = ws.run(Load(photos) >> TKindsSizeClass(), progress=False)
    assert again.step("t_kinds_size_class").cached == 11
    assert again.step("t_kinds_size_class").failed == 1  # failures are retried, not cached
    assert CALLS.count("setup") == 1  # the model is loaded only because one item needs computing


def test_global_step_sees_every_item_in_a_stable_order_and_is_cached(photos, ws_path):
    with Workspace(ws_path) as ws:
        first = ws.run(Load(photos) >> Take(n=5), progress=False)
        kept = sorted(item.name for item in ws.items())
        second = ws.run(Load(photos) >> Take(n=5), progress=False)
        dropped = [i for i in ws.items(include_dropped=True) if i.get("dropped_by") == "take"]
    assert kept == ["cat/00", "cat/01", "cat/04", "dog/00", "dog/01"]  # first 5 by source path
    assert (first.step("take").computed, first.step("take").dropped) == (12, 7)
    assert (second.step("take").computed, second.step("take").cached) == (0, 12)
    assert {d["drop_reason"] for d in dropped} == {"beyond the first 5"}


def test_global_step_failure_is_recorded_for_every_item(photos, ws_path):
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> TKindsBroken(), progress=False)
    assert summary.step("t_kinds_broken").failed == 12
    assert {e["reason"] for e in summary.errors} == {"ValueError: no statistics today"}


def test_progress_is_plain_log_lines_when_not_a_terminal(photos, ws_path, capsys):
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Take(n=3), progress=True)
    err = capsys.readouterr().err
    assert "[captionary] load: in 12, computed 12, cached 0" in err
    assert "[captionary] take: in 12, computed 12, cached 0, dropped 9" in err
    assert "\r" not in err  # no progress-bar redraws in a log


def test_missing_optional_dependency_names_the_install_line():
    assert require("json", "test").dumps([1]) == "[1]"
    with pytest.raises(ConfigError, match=r"pip install 'captionary\[vllm\]'"):
        require("surely_not_installed_module", "vllm", package="vllm")
