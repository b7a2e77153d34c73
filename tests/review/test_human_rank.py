"""human_rank through the real stage and server (HTTP, no browser): active pairs never repeat, each
answer is committed before the reply, the run goes on with scores once the budget is spent, and a
re-run ranks from the stored answers without serving the app."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from review_helpers import BackgroundRun, client_for, make_photos

from captionary import HumanRank, Load, Workspace
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
