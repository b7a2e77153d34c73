"""Image URLs in a manifest: downloaded concurrently with retries and a timeout; failures are item
errors with the HTTP status; nothing is downloaded twice. The server is a local one (127.0.0.1)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import Counter

import pytest

from captionary import LoadManifest, Workspace


@pytest.fixture
def server(photos):
    hits: Counter = Counter()
    active = {"now": 0, "max": 0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits[self.path] += 1
            # /slow.jpg outlives the client's timeout on the server side, so it is not counted
            counted = self.path != "/slow.jpg"
            with lock:
                active["now"] += counted
                active["max"] = max(active["max"], active["now"])
            status, data, headers = self.respond()
            with lock:  # before the client can see the answer, so it is never counted twice
                active["now"] -= counted
            try:
                self.send_response(status)
                for name, value in {"Content-Length": str(len(data)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout case)

        def respond(self) -> tuple[int, bytes, dict]:
            if self.path.startswith("/photos/"):
                time.sleep(0.05)
                return 200, (photos / self.path.removeprefix("/photos/")).read_bytes(), {}
            if self.path == "/busy.jpg":
                if hits[self.path] <= 2:
                    return 429, b"", {"Retry-After": "0"}
                return 200, (photos / "cat" / "00.jpg").read_bytes(), {}
            if self.path == "/slow.jpg":
                time.sleep(1.5)
                return 200, b"", {}
            return 404, b"", {}

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits, active
    httpd.shutdown()


def test_urls_are_downloaded_once_with_retries_and_clear_errors(server, tmp_path):
    base, hits, active = server
    rows = [{"image": f"{base}/photos/dog/0{i}.jpg", "caption": f"dog {i}"} for i in range(5)]
    rows += [{"image": f"{base}/busy.jpg"}, {"image": f"{base}/gone.jpg"}, {"image": f"{base}/slow.jpg"}]
    manifest = tmp_path / "urls.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = LoadManifest(manifest, downloads_per_host=2, download_retries=2, download_timeout=0.5)
    with Workspace(tmp_path / "ws") as ws:
        first = ws.run(source, progress=False)
        items = {item.name: item for item in ws.items()}
        after_first = Counter(hits)
        again = ws.run(source, progress=False)  # failures are retried; the images are not fetched again
    hits = after_first
    assert first.step("load_manifest").n_out == 6
    assert items["03"]["caption"] == "dog 3" and items["03"].width == 640
    assert hits["/busy.jpg"] == 3  # two 429s, then the image
    assert hits["/gone.jpg"] == 1  # a 404 is not retried
    assert active["max"] <= 2  # the per-host limit
    reasons = {e["source"].rsplit("/", 1)[1]: e["reason"] for e in first.errors}
    assert reasons["gone.jpg"].endswith("download failed: HTTP 404 Not Found")
    assert "download failed after 3 attempts" in reasons["slow.jpg"] and "timed out" in reasons["slow.jpg"]
    photo_hits = sum(n for path, n in hits.items() if path.startswith("/photos/"))
    assert photo_hits == 5
    assert again.step("load_manifest").cached == 6  # the workspace is the download cache
    assert again.step("load_manifest").failed == 2
