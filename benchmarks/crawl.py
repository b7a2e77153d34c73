"""Crawl benchmark: `load_booru` against a local Danbooru-shaped board that waits 50 ms before every
answer (API pages and files alike; real photos from the DreamBooth set, downsized), in the same run:

  * captionary at the site's default politeness (danbooru: 2 API requests/s, 4 downloads/s, 2 at once);
  * captionary with the limits lifted (`requests_per_second: 0`, `downloads_per_second: 0`,
    `concurrency: 8`);
  * a plain `httpx` loop fetching the same pages and files one after another (no workspace, no
    checks): what a script gets.

Repetitions are interleaved; posts/s is the median. Each captionary run uses a fresh workspace.

    python benchmarks/crawl.py                 # 60 posts, 2 repetitions (~1 minute)
    python benchmarks/crawl.py --posts 120 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "web"))

from booru_server import Board, make_posts, serve  # noqa: E402

from captionary import LoadBooru, Workspace  # noqa: E402

DELAY = 0.05
PAGE = 20


def captionary_run(url: str, n: int, lifted: bool) -> float:
    options = {"requests_per_second": 0, "downloads_per_second": 0, "concurrency": 8} if lifted else {}
    step = LoadBooru(site="danbooru", base_url=url, limit=n, page_size=PAGE, **options)
    with tempfile.TemporaryDirectory() as folder, Workspace(Path(folder) / "ws") as ws:
        start = time.perf_counter()
        summary = ws.run(step, progress=False)
        seconds = time.perf_counter() - start
    assert summary.step("load_booru").n_out == n, summary.errors[:3]
    return seconds


def httpx_loop(url: str, n: int) -> float:
    import httpx

    start = time.perf_counter()
    got, cursor = 0, None
    with httpx.Client() as client:
        while got < n:
            params = {"limit": PAGE, **({"page": cursor} if cursor else {})}
            posts = client.get(f"{url}/posts.json", params=params).json()
            if not posts:
                break
            for post in posts[: n - got]:
                client.get(post["file_url"]).raise_for_status()
                got += 1
            cursor = f"b{min(p['id'] for p in posts)}"
    assert got == n
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    n = args.posts
    board = Board("danbooru", make_posts(n), delay=DELAY)
    httpd, url = serve(board)
    load_before = os.getloadavg()[0]
    modes = {
        "plain httpx loop (sequential)": lambda: httpx_loop(url, n),
        "captionary, default politeness": lambda: captionary_run(url, n, lifted=False),
        "captionary, limits lifted": lambda: captionary_run(url, n, lifted=True),
    }
    times: dict[str, list[float]] = {name: [] for name in modes}
    try:
        for _ in range(args.repeat):
            for name, run in modes.items():
                times[name].append(run())
    finally:
        httpd.shutdown()
    baseline = n / statistics.median(times["plain httpx loop (sequential)"])
    print(f"\n{n} posts (1 file each, pages of {PAGE}), {DELAY * 1000:.0f} ms server delay per request, "
          f"{args.repeat} interleaved repetitions")  # fmt: skip
    print(f"{'':34} {'posts/s':>8} {'x httpx loop':>13}   runs (s)")
    for name, seconds in times.items():
        rate = n / statistics.median(seconds)
        runs = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"{name:34} {rate:8.1f} {rate / baseline:13.2f}   {runs}")
    load = f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print(f"{load} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
