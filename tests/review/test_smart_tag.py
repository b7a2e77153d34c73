"""smart_tag on synthetic embeddings with known tags: confident tags are right, the uncertain go to the
person (a human_tag with ask_if asks about exactly those), and the held-out accuracy is in the summary."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("sklearn")

from review_helpers import BackgroundRun, client_for

from captionary import HumanTag, Load, Map, ParamError, SmartTag, Workspace
from captionary.review.decisions import DecisionStore

TAGS = ("red", "round")


def true_tags(name: str) -> list[str]:
    number = int(name.rsplit("_", 1)[1])
    return [tag for bit, tag in enumerate(TAGS) if number >> bit & 1]


class TTagSynthetic(Map):
    """An embedding whose first two dimensions say the item's true tags, plus noise (seeded by name)."""

    name: ClassVar[str] = "t_tag_synthetic"
    writes: ClassVar[tuple[str, ...]] = ("emb",)
    reads_image: ClassVar[bool] = False

    def apply(self, item):
        rng = np.random.default_rng(int(hashlib.sha256(item.name.encode()).hexdigest()[:8], 16))
        mean = np.zeros(12, dtype=np.float32)
        for k, tag in enumerate(TAGS):
            mean[k] = 1.0 if tag in true_tags(item.name) else -1.0
        return {"emb": (mean + rng.normal(0, 0.5, 12)).astype(np.float32)}


@pytest.fixture()
def dataset(tmp_path) -> Path:
    folder = tmp_path / "synthetic"
    folder.mkdir()
    for i in range(160):
        Image.new("RGB", (4, 4), (i, (i * 7) % 256, 90)).save(folder / f"img_{i:03d}.png")
    return folder


def test_confident_tags_are_applied_and_only_the_uncertain_are_asked(dataset, tmp_path):
    ws_path = tmp_path / "ws"
    with Workspace(ws_path) as ws:  # what the person tagged earlier: 40 items
        ws.run(Load(dataset) >> TTagSynthetic(), progress=False, workers=0)
        tagged = {item.id: true_tags(item.name) for item in sorted(ws.items(), key=lambda i: i.name)[:40]}
    store = DecisionStore(ws_path / "captionary.db")
    for item, tags in tagged.items():
        store.decide("human_tag", item, tags)
    store.close()

    pipeline = (
        Load(dataset)
        >> TTagSynthetic()
        >> SmartTag(task="human_tag", embedding="emb", confidence=0.9)
        >> HumanTag(tags=list(TAGS), task="uncertain_tags", ask_if="tags_uncertain")
    )
    run = BackgroundRun(ws_path, pipeline)
    with client_for(run.url()) as client:
        asked = client.get("/api/tasks/uncertain_tags").json()["items"]
        for item in asked:  # the person settles the uncertain ones
            client.put(
                f"/api/tasks/uncertain_tags/items/{item['id']}", json={"value": true_tags(item["name"])}
            )
    summary = run.join()
    with Workspace(ws_path) as ws:
        items = list(ws.items())
    calls = {item.name: item["smart_tag"] for item in items}
    by_model = [item for item in items if calls[item.name]["by"] == "model"]
    uncertain = {item.name for item in items if calls[item.name]["uncertain"]}
    assert {item["name"] for item in asked} == uncertain and len(uncertain) >= 3  # exactly those were asked
    assert sum(calls[n]["by"] == "human" for n in calls) == 40
    right = sum(sorted(item["tags"]) == true_tags(item.name) for item in by_model) / len(by_model)
    print(
        f"\nsmart_tag: {len(by_model)} tagged by the model, {right:.3f} exactly right, {len(uncertain)} asked"
    )
    assert len(by_model) >= 30 and right >= 0.9  # 43 at 0.977 here: 40 labels leave many unsure
    assert all(calls[item.name]["confidence"] >= 0.9 for item in by_model)
    assert all(sorted(item["tags"]) == true_tags(item.name) for item in items if item.name in uncertain)
    report = summary.step("smart_tag").usage
    assert 0.8 <= report["heldout_accuracy"] <= 1 and "heldout_exact" in report


def test_smart_tag_needs_enough_examples_of_a_tag(dataset, tmp_path):
    from captionary import ItemError  # noqa: F401  (the failure is the items' error)

    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(
            Load(dataset) >> TTagSynthetic() >> SmartTag(task="nothing_yet", embedding="emb"),
            progress=False,
            workers=0,
        )
    assert summary.step("smart_tag").failed == 160
    assert "no tag of task 'nothing_yet'" in summary.errors[0]["reason"]
    with pytest.raises(ParamError, match="confidence"):
        SmartTag(task="x", confidence=0.4)
