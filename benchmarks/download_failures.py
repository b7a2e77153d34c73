"""Download failures benchmark: wall time for many image URLs to one host that fails, with the
Downloader `load_manifest` uses (16 workers, 4 per host, 3 retries with backoff: the defaults).

  * dead host: a closed port on 127.0.0.1 (every connection refused at once);
  * drip host: a server that answers every request, then sends its 1,000,000-byte body one byte a
    second (a timeout of 2 s for both codes; the new code's deadline per URL: 2 s).

Each measurement runs in a child process with a cut-off, so the old code, which can read a drip for
ever, is stopped. The baseline is the code before the circuit breaker and deadlines (a checkout
of `main` from before them: `git worktree add /tmp/h13-old <commit>`), its `sources/download.py`
loaded from there. It is slow (every URL is retried with 1+2+4 s of backoff), so it gets fewer URLs:
its time for the full count is extrapolated linearly and marked so. Repetitions are interleaved.

    python benchmarks/download_failures.py --baseline /tmp/h13-old
    python benchmarks/download_failures.py --baseline /tmp/h13-old --urls 10000 --baseline-urls 64
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.util, json, sys, time
path, base, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
urls = [f"{base}/{i}.jpg" for i in range(count)]
spec = importlib.util.spec_from_file_location("download_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
started = time.perf_counter()
try:  # the new code: a deadline per URL besides the timeout of each wait
    downloader = module.Downloader(timeout=timeout, deadline=timeout)
except TypeError:  # the old code: the timeout of each wait only
    downloader = module.Downloader(timeout=timeout)
results = list(downloader.fetch_all(urls))
seconds = time.perf_counter() - started
failed = sum(isinstance(r, str) for _, r in results)
fast = sum(isinstance(r, str) and "given up" in r for _, r in results)
print(json.dumps({"seconds": seconds, "failed": failed, "given_up": fast, "example": results[-1][1][:160]}))
"""


class Drip(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            while True:
                self.request.sendall(b"\xff")
                time.sleep(1.0)
        except OSError:
            pass


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(download_py: Path, base: str, count: int, cutoff: float) -> dict:
    command = [sys.executable, "-c", CHILD, str(download_py), base, str(count), "2.0"]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cutoff, check=True)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "cut_off": time.perf_counter() - started, "count": count}
    return {**json.loads(done.stdout), "count": count}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the old code")
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--baseline-urls", type=int, default=64, help="URLs the old code gets (slow)")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--cutoff", type=float, default=60.0, help="seconds before a child is stopped")
    args = parser.parse_args()
    old = args.baseline / "src" / "captionary" / "sources" / "download.py"
    new = REPO / "src" / "captionary" / "sources" / "download.py"

    drip = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Drip)
    drip.daemon_threads = True
    threading.Thread(target=drip.serve_forever, daemon=True).start()
    hosts = {
        "dead host": f"http://127.0.0.1:{closed_port()}",
        "drip host": f"http://127.0.0.1:{drip.server_address[1]}",
    }
    rows: dict[tuple[str, str], list[dict]] = {}
    try:
        for _ in range(args.reps):  # interleaved: old, new, old, new
            for case, base in hosts.items():
                for label, path, count in (("old", old, args.baseline_urls), ("new", new, args.urls)):
                    rows.setdefault((case, label), []).append(measure(path, base, count, args.cutoff))
    finally:
        drip.shutdown()
        drip.server_close()

    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    header = f"{'case':<10} {'code':<4} {'URLs':>6} {'median s':>9} {'runs':>18} {'s per 10,000 URLs':>20}"
    header += "  note"
    print(header)
    print("-" * len(header))
    per_10k: dict[tuple[str, str], float | None] = {}
    for (case, label), results in rows.items():
        count = results[0]["count"]
        times = [r["seconds"] for r in results]
        if any(t is None for t in times):
            cut = min(r["cut_off"] for r in results if r["seconds"] is None)
            per_10k[case, label] = None
            note = f"cut off after {cut:.0f} s without finishing ({count} URLs)"
            print(f"{case:<10} {label:<4} {count:>6} {'-':>9} {'-':>18} {'-':>20}  {note}")
            continue
        median = statistics.median(times)
        scaled = median * 10_000 / count
        per_10k[case, label] = scaled
        note = "measured" if count == 10_000 else f"extrapolated linearly from {count} URLs"
        note += f"; {results[0]['failed']} failed, {results[0]['given_up']} of them with the host given up"
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"{case:<10} {label:<4} {count:>6} {median:>9.2f} {runs:>18} {scaled:>20.1f}  {note}")
    for case in hosts:
        before, after = per_10k.get((case, "old")), per_10k.get((case, "new"))
        if before and after:
            print(f"{case}: {before / after:,.0f}x less wall time for 10,000 URLs")
    print("example reasons (new):", {case: rows[case, "new"][0].get("example") for case in hosts})


if __name__ == "__main__":
    main()
