"""Downloads: `load_manifest` with URLs against img2dataset, on the same URL list, server and resize.

A local HTTP server (`python -m http.server`, in a process of its own) serves `--n` distinct photos
made from the DreamBooth photos (mirrored and cropped copies, fitted in `--edge` px); both tools
download every URL and write it resized to 512 px on its longest side (captionary:
`load_manifest >> resize: {max_edge: 512, resample: ...} >> save`, through its CLI, with its default
of 4 downloads at a time per host (`--per-host` for others); img2dataset: `--image_size 512
--resize_mode keep_ratio_largest --output_format files`, 2 processes; `--threads` download threads
for both). img2dataset shrinks with OpenCV's INTER_AREA (the mean of the area each output pixel
covers); captionary is timed with `resample: hamming` (the Pillow filter closest to it), `box` (the
cheapest) and its default `lanczos` (sharper, about twice the CPU); the last round's files are
compared with img2dataset's pixel by pixel. Each is run as a process of its own, `--reps` times, interleaved;
wall and CPU seconds (user + system of the process and its children), images/s, and the ratio to
img2dataset's median. First the server alone is timed (every URL fetched by `--threads` threads of
`http.client`), and each run's server CPU is printed, to show the server is not the bottleneck.

img2dataset runs in a virtual environment of its own (it pins libraries captionary's environment
has at other versions): `python -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset`, then

    python benchmarks/download.py --img2dataset /tmp/i2d/bin/python
    python benchmarks/download.py --img2dataset /tmp/i2d/bin/python --baseline /tmp/main/src
    python benchmarks/download.py --n 200 --reps 1      # quicker; without --img2dataset: captionary only

`--baseline` also times another captionary source tree (its src/), with `resample: lanczos` (older
trees have no `hamming` or `box`).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench_models import variant

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"
SIZE = 512


def make_photos(photos: Path, folder: Path, n: int, edge: int) -> list[str]:
    """`n` distinct JPEGs (q90) fitted in `edge` px, cycling over the photos; their file names."""
    folder.mkdir(parents=True)
    sources = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    names = []
    copies = -(-n // len(sources))
    for i, path in enumerate(sources):
        with Image.open(path) as opened:
            opened.draft("RGB", (edge, edge))
            image = opened.convert("RGB")
        image.thumbnail((edge, edge))
        for k in range(copies):
            if len(names) == n:
                return names
            name = f"{i:04d}_{k:03d}.jpg"
            variant(image, k).save(folder / name, quality=90)
            names.append(name)
    return names


def serve(folder: Path) -> tuple[subprocess.Popen, str]:
    """`python -m http.server` on a free port; the base URL once it answers."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "127.0.0.1",
        "--directory",
        str(folder),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/", timeout=1).close()
            return server, base
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the local server did not start")


def server_cpu(server: subprocess.Popen) -> float | None:
    """CPU seconds the server process has used so far (Linux: /proc), or None."""
    try:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_alone(urls: list[str], threads: int) -> float:
    """Seconds `threads` threads of http.client take to fetch every URL: the server's own rate."""
    import http.client
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlsplit

    def fetch(url: str) -> int:
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request("GET", parts.path)
            return len(connection.getresponse().read())
        finally:
            connection.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        assert all(pool.map(fetch, urls))
    return time.perf_counter() - start


def timed(command: list[str], cwd: Path, pythonpath: str | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the process and its children) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}  # img2dataset's albumentations: no update check
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".webp", ".png"))


def pixel_difference(ours: Path, theirs: Path, names: list[str]) -> tuple[float, int]:
    """Mean and max absolute difference of two tools' files for the same photos (img2dataset names
    them by row number, in one shard here: 00000/000000123.jpg)."""
    import numpy as np

    by_row = {int(path.stem): path for path in theirs.rglob("*.jpg")}
    total, count, worst = 0.0, 0, 0
    for row, name in enumerate(names):
        a = np.asarray(Image.open(ours / name).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(by_row[row]).convert("RGB"), dtype=np.int16)
        if a.shape != b.shape:  # sizes rounded differently by a pixel: compare the common part
            h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
            a, b = a[:h, :w], b[:h, :w]
        difference = np.abs(a - b)
        total += float(difference.sum())
        count += difference.size
        worst = max(worst, int(difference.max()))
    return total / count, worst


Run = tuple[str, str | None, str, int]
"""(label, PYTHONPATH or None for this environment's, resample, downloads per host)"""


