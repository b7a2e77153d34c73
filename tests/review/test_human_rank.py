"""human_rank through the real stage and server (HTTP, no browser): active pairs never repeat, each
answer is committed before the reply, the run goes on with scores once the budget is spent, and a
re-run ranks from the stored answers without serving the app; the learned ranker scores images never
compared; ranking starts while items are still arriving."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from review_helpers import BackgroundRun, client_for, make_photos

from captionary import BatchStep, HumanRank, Load, Map, Workspace
from captionary.errors import ParamError


def comparisons(ws: Path, task: str) -> list[tuple]:
    db = sqlite3.connect(ws / "captionary.db")
    try:
        return db.execute("SELECT a, b, winner FROM comparisons WHERE task = ?", (task,)).fetchall()
    finally:
        db.close()


def answer_by_name(client, task: str, budget: int) -> set[tuple[str, str]]:
    """Answer `budget` pairs as an annotator who prefers the higher photo number; returns the pairs."""
    asked: set[tuple[str, str]] = set()
    for _ in range(budget):
        found = client.get(f"/api/rank/{task}?n=1").json()
        [pair] = found["pairs"]
        left, right = pair["left"], pair["right"]
        key = tuple(sorted((left["id"], right["id"])))
        assert key not in asked, "a pair was asked twice"
        asked.add(key)
        winner = "left" if left["name"] > right["name"] else "right"
        reply = client.put(
            f"/api/rank/{task}/pairs", json={"left": left["id"], "right": right["id"], "winner": winner}
        )
        assert reply.status_code == 200 and reply.json()["saved"]
        assert len(comparisons_for(client, task)) == len(asked)  # committed before the answer came
    return asked


def comparisons_for(client, task: str) -> list:
    return [None] * client.get(f"/api/rank/{task}?n=0").json()["progress"]["comparisons"]


def test_rank_to_budget_then_the_run_goes_on_and_a_rerun_asks_nothing(tmp_path):
    photos = make_photos(tmp_path / "photos", 8)
    pipeline = Load(photos) >> HumanRank(budget=20, target=None)
    run = BackgroundRun(tmp_path / "ws", pipeline)
    with client_for(run.url()) as client:
        assert client.get("/api/tasks").json()[0]["kind"] == "rank"
        bad = client.put("/api/rank/human_rank/pairs", json={"left": "0" * 64, "right": "1" * 64})
        assert bad.status_code == 404
        asked = answer_by_name(client, "human_rank", 20)
    summary = run.join()
    assert summary.steps[1].n_out == 8 and summary.steps[1].computed == 8
    assert len(asked) == len(comparisons(tmp_path / "ws", "human_rank")) == 20
    with Workspace(tmp_path / "ws") as ws:
        items = sorted(ws.items(), key=lambda item: item.name)
        scores = [item["rank_score"] for item in items]
        assert all(item["rank_sigma"] > 0 and item["rank_by"] == "human" for item in items)
    assert scores == sorted(scores), "the fit orders the photos as the annotator did"

    announced = []
    with Workspace(tmp_path / "ws") as ws:  # the budget is spent: the stored answers rank it again
        again = ws.run(pipeline, progress=False, workers=0, review={"port": 0, "announce": announced.append})
        assert [item["rank_score"] for item in sorted(ws.items(), key=lambda i: i.name)] == scores
    assert announced == [] and again.steps[1].cached == 8


def test_undo_forgets_an_answer_and_the_pair_can_be_asked_again(tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    run = BackgroundRun(tmp_path / "ws", Load(photos) >> HumanRank(budget=2, target=None))
    with client_for(run.url()) as client:
        [pair] = client.get("/api/rank/human_rank?n=1").json()["pairs"]
        ids = {"left": pair["left"]["id"], "right": pair["right"]["id"]}
        client.put("/api/rank/human_rank/pairs", json={**ids, "winner": None})
        assert len(comparisons(tmp_path / "ws", "human_rank")) == 1
        pending = f"{ids['left']}:{ids['right']}"
        others = client.get(f"/api/rank/human_rank?n=3&pending={pending}").json()["pairs"]
        assert len(others) == 2 and all(
            {p["left"]["id"], p["right"]["id"]} != set(ids.values()) for p in others
        )
        assert client.delete(f"/api/rank/human_rank/pairs/{ids['left']}/{ids['right']}").json()["removed"]
        assert comparisons(tmp_path / "ws", "human_rank") == []
        everything = client.get("/api/rank/human_rank?n=3").json()["pairs"]
        assert len(everything) == 3  # the undone pair is askable again
        for p in everything[:2]:
            client.put(
                "/api/rank/human_rank/pairs",
                json={"left": p["left"]["id"], "right": p["right"]["id"], "winner": "left"},
            )
    run.join()


def test_bad_parameters_are_refused():
    with pytest.raises(ParamError, match="budget"):
        HumanRank(budget=0)
    with pytest.raises(ParamError, match="target"):
        HumanRank(target=1.5)


class TMeanColour(Map):
    """A 3-d embedding: the photo's mean red, green and blue shares, centred and scaled (a plumbing
    test: the learned ranker's quality on real photos is tests/quality/test_ranking.py's)."""

    name: ClassVar[str] = "t_mean_colour"
    writes: ClassVar[tuple[str, ...]] = ("colour",)

    def apply(self, item):
        mean = np.asarray(item.image.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0)
        return {"colour": (mean / mean.sum() - 1 / 3) * 10}


def make_red_photos(folder: Path, count: int) -> Path:
    """`count` JPEGs whose red share differs from photo to photo by at least 0.03 while green and
    blue stay equal (a texture on top), in a shuffled order: a colour embedding then lies along one
    line, so a ranker that learned "redder wins" from a few answers orders every photo the same way,
    those never shown included. (With the shared gradients of `make_photos`, some photos' red shares
    lay within 0.01 of each other and their order among the unseen was a coin toss.)"""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    order = np.random.default_rng(7).permutation(count)
    for index, rank in enumerate(order):
        red = 60 + int(rank) * 16
        image = Image.new("RGB", (160, 120), (red, 110, 110))
        ImageDraw.Draw(image).text((10, 10), f"photo {index:03d}", fill=(128, 128, 128))
        image.save(folder / f"p{index:03d}.jpg", quality=95)
    return folder


def test_the_learned_ranker_scores_photos_never_compared(tmp_path):
    from captionary.core.ranking import kendall_tau

    photos = make_red_photos(tmp_path / "photos", 12)
    step = HumanRank(budget=5, target=None, embedding="colour")
    run = BackgroundRun(tmp_path / "ws", Load(photos) >> TMeanColour() >> step)
    redness = {}
    with client_for(run.url()) as client:
        for _ in range(5):  # an annotator who prefers red photos
            [pair] = client.get("/api/rank/human_rank?n=1").json()["pairs"]
            for side in ("left", "right"):
                redness[pair[side]["id"]] = red_share(photos / f"{pair[side]['name']}.jpg")
            winner = "left" if redness[pair["left"]["id"]] > redness[pair["right"]["id"]] else "right"
            client.put(
                "/api/rank/human_rank/pairs",
                json={"left": pair["left"]["id"], "right": pair["right"]["id"], "winner": winner},
            )
    run.join()
    with Workspace(tmp_path / "ws") as ws:
        items = list(ws.items())
    unseen = [item for item in items if item["rank_by"] == "model"]
    assert len(unseen) >= 2 and all(item.id not in redness for item in unseen)
    assert {item["rank_by"] for item in items} == {"human", "model"}
    truth = np.array([red_share(photos / f"{item.name}.jpg") for item in items])
    scores = np.array([item["rank_score"] for item in items])
    assert kendall_tau(scores, truth) > 0.6  # the model ranks by redness, shown or not
    hidden = [k for k, item in enumerate(items) if item["rank_by"] == "model"]
    assert kendall_tau(scores[hidden], truth[hidden]) > 0.6


def red_share(path: Path) -> float:
    from PIL import Image

    with Image.open(path) as image:
        mean = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return float(mean[0] / mean.sum())


def test_the_readme_ranking_examples_are_valid_pipelines(tmp_path):
    import re

    from captionary import parse_pipeline

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Ranking by pairs") :]
    section = re.split(r"\n##+ ", section[1:], maxsplit=1)[0]
    rank, tags = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    (tmp_path / "photos").mkdir()
    steps = parse_pipeline("workspace: ws\n" + rank, base=tmp_path).pipeline.steps
    assert [s.name for s in steps] == ["load", "clip_embed", "human_rank", "take", "save"]
    snippet = "workspace: ws\nsteps:\n  - load: {path: photos}\n" + tags
    steps = parse_pipeline(snippet, base=tmp_path).pipeline.steps
    assert [s.name for s in steps] == ["load", "clip_embed", "smart_tag", "human_tag"]


GATE = threading.Event()


class TGatedBatch(BatchStep):
    """Lets its first batch through at once and the others only when the test opens GATE."""

    name: ClassVar[str] = "t_gated_batch"
    reads_image: ClassVar[bool] = False
    writes: ClassVar[tuple[str, ...]] = ("gated",)

    batch_size: int = 2

    def apply_batch(self, items):
        if any(item.name != "p000" and item.name != "p001" for item in items):
            assert GATE.wait(60), "the test never opened the gate"
        return [{"gated": True} for _ in items]


def test_ranking_starts_while_items_are_still_arriving(tmp_path):
    GATE.clear()
    photos = make_photos(tmp_path / "photos", 6)
    run = BackgroundRun(tmp_path / "ws", Load(photos) >> TGatedBatch() >> HumanRank(budget=3, target=None))
    try:
        with client_for(run.url()) as client:  # served with 2 of the 6 images in: the rest wait upstream
            found = client.get("/api/rank/human_rank?n=3").json()
            assert found["items"] == 2 and len(found["pairs"]) == 1
            [pair] = found["pairs"]
            assert {pair["left"]["name"], pair["right"]["name"]} == {"p000", "p001"}
            ids = {"left": pair["left"]["id"], "right": pair["right"]["id"]}
            client.put("/api/rank/human_rank/pairs", json={**ids, "winner": "right"})
            GATE.set()
            deadline = time.monotonic() + 30
            while client.get("/api/rank/human_rank?n=0").json()["items"] < 6:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            for _ in range(2):
                [pair] = client.get("/api/rank/human_rank?n=1").json()["pairs"]
                ids = {"left": pair["left"]["id"], "right": pair["right"]["id"]}
                client.put("/api/rank/human_rank/pairs", json={**ids, "winner": "left"})
    finally:
        GATE.set()
    summary = run.join()
    assert summary.step("human_rank").n_out == 6
