"""smart_filter on synthetic embeddings with known classes: accuracy, and nothing below the bar applied."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("sklearn")

from captionary import ItemError, Load, Map, ParamError, Workspace
from captionary.review.decisions import DecisionStore
from captionary.steps.scores.smart_filter import SmartFilter

N_PER_CLASS = 120
LABELLED = 20  # per class


class TSmartSynthetic(Map):
    """A known-class embedding per image: class mean +- noise, seeded by the item's name."""

    name: ClassVar[str] = "t_smart_synthetic"
    writes: ClassVar[tuple[str, ...]] = ("emb",)
    reads_image: ClassVar[bool] = False

    def apply(self, item):
        rng = np.random.default_rng(int(hashlib.sha256(item.name.encode()).hexdigest()[:8], 16))
        mean = np.zeros(16, dtype=np.float32)
        mean[0] = 1.0 if item.name.startswith("keep") else -1.0
        return {"emb": (mean + rng.normal(0, 0.9, 16)).astype(np.float32)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """240 distinct tiny images; 20 of each class carry a person's verdict in a .json sidecar."""
    folder = tmp_path_factory.mktemp("synthetic")
    for cls in ("keep", "reject"):
        for i in range(N_PER_CLASS):
            stem = folder / f"{cls}_{i:03d}"
            Image.new("RGB", (4, 4), (i, 7 if cls == "keep" else 200, i * 2 % 256)).save(f"{stem}.png")
            if i < LABELLED:
                stem.with_suffix(".json").write_text(json.dumps({"verdict": cls}))
    return folder


def truth(item_or_name) -> str:
    name = item_or_name if isinstance(item_or_name, str) else item_or_name.name
    return "keep" if name.startswith("keep") else "reject"


def test_confident_predictions_are_accurate_and_the_uncertain_middle_is_left(dataset, ws_path):
    step = SmartFilter(label="verdict", embedding="emb", confidence=0.9)
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(dataset) >> TSmartSynthetic() >> step, progress=False)
        every = list(ws.items(include_dropped=True))
    assert not summary.errors and len(every) == 2 * N_PER_CLASS
    values = {item.name: item["smart_filter"] for item in every}

    human = {n: v for n, v in values.items() if v["by"] == "human"}
    model = {n: v for n, v in values.items() if v["by"] == "model"}
    left = {n: v for n, v in values.items() if v["by"] is None}
    assert len(human) == 2 * LABELLED and all(v["decision"] == truth(n) for n, v in human.items())
    # nothing below the confidence bar is applied; everything at or above it is
    assert all(max(v["p_keep"], 1 - v["p_keep"]) >= 0.9 for v in model.values())
    assert all(max(v["p_keep"], 1 - v["p_keep"]) < 0.9 and v["decision"] is None for v in left.values())
    accuracy = sum(v["decision"] == truth(n) for n, v in model.items()) / len(model)
    print(f"\nsmart_filter: {len(model)} predicted, accuracy {accuracy:.3f}, {len(left)} left for a person")
    assert accuracy >= 0.95
    assert len(model) >= 50 and len(left) >= 5  # overlapping classes: a real uncertain middle

    # the run summary reports the model's cross-validated accuracy on the person's labels, also when cached
    report = summary.step("smart_filter").usage
    assert 0.8 <= report["heldout_accuracy"] <= 1 and 0 < report["heldout_coverage"] < 1
    assert report["heldout_confident_accuracy"] >= report["heldout_accuracy"]
    assert "smart_filter: heldout accuracy 0." in summary.table()
    with Workspace(ws_path) as ws:
        again = ws.run(Load(dataset) >> TSmartSynthetic() >> step, progress=False)
    assert again.step("smart_filter").cached == 2 * N_PER_CLASS and again.step("smart_filter").usage == report

    # rejected items (by the person or the model) are dropped with who decided in the reason
    dropped = {i.name: i["drop_reason"] for i in every if i.get("dropped_by") == "smart_filter"}
    rejected = {n for n, v in values.items() if v["decision"] == "reject"}
    assert set(dropped) == rejected
    assert all(("person" in r) == (values[n]["by"] == "human") for n, r in dropped.items())


def test_without_drop_it_only_scores(dataset, ws_path):
    with Workspace(ws_path) as ws:
        ws.run(
            Load(dataset) >> TSmartSynthetic() >> SmartFilter(label="verdict", embedding="emb", drop=False)
        )
        assert len(ws) == 2 * N_PER_CLASS


def test_decisions_of_a_review_task_are_the_labels_and_a_new_one_recomputes(dataset, ws_path):
    pipeline = Load(dataset) >> TSmartSynthetic() >> SmartFilter(task="pick", embedding="emb", confidence=0.9)
    with Workspace(ws_path) as ws:
        ws.run(Load(dataset), progress=False)
        ids = {item.name: item.id for item in ws.items()}
    store = DecisionStore(ws_path / "captionary.db", durable=False)
    try:
        for name in sorted(ids)[::4]:  # 60 decisions, both classes
            store.decide("pick", ids[name], truth(name))
        with Workspace(ws_path) as ws:
            first = ws.run(pipeline, progress=False)
            values = {i.name: i["smart_filter"] for i in ws.items(include_dropped=True)}
            assert first.step("smart_filter").computed == 2 * N_PER_CLASS and not first.errors
            assert sum(v["by"] == "human" for v in values.values()) == 60
            model = [(n, v) for n, v in values.items() if v["by"] == "model"]
            accuracy = sum(v["decision"] == truth(n) for n, v in model) / len(model)
            print(f"\nsmart_filter from 60 review decisions: {len(model)} predicted, accuracy {accuracy:.3f}")
            assert len(model) >= 10 and accuracy >= 0.9

            assert ws.run(pipeline, progress=False).step("smart_filter").cached == 2 * N_PER_CLASS
            undecided = next(n for n, v in values.items() if v["by"] != "human")
            store.decide("pick", ids[undecided], truth(undecided))
            third = ws.run(pipeline, progress=False)
            assert third.step("smart_filter").computed == 2 * N_PER_CLASS  # a new decision recomputes
            after = {i.name: i["smart_filter"] for i in ws.items(include_dropped=True)}
            assert after[undecided] == {**after[undecided], "by": "human", "decision": truth(undecided)}
    finally:
        store.close()


def test_too_few_labels_fail_every_item_with_the_reason(dataset, ws_path):
    with Workspace(ws_path) as ws:
        summary = ws.run(
            Load(dataset)
            >> TSmartSynthetic()
            >> SmartFilter(label="verdict", embedding="emb", min_per_class=25),
            progress=False,
        )
    assert summary.step("smart_filter").failed == 2 * N_PER_CLASS
    assert (
        "at least 25 decided items of each class; it has 20 keep and 20 reject" in summary.errors[0]["reason"]
    )


def test_parameters_are_checked_when_built():
    with pytest.raises(ParamError, match="either `task` or `label`"):
        SmartFilter()
    with pytest.raises(ParamError, match="confidence"):
        SmartFilter(label="x", confidence=0.4)
    assert issubclass(ItemError, Exception)
