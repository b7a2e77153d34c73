"""How downloads flow (issue 20): a bounded window of URLs ahead of the consumer, each body stored by
the thread that downloaded it, and a run killed mid-download that resumes without fetching again
what it stored. The server is a local one on 127.0.0.1."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from PIL import Image

from captionary.sources.download import WINDOW_PER_WORKER, Downloader
from conftest import REPO

N = 60


@pytest.fixture
def server():
    """/<i>.jpg: a distinct 64 px JPEG each, answered after 50 ms; hits counted per path."""
    import http.server

    hits: Counter = Counter()
    images = {}
    for i in range(N):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (i * 4, 255 - i * 4, (i * 37) % 256)).save(buffer, "JPEG")
        images[f"/{i}.jpg"] = buffer.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits[self.path] += 1
            time.sleep(0.05)
            data = images.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def test_only_a_window_of_urls_is_ahead_of_a_slow_consumer():
    """A million URLs are not a million futures (nor a million bodies) when the consumer is slow."""
    pulled = []

    def urls():
        for i in range(10_000):
            pulled.append(i)
            yield f"http://[::1/{i}.jpg"  # malformed: fails at once, no network

    downloader = Downloader(workers=2)
    results = downloader.fetch_all(urls())
    first = next(results)
    assert first[0] == "http://[::1/0.jpg" and first[1].startswith("malformed URL")
    time.sleep(0.2)  # the threads have long finished every URL they were given
    assert len(pulled) <= 2 * WINDOW_PER_WORKER + 1
    rest = list(results)
    assert len(rest) == 9_999 and [url for url, _ in rest][:2] == ["http://[::1/1.jpg", "http://[::1/2.jpg"]


def test_then_runs_in_the_download_thread_and_results_keep_their_order(server):
    base, _ = server
    threads = set()

    def size(url: str, result: bytes | str) -> int:
        threads.add(threading.current_thread().name)
        return len(result)

    urls = [f"{base}/{i}.jpg" for i in range(10)] + [f"{base}/missing.jpg"]
    results = list(Downloader(workers=4, retries=0).fetch_all(urls, then=size))
    assert [url for url, _ in results] == urls
    assert results[0][1] > 100 and results[-1][1] == len("download failed: HTTP 404 Not Found")
    assert threads and all(name.startswith("captionary-download") for name in threads)


def test_a_killed_download_run_resumes_without_fetching_again_what_it_stored(server, tmp_path):
    base, hits = server
    (tmp_path / "urls.csv").write_text("image\n" + "".join(f"{base}/{i}.jpg\n" for i in range(N)))
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "workspace: ws\nsteps:\n"
        "  - load_manifest: {path: urls.csv, threads: 2, downloads_per_host: 2}\n"
        "  - resize: {max_edge: 32, resample: box}\n"
        "  - save: {path: out}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = [sys.executable, "-m", "captionary.cli", "run", str(pipeline), "--no-progress"]
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while sum(hits.values()) < 2 * N // 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert sum(hits.values()) < N, "the run finished before it could be killed"
    with sqlite3.connect(tmp_path / "ws" / "captionary.db") as db:
        stored = {path.rsplit("::", 1)[1] for (path,) in db.execute("SELECT path FROM source_files")}
    assert stored, "nothing was committed before the kill (1 s of downloads)"
    fetched_before = Counter(hits)

    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "out").glob("*.jpg"))) == N
    for url in stored:  # stored before the kill: never fetched again
        path = url.removeprefix(base)
        assert hits[path] == fetched_before[path] == 1, path
    assert all(hits[f"/{i}.jpg"] >= 1 for i in range(N))
    assert sum(hits.values()) - sum(fetched_before.values()) == N - len(stored)
