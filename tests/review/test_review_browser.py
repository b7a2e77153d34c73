"""The review app in Debian's Chromium (Playwright, headless): keyboard filtering with undo, tagging
with digit keys, caption editing, a server killed mid-session, touch swipes on a phone viewport."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from review_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    BackgroundRun,
    Served,
    client_for,
    make_photos,
    prepare_task,
)

from captionary import HumanCaption, HumanFilter, HumanTag, Load, Save, SetCaption

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


def decisions(ws: Path, task: str) -> dict[str, str]:
    db = sqlite3.connect(ws / "captionary.db")
    try:
        return dict(db.execute("SELECT item, value FROM decisions WHERE task = ?", (task,)).fetchall())
    finally:
        db.close()


def showing(page, item_id: str) -> None:
    page.wait_for_selector(f'#stage[data-item="{item_id}"] img.current', timeout=15000)


def all_saved(page, acked: int) -> None:
    page.wait_for_selector(f'#save-status[data-pending="0"][data-acked="{acked}"]', timeout=15000)


def test_filter_30_images_with_the_keyboard_only_then_undo(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 30)
    items = prepare_task(tmp_path / "ws", Load(photos) >> HumanFilter(), "human_filter", 30)
    keys = ["d", "ArrowRight", "a", "ArrowLeft", "d"]
    expected = {}
    with Served(tmp_path / "ws") as served:
        page = browser.new_page()
        page.goto(served.url)
        for index, item in enumerate(items):
            showing(page, item["id"])
            key = keys[index % len(keys)]
            page.keyboard.press(key)
            expected[item["id"]] = '"keep"' if key in ("d", "ArrowRight") else '"reject"'
        page.wait_for_selector("#done")
        all_saved(page, 30)
        assert decisions(tmp_path / "ws", "human_filter") == expected
        assert page.inner_text("#progress") == "30 / 30 decided"

        page.keyboard.press("z")  # undo: the last decision is gone, its image is back
        showing(page, items[-1]["id"])
        all_saved(page, 31)
        del expected[items[-1]["id"]]
        assert decisions(tmp_path / "ws", "human_filter") == expected
        page.keyboard.press("s")  # skip leaves it undecided
        page.wait_for_selector("#done")
        page.keyboard.press("[")  # back to any earlier image, and decide it again
        page.keyboard.press("[")
        showing(page, items[-2]["id"])
        page.keyboard.press("a")
        all_saved(page, 32)
        expected[items[-2]["id"]] = '"reject"'
        assert decisions(tmp_path / "ws", "human_filter") == expected
        page.fill("#seek", "10")  # the slider reaches any image
        showing(page, items[10]["id"])
        assert page.get_attribute("#decision", "data-value") == expected[items[10]["id"]]
        page.keyboard.press("]")  # and the keys work again after it
        showing(page, items[11]["id"])
        page.close()


def test_tag_with_digit_keys_and_a_free_tag(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    step = HumanTag(tags=["red", "green", "blue"])
    items = prepare_task(tmp_path / "ws", Load(photos) >> step, "human_tag", 3)
    with Served(tmp_path / "ws") as served:
        page = browser.new_page()
        page.goto(served.url.replace("/?", "/?") + "#/task/human_tag")
        showing(page, items[0]["id"])
        page.keyboard.press("1")
        page.keyboard.press("3")
        assert page.get_attribute('button.tag[data-tag="blue"]', "aria-pressed") == "true"
        page.keyboard.press("Enter")
        showing(page, items[1]["id"])
        page.keyboard.press("2")
        page.keyboard.press("2")  # toggled off again
        page.keyboard.press("2")
        page.keyboard.press("t")
        page.keyboard.type("sunset")  # typing in the free-tag box triggers no shortcut
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        page.keyboard.press("Enter")
        showing(page, items[2]["id"])
        all_saved(page, 2)
        assert decisions(tmp_path / "ws", "human_tag") == {
            items[0]["id"]: '["red","blue"]',
            items[1]["id"]: '["green","sunset"]',
        }
        with client_for(served.url) as client:  # the free tag is offered for autocompletion from now on
            assert "sunset" in client.get("/api/tasks/human_tag").json()["known_tags"]
        page.reload()
        showing(page, items[2]["id"])
        assert page.locator('#known-tags option[value="sunset"]').count() == 1
        page.close()


def test_arrow_keys_inside_the_caption_box_do_not_change_the_image(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    items = prepare_task(tmp_path / "ws", Load(photos) >> HumanCaption(), "human_caption", 3)
    with Served(tmp_path / "ws") as served:
        page = browser.new_page()
        page.goto(served.url + "#/task/human_caption")
        showing(page, items[0]["id"])
        page.keyboard.press("?")  # the keys, shown and hidden again
        assert page.is_visible("#help") and "undo the last decision" in page.inner_text("#help")
        page.keyboard.press("Escape")
        assert not page.is_visible("#help")
        page.click("#caption")
        for key in [
            "ArrowLeft",
            "ArrowRight",
            "ArrowUp",
            "ArrowDown",
            "Home",
            "End",
            "a",
            "d",
            "z",
            "s",
            "[",
        ]:
            page.keyboard.press(key)
        showing(page, items[0]["id"])  # still the first image
        page.keyboard.press("Backspace")  # remove the "[" typed above ...
        page.keyboard.type(" edited")
        assert page.input_value("#caption") == "caption 000adzs edited"
        page.keyboard.press("Control+Enter")
        showing(page, items[1]["id"])
        page.keyboard.type("!")  # the next box has the focus
        page.keyboard.press("Control+Enter")
        showing(page, items[2]["id"])
        all_saved(page, 2)
        assert decisions(tmp_path / "ws", "human_caption") == {
            items[0]["id"]: '"caption 000adzs edited"',
            items[1]["id"]: '"caption 001!"',
        }
        page.close()


def test_kill_the_server_mid_session_nothing_acknowledged_is_lost(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 12)
    items = prepare_task(tmp_path / "ws", Load(photos) >> HumanFilter(), "human_filter", 12)
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "leave with unsaved decisions?": yes
    with Served(tmp_path / "ws") as served:
        page.goto(served.url)
        for item in items[:7]:
            showing(page, item["id"])
            page.keyboard.press("d")
        served.kill()  # SIGKILL, with saves possibly in flight
    acked = page.evaluate("saves.acked.map((a) => a.item)")
    stored = decisions(tmp_path / "ws", "human_filter")
    assert set(acked) <= set(stored)
    assert set(stored) <= {item["id"] for item in items[:7]}
    if len(stored) < 7:  # a save the server never answered: visible, and retried
        page.wait_for_selector('#save-status[data-state="error"]')
    with Served(tmp_path / "ws") as again:
        page.goto(again.url)
        first_undecided = next(item["id"] for item in items if item["id"] not in stored)
        showing(page, first_undecided)
        assert page.inner_text("#progress") == f"{len(stored)} / 12 decided"
    page.close()


def test_phone_viewport_with_touch_swipes(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 4, size=(600, 900))
    items = prepare_task(tmp_path / "ws", Load(photos) >> HumanFilter(), "human_filter", 4)
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    cdp = context.new_cdp_session(page)

    def swipe(dx: int) -> None:
        box = page.locator("#stage").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for step in range(1, 6):
            point = {"x": x + dx * step / 5, "y": y}
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    with Served(tmp_path / "ws") as served:
        page.goto(served.url)
        showing(page, items[0]["id"])
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # fits the screen
        keep = page.locator("#btn-keep").bounding_box()
        assert keep["height"] >= 44 and keep["width"] >= 88  # a large tap target
        swipe(160)
        showing(page, items[1]["id"])
        swipe(-160)
        showing(page, items[2]["id"])
        swipe(20)  # too short: nothing happens
        showing(page, items[2]["id"])
        page.locator("#btn-keep").tap()
        showing(page, items[3]["id"])
        all_saved(page, 3)
        assert decisions(tmp_path / "ws", "human_filter") == {
            items[0]["id"]: '"keep"',
            items[1]["id"]: '"reject"',
            items[2]["id"]: '"keep"',
        }
    context.close()


def test_browse_is_a_virtualised_grid_with_filters_and_details(browser, tmp_path):
    from captionary.review.decisions import DecisionStore

    photos = make_photos(tmp_path / "photos", 80, size=(200, 150))
    items = prepare_task(tmp_path / "ws", Load(photos) >> HumanFilter(), "human_filter", 80)
    store = DecisionStore(tmp_path / "ws" / "captionary.db")
    store.decide("human_filter", items[7]["id"], "reject")
    store.close()
    with Served(tmp_path / "ws") as served:
        page = browser.new_page(viewport={"width": 800, "height": 600})
        page.goto(served.url + "#/browse")
        page.wait_for_selector("#count:has-text('80 item(s)')")
        drawn = page.locator("#grid .cell").count()
        assert 0 < drawn < 80  # only the rows in view (and a margin) exist
        page.fill("#query", "human_filter == 'reject'")
        page.wait_for_selector("#count:has-text('1 item(s)')")
        assert page.locator("#grid .cell").count() == 1
        page.click(f'#grid .cell[data-item="{items[7]["id"]}"]')
        page.wait_for_selector("#detail:not([hidden]) img")
        text = page.inner_text("#detail")
        assert "decision: human_filter" in text and "reject" in text and "caption 007" in text
        page.keyboard.press("Escape")
        page.fill("#query", "width >")
        page.wait_for_selector("#count.error")
        page.close()


def test_a_failed_save_is_shown_and_retried_until_committed(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 2)
    items = prepare_task(tmp_path / "ws", Load(photos) >> HumanFilter(), "human_filter", 2)
    failures = []

    def flaky(route):
        if len(failures) < 2:  # the first two attempts never reach the server
            failures.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    with Served(tmp_path / "ws") as served:
        page = browser.new_page()
        page.route("**/api/tasks/human_filter/items/*", flaky)
        page.goto(served.url)
        showing(page, items[0]["id"])
        page.keyboard.press("d")
        page.wait_for_selector('#save-status[data-state="error"]')
        assert decisions(tmp_path / "ws", "human_filter") == {}
        all_saved(page, 1)
        assert len(failures) == 2
        assert decisions(tmp_path / "ws", "human_filter") == {items[0]["id"]: '"keep"'}
        page.close()


def test_a_running_pipeline_in_the_browser_streams_decided_items_to_the_sink(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 4)
    out = tmp_path / "out"
    pipeline = Load(photos) >> HumanFilter() >> SetCaption(template="ohwx, {caption}") >> Save(out)
    run = BackgroundRun(tmp_path / "ws", pipeline)
    page = browser.new_page()
    page.goto(run.url())
    page.wait_for_selector("#stage img.current")
    page.keyboard.press("d")
    page.keyboard.press("a")
    page.wait_for_selector("#run:has-text('save 1')", timeout=15000)  # the app shows the run's progress
    deadline = time.monotonic() + 15
    while len(list(out.glob("*.txt"))) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert run.thread.is_alive()  # two images are still undecided
    [written] = out.glob("*.txt")
    assert written.read_text().startswith("ohwx, caption")
    page.keyboard.press("d")
    page.keyboard.press("d")
    summary = run.join()
    assert (summary.steps[1].n_out, summary.steps[1].dropped) == (3, 1)
    assert len(list(out.glob("*.jpg"))) == 3
    page.close()


def test_decisions_made_on_another_device_appear(browser, tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    items = prepare_task(tmp_path / "ws", Load(photos) >> HumanFilter(), "human_filter", 3)
    with Served(tmp_path / "ws") as served, client_for(served.url) as phone:
        page = browser.new_page()
        page.goto(served.url)
        showing(page, items[0]["id"])
        phone.put(f"/api/tasks/human_filter/items/{items[1]['id']}", json={"value": "reject"})
        page.wait_for_selector("#progress:has-text('1 / 3 decided')", timeout=15000)
        page.keyboard.press("]")
        showing(page, items[1]["id"])
        assert page.get_attribute("#decision", "data-value") == '"reject"'
        page.close()


def test_the_end_screen_says_the_run_is_complete_with_its_counts(browser, tmp_path):
    """When the last decision lets the run finish, the page says the run is complete (with the
    counts), not that the server stopped answering."""
    photos = make_photos(tmp_path / "photos", 2)
    run = BackgroundRun(tmp_path / "ws", Load(photos) >> HumanFilter() >> Save(tmp_path / "out"))
    page = browser.new_page()
    page.goto(run.url())
    page.wait_for_selector("#stage img.current")
    page.keyboard.press("d")
    page.keyboard.press("a")
    run.join()
    page.wait_for_selector("#done-note:has-text('The run is complete')", timeout=15000)
    assert "save 1" in page.inner_text("#run")
    time.sleep(2.5)  # the server is gone now: the page keeps saying the run completed
    assert page.inner_text("#run").startswith("The run is complete")
    assert "not answering" not in page.inner_text("body")
    page.close()


def test_browse_shows_a_childs_parent_and_opens_it(browser, tmp_path):
    from captionary import Flip, Workspace

    photos = make_photos(tmp_path / "photos", 2, size=(120, 90))
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) >> Flip(), progress=False)
        items = {item.name: item for item in ws.items()}
    child, parent = items["p001_flip"], items["p001"]
    with Served(tmp_path / "ws") as served:
        page = browser.new_page(viewport={"width": 800, "height": 600})
        page.goto(served.url + "#/browse")
        page.wait_for_selector("#count:has-text('4 item(s)')")
        page.click(f'#grid .cell[data-item="{child.id}"]')
        page.wait_for_selector("#detail:not([hidden]) button.parent")
        assert page.inner_text("#detail button.parent") == f"p001 · {parent.id[:12]}"
        page.click("#detail button.parent")
        page.wait_for_selector("#detail:not([hidden]) img")
        page.wait_for_selector("#detail button.parent", state="detached")
        assert "p001_flip" not in page.inner_text("#detail") and "p001" in page.inner_text("#detail")
        page.close()
