"""Shared by the review tests: real JPEG files, a running pipeline with a human step, an HTTP client."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def make_photos(folder: Path, count: int, size: tuple[int, int] = (320, 240)) -> Path:
    """`count` distinct real JPEG files (a colour gradient with the index drawn in), with captions."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = Image.linear_gradient("L").resize(size).convert("RGB")
        hue = Image.new("RGB", size, ((index * 53) % 256, (index * 97) % 256, (index * 31) % 256))
        image = Image.blend(image, hue, 0.6)
        ImageDraw.Draw(image).text((10, 10), f"photo {index:03d}", fill=(255, 255, 255))
        image.save(folder / f"p{index:03d}.jpg", quality=90)
        (folder / f"p{index:03d}.txt").write_text(f"caption {index:03d}")
    return folder


def client_for(url: str) -> httpx.Client:
    """An HTTP client for a printed review URL, sending its token as a bearer header."""
    parts = urlsplit(url)
    token = parse_qs(parts.query)["token"][0]
    return httpx.Client(
        base_url=f"{parts.scheme}://{parts.netloc}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


class BackgroundRun:
    """`ws.run(pipeline)` in a thread; `url` is the review URL once the human step serves it."""

    def __init__(self, ws_path: Path, pipeline: Any, **options: Any):
        self.urls: queue.Queue[str] = queue.Queue()
        self.summary: Any = None
        self.error: BaseException | None = None
        review = {"port": 0, "announce": self.urls.put, **options.pop("review", {})}

        def run() -> None:
            from captionary import Workspace

            try:
                with Workspace(ws_path) as ws:
                    self.summary = ws.run(pipeline, progress=False, workers=0, review=review, **options)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def url(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while self.urls.empty():
            if not self.thread.is_alive():
                self.join()  # raises the run's error
                raise AssertionError("the run ended without serving the review app")
            assert time.monotonic() < deadline, "the review app was not served"
            time.sleep(0.02)
        return self.urls.get()

    def join(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        return self.summary


def prepare_task(ws_path: Path, pipeline: Any, task: str, count: int) -> list[dict]:
    """Run `pipeline` (its human step asks about `count` items) through the real stage and app, then
    take every decision back, leaving a task of `count` undecided items. Returns the task's items."""
    run = BackgroundRun(ws_path, pipeline)
    with client_for(run.url()) as client:
        deadline = time.monotonic() + 60
        while len(items := client.get(f"/api/tasks/{task}").json()["items"]) < count:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        value: Any = {"filter": "keep", "tag": [], "caption": "x"}[
            client.get(f"/api/tasks/{task}").json()["kind"]
        ]
        for item in items:
            client.put(f"/api/tasks/{task}/items/{item['id']}", json={"value": value})
    run.join()  # the run's review server stops with the run
    from captionary.review.decisions import DecisionStore

    store = DecisionStore(ws_path / "captionary.db")
    for item in items:
        store.undo(task, item["id"])
    store.close()
    return items


class Served:
    """`captionary serve WORKSPACE` in a child process; `url` is the printed review URL."""

    def __init__(self, ws_path: Path, host: str = "127.0.0.1"):
        import subprocess
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-m", "captionary.cli", "serve", str(ws_path), "--port", "0", "--host", host],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("Review: "), line
        self.url = line.removeprefix("Review: ").strip()
        self.port = urlsplit(self.url).port
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:  # the URL is printed once the socket is bound; wait until it answers
            try:
                httpx.get(self.base + "/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "captionary serve did not answer"
                time.sleep(0.05)

    def local_url(self) -> str:
        return self.base + "/?" + urlsplit(self.url).query

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:
                self.kill()
