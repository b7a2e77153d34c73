"""`load_booru` is resumable and polite: a `captionary run` killed mid-crawl resumes where it stopped
(the server sees only what was missing), a larger `limit` fetches only the new posts, and the rate
limits hold (requests per second counted at the server)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from booru_server import REPO, Board, make_posts, serving

from captionary import LoadBooru, Workspace


@pytest.fixture
def board_server():
    """Local boards on 127.0.0.1 for one test: `board_server(board)` starts one, returns its URL."""
    yield from serving()


def recorded(ws_path) -> tuple[set[int], str | None]:
    """The posts whose image the workspace holds, and the crawl's cursor."""
    db = sqlite3.connect(ws_path / "captionary.db")
    try:
        keys = db.execute("SELECT path FROM source_files WHERE item IS NOT NULL").fetchall()
        cursor = db.execute("SELECT cursor FROM web_crawls").fetchone()
    finally:
        db.close()
    return {int(k.rsplit("/", 1)[1]) for (k,) in keys}, json.loads(cursor[0]) if cursor else None


@pytest.mark.slow  # a real `captionary run` subprocess (~10 s)
def test_killed_crawl_resumes_with_only_what_is_missing(board_server, tmp_path):
    posts = make_posts(40)
    board = Board("danbooru", posts, delay=0.05)
    url = board_server(board)
    (tmp_path / "pipeline.yaml").write_text(
        f"""workspace: ws
steps:
  - load_booru: {{site: danbooru, base_url: "{url}", tags: ["surtr_(arknights)"], page_size: 8,
                 requests_per_second: 20, downloads_per_second: 10}}
"""
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "captionary.cli", "run", "pipeline.yaml", "--no-progress"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while sum(board.file_hits().values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no clean-up at all
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    have, cursor = recorded(tmp_path / "ws")
    assert 0 < len(have) < 40 and cursor is not None and cursor.startswith("b")
    before = len(board.requests)

    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadBooru(site="danbooru", base_url=url, tags=["surtr_(arknights)"], page_size=8))
        names = {item.name for item in ws.items()}
    again = board.requests[before:]
    assert names == {f"danbooru_{p.id}" for p in posts}  # every post, once
    assert summary.step("load_booru").cached == len(have)
    # the files fetched again are exactly those the killed run had not stored
    assert board.file_hits(again) == {p.id: 1 for p in posts if p.id not in have}
    # the listing resumed at the kept cursor: no page before it was asked for again
    pages = [path for _, kind, path in again if kind == "api"]
    assert f"page={cursor}" in pages[0]
    assert all("page=b" in path for path in pages)


def test_larger_limit_fetches_only_the_new_posts(board_server, tmp_path):
    posts = make_posts(30)
    board = Board("gelbooru", posts)
    url = board_server(board)
    fast = {"requests_per_second": 0, "downloads_per_second": 0, "page_size": 10}
    with Workspace(tmp_path / "ws") as ws:
        ws.run(LoadBooru(site="gelbooru", base_url=url, limit=10, **fast), progress=False)
        first = len(board.requests)
        assert board.pages == [(board.pages[0][0], 1)] + [(t, 1) for t, n in board.pages[1:]]  # one page
        more = ws.run(LoadBooru(site="gelbooru", base_url=url, limit=25, **fast), progress=False)
        names = {item.name for item in ws.items()}
    newest = sorted(posts, key=lambda p: -p.id)
    assert names == {f"gelbooru_{p.id}" for p in newest[:25]}
    assert more.step("load_booru").cached == 10
    assert board.file_hits(board.requests[first:]) == {p.id: 1 for p in newest[10:25]}
    assert [n for _, n in board.pages] == [1, 2, 3]  # page 1 once; pages 2 and 3 by the second run


def windows(times: list[float], span: float) -> int:
    """The most requests within any `span` seconds."""
    most, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= span:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_rate_limits_are_kept(board_server, tmp_path):
    board = Board("e621", make_posts(24))
    url = board_server(board)
    step = LoadBooru(site="e621", base_url=url, page_size=4, requests_per_second=4, downloads_per_second=8,
                     concurrency=4)  # fmt: skip
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(step, progress=False)
    assert summary.step("load_booru").n_out == 24
    api = sorted(t for t, kind, _ in board.requests if kind == "api")
    files = sorted(t for t, kind, _ in board.requests if kind == "file")
    # The client spaces request starts evenly; the server's clock sees arrivals, which a loaded machine
    # can bunch by a request's worth (one more in a window). Unlimited, all 24 files arrive within
    # a fraction of a second. Over the whole run the average rate is the limit.
    assert windows(api, 1.0) <= 4 + 1 and windows(files, 1.0) <= 8 + 1
    assert api[-1] - api[0] >= (len(api) - 1) / 4 - 0.1
    assert files[-1] - files[0] >= (len(files) - 1) / 8 - 0.1
    assert len(api) == 7  # 6 pages of 4, and the empty page that ends the listing
