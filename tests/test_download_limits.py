"""Downloads are bounded whatever the server does (issue 13): a body that never ends stops at
`max_file_size`, a server that drips bytes (in the body or the headers) is cut off at
`download_deadline`, a dead host's remaining URLs fail at once (circuit breaker), and a malformed URL is
its row's error. The servers are local ones on 127.0.0.1, stopped by each test."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time

import pytest

from captionary import LoadManifest, Workspace

DRIP_FOR = 20.0  # seconds a drip goes on at most (the old code read it all, then failed differently)


class Hostile(socketserver.BaseRequestHandler):
    """Raw HTTP: /forever streams zeros without end, /drip sends its body a byte every 0.2 s, /drip-head
    its headers so; anything else is a small valid answer."""

    def handle(self):
        request = self.request.recv(65536).decode("latin-1")
        path = request.split(" ", 2)[1] if request.count(" ") >= 2 else "/"
        try:
            if path.startswith("/forever"):
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n")
                chunk = b"\0" * 65536
                while True:
                    self.request.sendall(chunk)
            elif path.startswith("/drip-head"):
                self._drip(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000)
            elif path.startswith("/drip"):
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                self._drip(b"\xff" * 1000)
        except OSError:
            pass  # the client hung up: what a bounded client does

    def _drip(self, data: bytes) -> None:
        end = time.monotonic() + DRIP_FOR
        for byte in data:
            if time.monotonic() > end:
                return
            self.request.sendall(bytes([byte]))
            time.sleep(0.2)


@pytest.fixture
def hostile():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once it is closed


def _run(tmp_path, images: list[str], **options):
    manifest = tmp_path / "urls.jsonl"
    manifest.write_text("".join(json.dumps({"image": image}) + "\n" for image in images))
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadManifest(manifest, **options), progress=False)
    return summary, {e["source"].rsplit("::", 1)[-1]: e["reason"] for e in summary.errors}


def test_an_endless_body_stops_at_the_size_limit(hostile, tmp_path):
    summary, reasons = _run(tmp_path, [f"{hostile}/forever.jpg"], max_file_size=2_000_000, download_retries=0)
    assert summary.status == "completed"
    assert "more than 2000000 bytes (the limit); stopped reading" in reasons[f"{hostile}/forever.jpg"]


def test_a_drip_is_cut_off_at_the_deadline(hostile, tmp_path):
    urls = [f"{hostile}/drip.jpg", f"{hostile}/drip-head.jpg"]
    summary, reasons = _run(tmp_path, urls, download_deadline=1.0, download_retries=1)
    assert summary.status == "completed"
    for url in urls:  # (the deadline covers the retries too: there is no time left for one)
        assert (
            "download failed after 1 attempt: timed out: not complete within the 1 s deadline" in reasons[url]
        )


def test_a_dead_host_fails_fast_after_a_few_connection_failures(tmp_path):
    dead = f"http://127.0.0.1:{_closed_port()}"
    urls = [f"{dead}/{i}.jpg" for i in range(40)]
    summary, reasons = _run(tmp_path, urls, download_host_failures=5, download_retries=3)
    assert summary.status == "completed" and len(reasons) == 40
    given_up = [r for r in reasons.values() if "given up after" in r]
    assert len(given_up) >= 30  # the first few tried (and retried), the rest failed at once
    assert all("connection failures in a row (last: [Errno 111] Connection refused)" in r for r in given_up)


def test_a_malformed_url_is_its_rows_error(tmp_path, photos):
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(photos))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    good = f"http://127.0.0.1:{server.server_address[1]}/dog/00.jpg"
    try:
        malformed = ["http://[::1", "http://127.0.0.1:port/x.jpg", "http:///x.jpg"]
        summary, reasons = _run(tmp_path, [*malformed, good])
    finally:
        server.shutdown()
        server.server_close()
    assert summary.status == "completed" and summary.step("load_manifest").n_out == 1
    assert "malformed URL 'http://[::1': Invalid IPv6 URL" in reasons["urls.jsonl:1"]
    assert "malformed URL" in reasons["http://127.0.0.1:port/x.jpg"]
    assert "malformed URL: no host name" in reasons["http:///x.jpg"]


def test_the_readme_download_example_runs(tmp_path, photos):
    import functools
    import http.server
    import re
    from pathlib import Path

    from captionary.cli import main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    [example] = [block for block in blocks if "download_host_failures" in block]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(photos))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    rows = [{"image": f"{base}/dog/0{i}.jpg", "caption": f"dog {i}"} for i in range(3)]
    (tmp_path / "urls.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "pipeline.yaml").write_text(example)
    try:
        assert main(["run", str(tmp_path / "pipeline.yaml"), "--no-progress"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "out" / "00.txt").read_text().strip() == "dog 0"


def test_a_host_given_up_is_probed_again_after_the_cooldown(photos):
    """The breaker is not for ever: after `host_cooldown` one attempt probes the host; an answer
    closes the breaker (a host that was down for a minute of a long run comes back)."""
    import functools
    import http.server

    from captionary.sources.download import Downloader

    port = _closed_port()
    url = f"http://127.0.0.1:{port}/dog/00.jpg"
    downloader = Downloader(retries=0, host_failures=3, host_cooldown=0.5)
    reasons = [downloader.fetch(url) for _ in range(4)]
    assert all("Connection refused" in r for r in reasons[:3]) and "given up after 3" in reasons[3]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(photos))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)  # the host comes back
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert "given up after 3" in downloader.fetch(url)  # still within the cooldown
        time.sleep(0.6)
        assert downloader.fetch(url) == (photos / "dog" / "00.jpg").read_bytes()  # the probe
        assert downloader.fetch(url) == (photos / "dog" / "00.jpg").read_bytes()  # closed again
    finally:
        server.shutdown()
        server.server_close()


def test_the_deadline_does_not_count_the_wait_for_a_turn_at_the_host(photos):
    """One at a time per host, each answer after 0.4 s, a 1 s deadline: all five arrive (the last
    waited 1.6 s for its turn, which is not its download's time)."""
    import http.server

    from captionary.sources.download import Downloader

    data = (photos / "dog" / "00.jpg").read_bytes()

    class Slow(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            time.sleep(0.4)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        downloader = Downloader(per_host=1, deadline=1.0, retries=0)
        results = [result for _, result in downloader.fetch_all(f"{base}/{i}.jpg" for i in range(5))]
    finally:
        server.shutdown()
        server.server_close()
    assert results == [data] * 5