def captionary_runs(args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    for per_host in args.per_host:
        host = f", {per_host} downloads per host" + (" (default)" if per_host == 4 else "")
        for resample in args.resample:
            runs.append((f"captionary, {resample}{host}", None, resample, per_host))
        if args.baseline:
            runs.append(
                (f"captionary {args.baseline_label}, lanczos{host}", args.baseline, "lanczos", per_host)
            )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--photos", type=Path, default=DEFAULT)
    parser.add_argument("--n", type=int, default=2000, help="photos served")
    parser.add_argument("--edge", type=int, default=1024, help="longest side of the served photos")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions")
    parser.add_argument(
        "--img2dataset", help="the Python of a virtual environment with img2dataset (its script beside it)"
    )
    parser.add_argument("--threads", type=int, default=16, help="download threads, both tools")
    parser.add_argument(
        "--per-host", type=int, nargs="+", default=[4], help="captionary's downloads_per_host"
    )
    parser.add_argument(
        "--resample", nargs="+", default=["hamming", "box", "lanczos"], help="captionary's filters"
    )
    parser.add_argument("--baseline", help="another captionary source tree (its src/), timed with lanczos")
    parser.add_argument("--baseline-label", default="[baseline]", help="its rows' label")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="captionary-download-"))
    server = None
    try:
        names = make_photos(args.photos, root / "served", args.n, args.edge)
        server, base = serve(root / "served")
        urls = [f"{base}/{name}" for name in names]
        (root / "urls.txt").write_text("\n".join(urls) + "\n")
        (root / "manifest.csv").write_text("image\n" + "\n".join(urls) + "\n")
        cpu_before = server_cpu(server)
        alone = server_alone(urls, args.threads)
        served_cpu = None if cpu_before is None else server_cpu(server) - cpu_before
        runs: dict[str, list[tuple[float, float, float | None]]] = {}

        def record(label: str, command: list[str], pythonpath: str | None) -> None:
            cpu_before = server_cpu(server)
            wall, cpu = timed(command, root, pythonpath)
            server_seconds = None if cpu_before is None else server_cpu(server) - cpu_before
            runs.setdefault(label, []).append((wall, cpu, server_seconds))

        for rep in range(args.reps):
            for label, pythonpath, resample, per_host in captionary_runs(args):
                ws, out = root / "ws", root / "out"
                pipeline = root / "pipeline.yaml"
                pipeline.write_text(
                    f"workspace: {ws}\nsteps:\n"
                    f"  - load_manifest: {{path: {root / 'manifest.csv'}, threads: {args.threads}, "
                    f"downloads_per_host: {per_host}}}\n"
                    f"  - resize: {{max_edge: {SIZE}, resample: {resample}}}\n"
                    f"  - save: {{path: {out}}}\n"
                )
                command = [sys.executable, "-m", "captionary.cli", "run", str(pipeline), "--no-progress"]
                record(label, command, pythonpath)
                assert count_images(out) == len(urls), f"captionary wrote {count_images(out)} of {len(urls)}"
                shutil.rmtree(ws, ignore_errors=True)
                kept = root / f"kept-{label}"
                if rep == args.reps - 1 and pythonpath is None and not kept.exists():
                    out.rename(kept)  # the last round's files: compared with img2dataset's below
                shutil.rmtree(out, ignore_errors=True)
            if args.img2dataset:
                target = root / f"i2d{rep}"
                i2d = [
                    str(Path(args.img2dataset).parent / "img2dataset"), "--url_list", str(root / "urls.txt"),
                    "--input_format", "txt", "--output_format", "files", "--output_folder", str(target),
                    "--image_size", str(SIZE), "--resize_mode", "keep_ratio_largest",
                    "--processes_count", "2", "--thread_count", str(args.threads),
                    "--enable_wandb", "False", "--disallowed_header_directives", "[]",
                ]  # fmt: skip
                record("img2dataset, area (baseline)", i2d, None)
                got = count_images(target)
                assert got == len(urls), f"img2dataset wrote {got} of {len(urls)}"
            if rep < args.reps - 1:
                shutil.rmtree(root / f"i2d{rep}", ignore_errors=True)
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"{len(urls)} photos ({args.edge} px, JPEG q90) from {base}, resized to {SIZE}; "
            f"{os.cpu_count()} cores, load average {load}; {args.reps} interleaved repetitions"
        )
        server_note = (
            "" if served_cpu is None else f", {served_cpu * 1000 / len(urls):.2f} ms server CPU a photo"
        )
        print(
            f"the server alone ({args.threads} threads of http.client): {len(urls) / alone:.0f} photos/s"
            f"{server_note}\n"
        )
        base_rate = None
        if "img2dataset, area (baseline)" in runs:
            base_rate = len(urls) / statistics.median(w for w, _, _ in runs["img2dataset, area (baseline)"])
        width = max(map(len, runs)) + 2
        columns = f"{'wall min':>9}{'median':>8}{'CPU s':>7}{'server':>8}{'images/s':>10}{'vs base':>9}"
        print(f"{'run':<{width}}{columns}")
        for label, values in runs.items():
            walls = [w for w, _, _ in values]
            rate = len(urls) / statistics.median(walls)
            ratio = f"{rate / base_rate:>8.2f}x" if base_rate else ""
            served = [s for _, _, s in values if s is not None]
            server_column = f"{statistics.median(served):>8.1f}" if served else f"{'':>8}"
            print(
                f"{label:<{width}}{min(walls):>9.2f}{statistics.median(walls):>8.2f}"
                f"{statistics.median(c for _, c, _ in values):>7.1f}{server_column}{rate:>10.1f}{ratio}"
            )
        print("\nCPU s: the tool's user + system seconds (its processes); server: the server's CPU seconds")
        if args.img2dataset:
            print(f"\npixels against img2dataset's files (0-255, the same {len(names)} photos):")
            for kept in sorted(root.glob("kept-*")):
                mean, worst = pixel_difference(kept, root / f"i2d{args.reps - 1}", names)
                print(f"  {kept.name.removeprefix('kept-'):<54} mean abs {mean:.2f}, max {worst}")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
