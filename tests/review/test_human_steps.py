"""Human steps in a real pipeline: decided items stream on while the person works, the step completes
when all are decided, re-runs never ask twice, decisions survive upstream changes."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from review_helpers import BackgroundRun, client_for, make_photos

from captionary import (
    HumanCaption,
    HumanFilter,
    HumanTag,
    Load,
    ParamError,
    Resize,
    Save,
    SetCaption,
    Workspace,
)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def task_items(client, task: str, count: int) -> list[dict]:
    wait_for(lambda: len(client.get(f"/api/tasks/{task}").json()["items"]) == count)
    return client.get(f"/api/tasks/{task}").json()["items"]


def test_decided_items_reach_machine_step_and_sink_before_the_human_finishes(tmp_path):
    photos = make_photos(tmp_path / "photos", 6)
    out = tmp_path / "out"
    pipeline = Load(photos) >> HumanFilter() >> SetCaption(template="sks, {caption}") >> Save(out)
    run = BackgroundRun(tmp_path / "ws", pipeline)
    client = client_for(run.url())
    items = task_items(client, "human_filter", 6)
    for index, item in enumerate(items[:5]):
        value = "reject" if index in (1, 3) else "keep"
        saved = client.put(f"/api/tasks/human_filter/items/{item['id']}", json={"value": value})
        assert saved.json()["saved"]
    kept = [items[0], items[2], items[4]]
    expected = {item["name"] + ".txt" for item in kept}
    wait_for(lambda: {p.name for p in out.rglob("*.txt")} == expected)
    assert run.thread.is_alive()  # the human has not finished: the last item is undecided

    def counted() -> dict[str, int]:  # the app's run line: the sink's count follows its writes
        return {step["name"]: step["out"] for step in client.get("/api/run").json()["steps"]}

    wait_for(lambda: counted() == {"load": 6, "human_filter": 3, "set_caption": 3, "save": 3})
    assert (out / f"{items[0]['name']}.txt").read_text().startswith("sks, caption")

    client.put(f"/api/tasks/human_filter/items/{items[5]['id']}", json={"value": "keep"})
    summary = run.join()
    assert summary.status == "completed"
    human = summary.steps[1]
    assert (human.n_in, human.n_out, human.computed, human.dropped) == (6, 4, 6, 2)
    assert len(list(out.rglob("*.jpg"))) == 4

    rerun = BackgroundRun(tmp_path / "ws", pipeline)  # every item decided: nothing is asked, no server
    summary = rerun.join()
    assert rerun.urls.empty()
    assert (summary.steps[1].cached, summary.steps[1].computed) == (6, 0)


def test_decisions_survive_an_upstream_change_and_tags_and_captions_apply(tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    out = tmp_path / "out"
    tagger = HumanTag(tags=["red", "blue"], free_tags=False)
    pipeline = (
        Load(photos) >> Resize(max_edge=200) >> tagger >> HumanCaption() >> Save(out, json_sidecar=True)
    )
    run = BackgroundRun(tmp_path / "ws", pipeline)
    client = client_for(run.url())
    items = task_items(client, "human_tag", 3)
    bad = client.put(f"/api/tasks/human_tag/items/{items[0]['id']}", json={"value": ["green"]})
    assert bad.status_code == 400 and "green" in bad.json()["detail"]
    for item in items:
        client.put(f"/api/tasks/human_tag/items/{item['id']}", json={"value": ["red"]})
    captions = task_items(client, "human_caption", 3)
    for item in captions:
        client.put(f"/api/tasks/human_caption/items/{item['id']}", json={"value": f"  new {item['name']} "})
    run.join()
    sidecar = json.loads((out / f"{items[0]['name']}.json").read_text())
    assert sidecar["tags"] == ["red"]
    assert (out / f"{items[0]['name']}.txt").read_text().strip() == f"new {items[0]['name']}"

    changed = Load(photos) >> Resize(max_edge=120) >> tagger >> HumanCaption() >> Save(out, json_sidecar=True)
    rerun = BackgroundRun(tmp_path / "ws", changed)
    summary = rerun.join()
    assert rerun.urls.empty()  # a new resize upstream: the decisions (keyed by item id) still hold
    assert [s.cached for s in summary.steps[2:4]] == [3, 3]
    db = sqlite3.connect(tmp_path / "ws" / "captionary.db")
    assert db.execute("SELECT count(*) FROM decisions").fetchone() == (6,)


def test_human_tag_parameters_are_checked_when_built():
    with pytest.raises(ParamError, match=r"human_tag\.tags"):
        HumanTag(tags=[])
    with pytest.raises(ParamError, match="distinct"):
        HumanTag(tags=["a", "a"])


def test_decisions_made_before_the_run_are_used(tmp_path):
    from captionary.review.decisions import DecisionStore

    photos = make_photos(tmp_path / "photos", 2)
    with Workspace(tmp_path / "ws") as ws:
        ids = sorted(ws.run(Load(photos), progress=False) and [i.id for i in ws.items()])
        store = DecisionStore(ws.db_path)
        store.decide("pick", ids[0], "reject")
        store.decide("pick", ids[1], "keep")
        store.close()
        summary = ws.run(Load(photos) >> HumanFilter(task="pick"), progress=False, review={"announce": print})
        assert (summary.steps[1].cached, summary.steps[1].dropped) == (2, 1)
        assert [i.id for i in ws.items()] == [ids[1]]


def test_the_app_shows_the_items_of_the_latest_run(tmp_path):
    from captionary import FilterWhere

    photos = make_photos(tmp_path / "photos", 3)
    first = BackgroundRun(tmp_path / "ws", Load(photos) >> HumanFilter())
    client = client_for(first.url())
    for item in task_items(client, "human_filter", 3):
        client.put(f"/api/tasks/human_filter/items/{item['id']}", json={"value": "keep"})
    first.join()
    make_photos(tmp_path / "more", 5)  # p003 and p004 are new
    for name in ("p003", "p004"):
        (tmp_path / "more" / f"{name}.jpg").rename(photos / f"{name}.jpg")
    upstream = FilterWhere(expr="caption != 'caption 000'")  # p000 no longer reaches the human step
    second = BackgroundRun(tmp_path / "ws", Load(photos) >> upstream >> HumanFilter())
    client = client_for(second.url())
    shown = task_items(client, "human_filter", 4)
    assert [item["name"] for item in shown] == ["p001", "p002", "p003", "p004"]
    [task] = client.get("/api/tasks").json()
    assert (task["total"], task["decided"]) == (4, 2)
    for item in shown[2:]:
        client.put(f"/api/tasks/human_filter/items/{item['id']}", json={"value": "reject"})
    assert second.join().steps[2].dropped == 2


def test_a_stored_decision_the_step_now_refuses_fails_its_item_with_the_reason(tmp_path):
    from captionary.review.decisions import DecisionStore

    photos = make_photos(tmp_path / "photos", 2)
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos), progress=False)
        ids = sorted(item.id for item in ws.items())
        store = DecisionStore(ws.db_path)
        store.decide("tags", ids[0], ["red"])
        store.decide("tags", ids[1], ["sunset"])  # a free tag, allowed when it was given
        store.close()
        step = HumanTag(tags=["red", "blue"], free_tags=False, task="tags")
        summary = ws.run(Load(photos) >> step, progress=False)
    stats = summary.steps[1]
    assert (stats.n_in, stats.cached, stats.failed, stats.n_out) == (2, 1, 1, 1)
    [error] = summary.errors
    assert error["item"] == ids[1] and "bad decision in task 'tags'" in error["reason"]
    assert "sunset" in error["reason"]
