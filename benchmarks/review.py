"""Review-app latency: a decision from request to commit, and key press to the next image painted.

1. 1,000 decisions on a live server (uvicorn, the real app): the server-side time from the request's
   arrival to its response (sent after the commit), the client's round trip, the store's commit alone,
   and a bare sqlite3 INSERT + COMMIT on the same database with the same settings (the baseline).
2. Key press -> next image painted in Chromium (Playwright, headless) on real photos, with the app's
   preloading (the next 3 images fetched and decoded ahead, thumbnails rendered ahead on the server),
   against showing images nothing prepared (rendered on request, fetched, decoded, painted).

    python benchmarks/review.py                          # ../shared/data/dreambooth if present
    python benchmarks/review.py --photos examples/photos --presses 10
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from captionary import HumanFilter, Load, Workspace
from captionary.review.decisions import DecisionStore, TaskItem
from captionary.review.server import WARM_AHEAD, create_app

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
ARGS += ["--disable-sync", "--no-first-run"]


class Timed:
    """ASGI wrapper recording, per request, seconds from its arrival to the start of its response."""

    def __init__(self, app):
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope, receive, send):
        started = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.start":
                self.times.append(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)


def serve(app) -> tuple[object, int]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, sock.getsockname()[1]


def ms(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000, max(values) * 1000


def decision_latency(root: Path, count: int) -> list[tuple[str, list[float]]]:
    with Workspace(root / "ws-decisions") as ws:
        db_path = ws.db_path
    store = DecisionStore(db_path)
    step = HumanFilter()
    store.register_task("bench", "filter", {"step": step.describe()})
    ids = [secrets.token_hex(32) for _ in range(count)]
    store.register_items("bench", [TaskItem(i, 0, i, f"n{n}", {}) for n, i in enumerate(ids)], None)

    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("PRAGMA synchronous=FULL")
    bare = []
    for n, item in enumerate(ids):
        started = time.perf_counter()
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?)", ("raw", item, '"keep"', n))
        raw.execute("COMMIT")
        bare.append(time.perf_counter() - started)
    raw.close()

    committed = []
    for item in ids:
        started = time.perf_counter()
        store.decide("commit-only", item, "keep")
        committed.append(time.perf_counter() - started)

    relaxed_store = DecisionStore(db_path, durable=False)
    relaxed = []
    for item in ids:
        started = time.perf_counter()
        relaxed_store.decide("relaxed", item, "keep")
        relaxed.append(time.perf_counter() - started)
    relaxed_store.close()

    token = secrets.token_urlsafe(24)
    timed = Timed(create_app(db_path.parent, token))
    server, port = serve(timed)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"})
    for item in ids[:20]:  # warm-up: connection, first imports, statement cache
        client.put(f"/api/tasks/bench/items/{item}", json={"value": "reject"})
    timed.times.clear()
    trip = []
    for n, item in enumerate(ids):
        started = time.perf_counter()
        answer = client.put(f"/api/tasks/bench/items/{item}", json={"value": "keep" if n % 3 else "reject"})
        trip.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
    server.should_exit = True
    store.close()
    (saved,) = (
        sqlite3.connect(db_path).execute("SELECT count(*) FROM decisions WHERE task = 'bench'").fetchone()
    )
    assert saved == count
    return [
        ("bare sqlite3 INSERT + COMMIT (baseline)", bare),
        ("DecisionStore.decide (one commit, fsync)", committed),
        ("  the same, synchronous=NORMAL (no fsync)", relaxed),
        ("server: request arrived -> response (committed)", timed.times),
        ("client: HTTP PUT round trip", trip),
    ]


def paint_latency(root: Path, photos: Path, presses: int) -> list[tuple[str, list[float]]]:
    from playwright.sync_api import sync_playwright

    from captionary.review.serve import ReviewServer

    folder = root / "photos"
    folder.mkdir()
    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    # pressed through: `presses` images; shown cold: as many beyond what the server renders ahead
    presses = min(presses, (len(files) - 2 - WARM_AHEAD) // 2)
    for n, path in enumerate(files[: 2 * presses + 2 + WARM_AHEAD]):
        shutil.copy(path, folder / f"{n:04d}{path.suffix.lower()}")
    ws_path = root / "ws-paint"
    with Workspace(ws_path) as ws:
        ws.run(Load(folder), progress=False)
        items = list(ws.items())
    store = DecisionStore(ws_path / "captionary.db")
    store.register_task("human_filter", "filter", {"step": HumanFilter().describe()})
    store.register_items(
        "human_filter", [TaskItem(i.id, 0, i.image_hash, i.name, i.props) for i in items], None
    )
    store.close()

    server = ReviewServer(ws_path, port=0).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url + "#/task/human_filter")
            page.wait_for_selector("#stage img.current")
            page.wait_for_timeout(1500)  # the person looks at the first image
            for _ in range(presses):
                page.keyboard.press("d")
                page.wait_for_timeout(400)  # a fast person: 2.5 images a second
            preloaded = page.evaluate("window.captionaryTimings")
            cold = page.evaluate(
                """async (ids) => {
                    const out = [];
                    const stage = document.querySelector('#stage');
                    for (const [id, image] of ids) {
                        const started = performance.now();
                        const img = new Image();
                        img.src = `/api/image/${id}/${encodeURIComponent(image)}?size=thumb`;
                        await img.decode();
                        stage.replaceChildren(img);
                        await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
                        out.push(performance.now() - started);
                    }
                    return out;
                }""",
                [[i.id, i.image_hash] for i in items[presses + 1 + WARM_AHEAD :]],
            )
            browser.close()
    finally:
        server.stop()
    return [
        ("nothing ahead: render + fetch + decode + paint", [t / 1000 for t in cold]),
        ("the app: key press -> next image painted", [t / 1000 for t in preloaded]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--photos", type=Path, default=DEFAULT if DEFAULT.exists() else REPO / "examples" / "photos"
    )
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--presses", type=int, default=60)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="captionary-review-bench-"))
    try:
        rows = decision_latency(root, args.decisions)
        print(f"\n{args.decisions} decisions, one at a time (WAL; synchronous=FULL unless noted)")
        print(f"{'measure':<52}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
        for name, values in rows:
            print(f"{name:<52}" + "".join(f"{v:9.2f}" for v in ms(values)))
        if os.path.exists(CHROMIUM):
            rows = paint_latency(root, args.photos, args.presses)
            presses = len(rows[-1][1])
            print(f"\nkey press -> next image painted, {presses} presses, photos from {args.photos}")
            print(f"{'measure':<52}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
            for name, values in rows:
                print(f"{name:<52}" + "".join(f"{v:9.2f}" for v in ms(values)))
        else:
            print(f"\n{CHROMIUM} not found: paint latency not measured")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
