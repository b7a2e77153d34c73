"""Browse pages through a workspace: each answer is bounded, and following `next` reaches every
item exactly once, in name order, with or without a filter (3,000 real images, a real server)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from review_helpers import CHROMIUM, CHROMIUM_ARGS, Served, client_for

from captionary import Load, Workspace
from captionary.review.browse import browse
from captionary.review.decisions import DecisionStore

COUNT = 3000


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """3,000 distinct tiny PNGs in 3 folders, each with a JSON sidecar numbering it."""
    root = tmp_path_factory.mktemp("paging")
    for n in range(COUNT):
        folder = root / "photos" / f"f{n % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (8, 8), (n % 251, n // 251, 7))
        image.save(folder / f"{n:05d}.png")
        (folder / f"{n:05d}.json").write_text(json.dumps({"n": n}))
    with Workspace(root / "ws") as ws:
        summary = ws.run(Load(root / "photos"), progress=False)
    assert summary.step("load").n_out == COUNT
    return root / "ws"


def every_item(ws: Path) -> list[tuple[str, str, int]]:
    """(name, id, n) of every item, straight from the database, in (name, id) order."""
    db = sqlite3.connect(ws / "captionary.db")
    rows = db.execute("SELECT name, item, props FROM item_state ORDER BY name, item").fetchall()
    db.close()
    return [(name, item, json.loads(props)["n"]) for name, item, props in rows]


def walk(get, limit: int) -> tuple[list[dict], list[dict]]:
    """Follow `next` from the first page to the last; (every item seen, every answer)."""
    seen, answers, after = [], [], ""
    while True:
        answer = get({"limit": limit, **({"after": after} if after else {})})
        answers.append(answer)
        seen += answer["items"]
        if answer["next"] is None:
            return seen, answers
        after = json.dumps(answer["next"])


def test_pages_are_bounded_and_reach_every_item_once(workspace):
    expected = every_item(workspace)
    assert len(expected) == COUNT
    with Served(workspace) as served, client_for(served.url) as client:

        def get(params: dict) -> dict:
            response = client.get("/api/browse", params=params)
            assert response.status_code == 200, response.text
            return response.json()

        first = get({})
        assert len(first["items"]) == 500 and first["total"] == COUNT and first["next"] is not None
        seen, answers = walk(get, 250)
        assert all(len(a["items"]) <= 250 for a in answers) and len(answers) == COUNT // 250
        assert [(i["name"], i["id"]) for i in seen] == [(name, item) for name, item, _ in expected]
        assert answers[0]["total"] == COUNT and all(a["total"] is None for a in answers[1:])

        query = "n % 7 == 3"
        seen, answers = walk(lambda p: get({"q": query, **p}), 60)
        wanted = [(name, item) for name, item, n in expected if n % 7 == 3]
        assert [(i["name"], i["id"]) for i in seen] == wanted  # each match once, in order
        assert all(len(a["items"]) <= 60 for a in answers) and len(answers) > len(wanted) // 60
        assert answers[0]["total"] is None  # more pages: the count of matches is not known yet

        one = get({"q": "n == 1234"})
        assert [i["name"] for i in one["items"]] == ["f1/01234"] and one["total"] == 1
        assert one["next"] is None

        bad = client.get("/api/browse", params={"after": "not json"})
        assert bad.status_code == 400 and "not json" in bad.json()["detail"]
        huge = client.get("/api/browse", params={"limit": 1_000_000})
        assert huge.status_code == 400 and "limit" in huge.json()["detail"]


def test_a_filter_looks_at_a_bounded_number_of_rows_per_page(workspace):
    """A filter that matches little answers after `scan` rows with what it found and a cursor."""
    expected = [(name, item) for name, item, n in every_item(workspace) if n >= 2990 or n < 5]
    store = DecisionStore(workspace / "captionary.db", durable=False)
    try:
        seen, answers = walk(lambda p: browse(store, "n >= 2990 or n < 5", scan=400, **_args(p)), 100)
    finally:
        store.close()
    assert [(i["name"], i["id"]) for i in seen] == expected
    assert len(answers) == -(-COUNT // 400)  # every answer looked at 400 rows, the last at the rest
    assert sum(not a["items"] for a in answers) > 0  # some pages found nothing, yet went on


def _args(params: dict) -> dict:
    after = params.get("after")
    return {"limit": params["limit"], "after": tuple(json.loads(after)) if after else None}


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_the_grid_loads_pages_as_it_scrolls(workspace):
    from playwright.sync_api import sync_playwright

    last_name, last_id, _ = every_item(workspace)[-1]
    with Served(workspace) as served, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 800, "height": 600})
        pages: list[str] = []
        page.on("request", lambda r: pages.append(r.url) if "/api/browse?" in r.url else None)
        page.goto(served.url + "#/browse")
        page.wait_for_selector(f"#count:has-text('{COUNT} item(s)')")
        assert len(pages) == 1  # one page is enough to show the top of the grid
        for _ in range(200):  # scroll to the bottom until the last item is drawn
            if page.locator(f'#grid .cell[data-item="{last_id}"]').count():
                break
            page.eval_on_selector("#grid", "grid => { grid.scrollTop = grid.scrollHeight; }")
            page.wait_for_timeout(50)
        assert page.get_attribute(f'#grid .cell[data-item="{last_id}"]', "title") == last_name
        assert len(pages) == COUNT // 500 and page.locator("#grid .cell").count() < 200
        page.fill("#query", "n % 1000 == 999")
        page.wait_for_selector("#count:has-text('3 item(s)')")
        browser.close()
