"""human_rank in Debian's Chromium (Playwright, headless) against a running pipeline: 20 pairs ranked
by keyboard on a desktop and by swipes on a phone, one undone, a reload between; every answer stored,
no pair shown twice, and the run goes on with scores once the budget is spent. And the browse view
filtered by who made the learned calls, with the model's confidence."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import ClassVar

import pytest
from review_helpers import CHROMIUM, CHROMIUM_ARGS, BackgroundRun, Served, make_photos

from captionary import HumanRank, Load, Map, Save, Workspace

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def stored(ws: Path) -> dict[tuple[str, str], str | None]:
    db = sqlite3.connect(ws / "captionary.db")
    try:
        rows = db.execute("SELECT a, b, winner FROM comparisons WHERE task = 'human_rank'").fetchall()
    finally:
        db.close()
    return {(a, b): winner for a, b, winner in rows}


def next_pair(page, previous: str) -> tuple[str, str]:
    """Wait until a pair other than `previous` is on screen, its two images drawn; (left, right)."""
    page.wait_for_function(
        "prev => { const p = document.querySelector('#pair');"
        " return p && p.dataset.pair && p.dataset.pair !== prev"
        " && p.querySelectorAll('img.current').length === 2; }",
        arg=previous,
        timeout=15000,
    )
    left, right = page.get_attribute("#pair", "data-pair").split(":")
    return left, right


def all_saved(page, acked: int) -> None:
    page.wait_for_selector(f'#save-status[data-pending="0"][data-acked="{acked}"]', timeout=15000)


def expect(answers: dict, left: str, right: str, winner: str | None) -> None:
    a, b = sorted((left, right))
    answers[(a, b)] = None if winner is None else left if winner == "left" else right


def test_rank_20_pairs_by_keyboard_and_swipe_with_undo_and_reload(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 8, size=(600, 400))
    out = tmp_path / "out"
    run = BackgroundRun(tmp_path / "ws", Load(photos) >> HumanRank(budget=20, target=None) >> Save(out))
    url = run.url()
    assert url.endswith("#/task/human_rank")  # the app sends a rank task to its own screen
    answers: dict[tuple[str, str], str | None] = {}

    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(url)
    page.wait_for_selector("section.rank")
    keys = {"a": "left", "ArrowLeft": "left", "d": "right", "ArrowRight": "right", "s": None}
    shown = ""
    for index in range(12):
        left, right = next_pair(page, shown)
        shown = f"{left}:{right}"
        key = list(keys)[index % len(keys)]
        page.keyboard.press(key)
        expect(answers, left, right, keys[key])
    all_saved(page, 12)
    assert stored(tmp_path / "ws") == answers
    undone = shown
    next_pair(page, shown)
    page.keyboard.press("z")  # the last answer is forgotten, its pair is back on screen
    page.wait_for_selector(f'#pair[data-pair="{undone}"]')
    all_saved(page, 13)
    del answers[tuple(sorted(undone.split(":")))]
    assert stored(tmp_path / "ws") == answers
    page.keyboard.press("d")
    expect(answers, *undone.split(":"), "right")
    all_saved(page, 14)
    before_reload = page.evaluate("window.captionaryRankShown")
    page.reload()
    next_pair(page, "")
    page.wait_for_selector('#progress[data-comparisons="12"]')
    assert stored(tmp_path / "ws") == answers
    shown_after = page.evaluate("window.captionaryRankShown")
    page.close()

    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    phone = context.new_page()
    cdp = context.new_cdp_session(phone)

    def swipe(dx: int) -> None:
        box = phone.locator("#pair").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for step in range(1, 6):
            point = {"x": x + dx * step / 5, "y": y}
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    phone.goto(url)
    shown = ""
    left, right = next_pair(phone, shown)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # fits the screen
    boxes = [phone.locator(f"#{side}").bounding_box() for side in ("left", "right")]
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1  # stacked, not side by side
    for index in range(8):
        if index:
            left, right = next_pair(phone, shown)
        shown = f"{left}:{right}"
        dx = -160 if index % 2 else 160
        swipe(dx)
        expect(answers, left, right, "left" if dx < 0 else "right")
    all_saved(phone, 8)
    phone_shown = phone.evaluate("window.captionaryRankShown")
    context.close()

    summary = run.join()  # 20 answers: the budget is spent, the run went on without more input
    assert stored(tmp_path / "ws") == answers and len(answers) == 20
    rank = summary.step("human_rank")
    assert (rank.n_in, rank.n_out) == (8, 8)
    assert len(list(out.glob("*.jpg"))) == 8
    with Workspace(tmp_path / "ws") as ws:
        items = list(ws.items())
        assert all(isinstance(item["rank_score"], float) and item["rank_sigma"] > 0 for item in items)

    # no pair is shown once answered (the undone one comes back as unanswered), on either device
    key = lambda pair: ":".join(sorted(pair.split(":")))  # noqa: E731
    done: set[str] = set()

    def shown_unanswered(pair: str) -> None:
        assert key(pair) not in done, f"pair {pair[:12]}... shown again after it was answered"

    for pair in before_reload[:12]:
        shown_unanswered(pair)
        done.add(key(pair))
    shown_unanswered(before_reload[12])
    done.discard(key(undone))  # z
    assert before_reload[13] == key(undone)
    done.add(key(undone))
    for pair in before_reload[14:] + shown_after:
        shown_unanswered(pair)
    for pair in phone_shown[:8]:
        shown_unanswered(pair)
        done.add(key(pair))
    for pair in phone_shown[8:]:
        shown_unanswered(pair)
    assert done == {":".join(pair) for pair in answers}


class TLearnedCalls(Map):
    """A smart_filter-shaped call per photo: odd ones by the model (p_keep 0.8 or 0.95), even by a person."""

    name: ClassVar[str] = "t_learned_calls"
    writes: ClassVar[tuple[str, ...]] = ("smart_filter",)
    reads_image: ClassVar[bool] = False

    def apply(self, item):
        number = int(item.name[1:])
        by = "model" if number % 2 else "human"
        return {"smart_filter": {"decision": "keep", "by": by, "p_keep": 0.8 if number % 4 == 1 else 0.95}}


def test_browse_filters_by_who_decided_and_shows_the_models_confidence(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 8, size=(200, 150))
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) >> TLearnedCalls(), progress=False, workers=0)
    with Served(tmp_path / "ws") as served:
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(served.url + "#/browse")
        page.wait_for_selector("#count:has-text('8 item(s)')")
        page.select_option("#by", "model")
        page.wait_for_selector("#count:has-text('4 item(s)')")
        badges = sorted(page.locator("#grid .cell .by.model").all_inner_texts())
        assert badges == ["model 0.80", "model 0.80", "model 0.95", "model 0.95"]
        page.fill("#query", "name == 'p001'")  # a typed filter and the choice together
        page.wait_for_selector("#count:has-text('1 item(s)')")
        page.click("#grid .cell")
        page.wait_for_selector("#detail:not([hidden]) img")
        assert "learned calls by\tmodel, confidence 0.8" in page.inner_text("#detail")
        page.keyboard.press("Escape")
        page.fill("#query", "")
        page.select_option("#by", "human")
        page.wait_for_selector("#count:has-text('4 item(s)')")
        assert page.locator("#grid .cell .by.human").count() == 4
        page.close()


def test_a_done_ranking_says_so_and_can_go_on(browser, tmp_path):
    from review_helpers import client_for

    photos = make_photos(tmp_path / "photos", 5)
    run = BackgroundRun(tmp_path / "ws", Load(photos) >> HumanRank(budget=3, target=None))
    with client_for(run.url()) as client:
        for _ in range(3):
            [pair] = client.get("/api/rank/human_rank?n=1").json()["pairs"]
            ids = {"left": pair["left"]["id"], "right": pair["right"]["id"]}
            client.put("/api/rank/human_rank/pairs", json={**ids, "winner": "left"})
    run.join()
    with Served(tmp_path / "ws") as served:  # `captionary serve` after the run
        page = browser.new_page()
        page.goto(served.url)  # the only task: straight to its ranking screen
        page.wait_for_selector("#done")
        assert "the budget of 3 comparisons is spent" in page.inner_text("#done")
        assert page.inner_text("#progress").startswith("3 / 3 comparisons")
        page.click("#btn-more")  # more answers refine the next run's ranking
        left, right = next_pair(page, "")
        page.keyboard.press("ArrowLeft")
        all_saved(page, 1)
        assert stored(tmp_path / "ws")[tuple(sorted((left, right)))] == left
        assert len(stored(tmp_path / "ws")) == 4
        page.close()
