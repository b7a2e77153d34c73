"""captionary against the tools a user would pick instead, on the same data in the same run.

Rows (each tool a process of its own where it is a command users run; interleaved repetitions; min
and median wall seconds; the machine's load average printed; the ratio of the peer's median to
captionary's):

  * first run and cached re-run of `load >> filter_by_size >> set_caption >> save` on `--n` 600x600
    JPEGs, the whole CLI process (`captionary run`), against beprepared's `Load >> FilterBySize >>
    SetCaption >> Save` in a Python process of its own (its workspace created the same way);
    when no later step decodes it, captionary's `load` checks each new JPEG whole (its end-of-image
    marker after the scan: a cut-off file fails) without decoding it; beprepared's `verify()` reads
    no JPEG pixel data either; a row with `load: {verify: false}` reads headers only;
    `--baseline SRC` times another captionary source tree (e.g. a `git worktree` of main) too;
  * the pHash search of `--hashes` 64-bit hashes (1% planted near copies) at threshold 8: captionary's
    multi-index search against imagededup's (`PHash().find_duplicates(encoding_map=...)`, its BK-tree);
  * downloads: `--downloads` photos from a local server resized to 512 px, `load_manifest` against
    img2dataset (the helpers of benchmarks/download.py; see there).

Each peer runs from a virtual environment of its own under /tmp; a peer whose Python is not given is
skipped with a line saying so:

    python -m venv /tmp/bp && /tmp/bp/bin/pip install --no-deps beprepared==0.2.3 && \\
      /tmp/bp/bin/pip install pillow numpy tqdm colorlog colorama requests 'fastapi<0.116' 'uvicorn<0.33'
    python -m venv /tmp/idd && /tmp/idd/bin/pip install imagededup
    python -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset

    python benchmarks/peers.py --beprepared /tmp/bp/bin/python --imagededup /tmp/idd/bin/python \\
        --img2dataset /tmp/i2d/bin/python                     # a few minutes on 2 cores
    python benchmarks/peers.py ... --n 20000 --hashes 30000 --downloads 2000   # the issue's sizes

beprepared's package `__init__` imports every node it has (torch, CLIP, VLMs); the runner imports
only the modules of Load, FilterBySize, SetCaption and Save (and what they import), which is why
`--no-deps` plus those few libraries is enough.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SIDE = 600
MIN_EDGE = 512
CAPTION = "a photo of a test pattern"
THRESHOLD = 8
UNVERIFIED = "load verify: false"

BEPREPARED = r"""
import importlib.util, os, socket, sys, types

# beprepared/__init__.py imports every node (torch, CLIP, VLMs): load the package's modules without it
root = importlib.util.find_spec("beprepared").submodule_search_locations[0]
for name, path in (("beprepared", root), ("beprepared.nodes", os.path.join(root, "nodes"))):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
from beprepared.workspace import Workspace
from beprepared.nodes.load import Load
from beprepared.nodes.filters import FilterBySize
from beprepared.nodes.utils import SetCaption
from beprepared.nodes.save import Save

with socket.socket() as probe:  # its web interface starts with every run: a free port
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
src, workspace, out, min_edge, caption = sys.argv[1:6]
with Workspace(workspace, port=port) as ws:
    Load(src) >> FilterBySize(min_edge=int(min_edge)) >> SetCaption(caption) >> Save(out)
    ws.run()
"""

IMAGEDEDUP = r"""
import json, sys, time
from imagededup.methods import PHash
encodings = json.load(open(sys.argv[1]))
start = time.perf_counter()
found = PHash(verbose=False).find_duplicates(encoding_map=encodings, max_distance_threshold=int(sys.argv[2]))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "pairs": sum(len(v) for v in found.values()) // 2}))
"""


def make_images(folder: Path, n: int) -> None:
    """`n` distinct 600x600 JPEGs (q90): smooth colour fields with a few shapes, seeded by their index,
    about the size of a photo of that size; every 10th is 400x400 so the size filter drops it."""
    from PIL import Image, ImageDraw

    base = Image.linear_gradient("L").resize((SIDE, SIDE))
    for i in range(n):
        rng = random.Random(i)
        channels = [base.rotate(rng.randrange(360)) for _ in range(3)]
        image = Image.merge("RGB", channels)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = rng.randrange(SIDE), rng.randrange(SIDE)
            r = rng.randrange(10, 120)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
        if i % 10 == 9:
            image = image.resize((400, 400))
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        image.save(sub / f"{i:06d}.jpg", quality=90)


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the process and its children) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def count_files(folder: Path, suffix: str) -> int:
    return sum(1 for p in folder.rglob("*" + suffix))


class Runs:
    """Wall and CPU seconds per row label, in the order rows were first measured."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[float, float]]] = {}

    def add(self, label: str, measured: tuple[float, float]) -> None:
        self.rows.setdefault(label, []).append(measured)

    def median(self, label: str) -> float:
        return statistics.median(w for w, _ in self.rows[label])

    def print(self, title: str, base: str | None) -> None:
        print(f"\n{title}")
        width = max(48, *(len(label) + 2 for label in self.rows))
        print(f"{'':<{width}}{'wall min':>9}{'median':>9}{'CPU med':>9}{'peer / this':>13}")
        for label, values in self.rows.items():
            walls = [w for w, _ in values]
            ratio = f"{self.median(base) / statistics.median(walls):>12.2f}x" if base in self.rows else ""
            print(
                f"{label:<{width}}{min(walls):>9.2f}{statistics.median(walls):>9.2f}"
                f"{statistics.median(c for _, c in values):>9.2f}{ratio}"
            )


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def pipeline_rows(args: argparse.Namespace, root: Path, summary: list[tuple[str, ...]]) -> None:
    """First run and cached re-run: captionary's CLI (and a baseline tree's) against beprepared.

    Every run writes into folders of its own, deleted only when the row is done: on this machine's
    disk (ext4 without a journal) creating a file skips, one by one, the inodes deleted in the last
    ~30 s, so deleting a run's thousands of files just before the next run would slow that run's
    file creations (by 0.1-1 ms each), and whichever tool came next would pay for it."""
    src = root / "photos"
    src.mkdir()
    start = time.perf_counter()
    make_images(src, args.n)
    kept = args.n - args.n // 10
    print(f"made {args.n} JPEGs in {time.perf_counter() - start:.1f} s; load average {load_average()}")
    this = os.environ.get("PYTHONPATH", "")
    variants = [("captionary", this, ""), (f"captionary, {UNVERIFIED}", this, ", verify: false")]
    if args.baseline:
        variants.append(("captionary [baseline]", args.baseline, ""))
    runs = Runs()
    for rep in range(args.reps):
        for n, (label, tree, load_options) in enumerate(variants):
            ws, out = root / f"ws-{rep}-{n}", root / f"out-{rep}-{n}"
            yaml = root / f"pipeline-{rep}-{n}.yaml"
            yaml.write_text(
                f"workspace: {ws}\nsteps:\n  - load: {{path: {src}{load_options}}}\n"
                f"  - filter_by_size: {{min_edge: {MIN_EDGE}}}\n"
                f"  - set_caption: {{template: {json.dumps(CAPTION)}}}\n  - save: {{path: {out}}}\n"
            )
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env |= {"PYTHONPATH": tree} if tree else {}
            env["PYTHONPYCACHEPREFIX"] = str(root / f"pycache-{n}")  # as installed: bytecode kept
            command = [sys.executable, "-m", "captionary.cli", "run", str(yaml), "--no-progress"]
            runs.add(f"{label}: first run", timed(command, root, env))
            assert count_files(out, ".txt") == kept, f"{label} wrote {count_files(out, '.txt')} of {kept}"
            runs.add(f"{label}: cached re-run", timed(command, root, env))
        if args.beprepared:
            ws, out = root / f"bp-{rep}", root / f"bp-out-{rep}"
            command = [args.beprepared, "-c", BEPREPARED, str(src), str(ws), str(out), str(MIN_EDGE), CAPTION]
            runs.add("beprepared 0.2.3: first run", timed(command, root))
            assert count_files(out, ".txt") == kept, f"beprepared wrote {count_files(out, '.txt')} of {kept}"
            runs.add("beprepared 0.2.3: cached re-run", timed(command, root))
    print(
        f"\n{args.n} {SIDE}x{SIDE} JPEGs (every 10th 400x400, dropped), load >> filter_by_size >> "
        f"set_caption >> save, whole process; {args.reps} interleaved repetitions; "
        f"{os.cpu_count()} cores, load average {load_average()}"
    )
    if not args.beprepared:
        print("beprepared: skipped (no --beprepared PYTHON given)")
    for kind in ("first run", "cached re-run"):
        label = f"beprepared 0.2.3: {kind}"
        runs_of_kind = Runs()
        runs_of_kind.rows = {k: v for k, v in runs.rows.items() if k.endswith(kind)}
        runs_of_kind.print(kind, label if args.beprepared else None)
        if args.beprepared:
            for ours_label in ("captionary", f"captionary, {UNVERIFIED}"):
                ours, theirs = runs.median(f"{ours_label}: {kind}"), runs.median(label)
                summary.append(
                    (f"{kind}, {args.n:,} 600x600 JPEGs, load >> filter_by_size >> set_caption >> save, "
                     f"whole CLI process{'' if ours_label == 'captionary' else ', ' + UNVERIFIED}",
                     f"{ours:.2f} s", f"beprepared 0.2.3: {theirs:.2f} s", f"{theirs / ours:.2f}x")
                )  # fmt: skip


def planted_hashes(n: int) -> list[int]:
    """`n` random 64-bit hashes, 1% of them near copies (1-8 bits flipped) of another."""
    rng = random.Random(0)
    hashes = [rng.getrandbits(64) for _ in range(n - n // 100)]
    for _ in range(n // 100):
        flipped = rng.choice(hashes)
        for bit in rng.sample(range(64), rng.randint(1, THRESHOLD)):
            flipped ^= 1 << bit
        hashes.append(flipped)
    return hashes


def phash_rows(args: argparse.Namespace, root: Path, summary: list[tuple[str, ...]]) -> None:
    """The pHash search alone: captionary's multi-index search against imagededup's, same hashes."""
    import numpy as np

    from captionary.steps.dedup.hamming import hamming_pairs

    hashes = planted_hashes(args.hashes)
    codes = np.array(hashes, dtype=np.uint64)
    encodings = root / "encodings.json"
    encodings.write_text(json.dumps({f"{i}.jpg": f"{h:016x}" for i, h in enumerate(hashes)}))
    runs = Runs()
    found: dict[str, int] = {}
    for _ in range(args.reps):
        start = time.perf_counter()
        cpu = time.process_time()
        pairs = hamming_pairs(codes, THRESHOLD)
        runs.add("captionary hamming_pairs", (time.perf_counter() - start, time.process_time() - cpu))
        found["captionary hamming_pairs"] = len(pairs)
        if args.imagededup:
            done = subprocess.run(
                [args.imagededup, "-c", IMAGEDEDUP, str(encodings), str(THRESHOLD)],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs.add("imagededup PHash find_duplicates", (result["seconds"], float("nan")))
            found["imagededup PHash find_duplicates"] = result["pairs"]
    print(
        f"\npHash search, {args.hashes:,} random 64-bit hashes with 1% planted near copies, threshold "
        f"{THRESHOLD} bits (search only, hashes given); {args.reps} interleaved repetitions; "
        f"load average {load_average()}"
    )
    if not args.imagededup:
        print("imagededup: skipped (no --imagededup PYTHON given)")
    base = "imagededup PHash find_duplicates"
    runs.print("pHash search (imagededup's CPU not measured: its search runs in its own process)", base)
    for label, count in found.items():
        print(f"  {label}: {count} pairs")
    if args.imagededup:
        ours, theirs = runs.median("captionary hamming_pairs"), runs.median(base)
        summary.append(
            (f"pHash search, {args.hashes:,} hashes", f"{ours:.2f} s", f"imagededup: {theirs:.2f} s",
             f"{theirs / ours:.1f}x")
        )  # fmt: skip


def download_rows(args: argparse.Namespace, root: Path, summary: list[tuple[str, ...]]) -> None:
    """Downloads: captionary's `load_manifest >> resize >> save` (its default 4 downloads per host)
    against img2dataset, with benchmarks/download.py's photos, server and commands."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import download

    threads = 16
    names = download.make_photos(download.DEFAULT, root / "served", args.downloads, 1024)
    server, base = download.serve(root / "served")
    try:
        urls = [f"{base}/{name}" for name in names]
        (root / "urls.txt").write_text("\n".join(urls) + "\n")
        (root / "manifest.csv").write_text("image\n" + "\n".join(urls) + "\n")
        runs = Runs()
        for rep in range(args.reps):
            ws, out = root / f"dl-ws{rep}", root / f"dl-out{rep}"
            yaml = root / f"download{rep}.yaml"
            yaml.write_text(
                f"workspace: {ws}\nsteps:\n"
                f"  - load_manifest: {{path: {root / 'manifest.csv'}, threads: {threads}}}\n"
                f"  - resize: {{max_edge: {download.SIZE}}}\n  - save: {{path: {out}}}\n"
            )
            command = [sys.executable, "-m", "captionary.cli", "run", str(yaml), "--no-progress"]
            runs.add("captionary load_manifest >> resize >> save", download.timed(command, root))
            assert download.count_images(out) == len(urls)
            if args.img2dataset:
                target = root / f"i2d{rep}"
                i2d = [
                    str(Path(args.img2dataset).parent / "img2dataset"), "--url_list", str(root / "urls.txt"),
                    "--input_format", "txt", "--output_format", "files", "--output_folder", str(target),
                    "--image_size", str(download.SIZE), "--resize_mode", "keep_ratio_largest",
                    "--processes_count", "2", "--thread_count", str(threads),
                    "--enable_wandb", "False", "--disallowed_header_directives", "[]",
                ]  # fmt: skip
                runs.add("img2dataset", download.timed(i2d, root))
                assert download.count_images(target) == len(urls)
    finally:
        server.kill()
        server.wait()
    print(
        f"\ndownloads: {len(urls)} photos (1024 px, JPEG q90) from a local server, resized to "
        f"{download.SIZE}; {threads} download threads each (img2dataset: 2 processes); {args.reps} "
        f"interleaved repetitions; load average {load_average()}"
    )
    if not args.img2dataset:
        print("img2dataset: skipped (no --img2dataset PYTHON given)")
    runs.print("downloads", "img2dataset" if args.img2dataset else None)
    if args.img2dataset:
        ours, theirs = runs.median("captionary load_manifest >> resize >> save"), runs.median("img2dataset")
        summary.append(
            (f"{len(urls):,} photos downloaded from a local server, resized to {download.SIZE}",
             f"{ours:.1f} s", f"img2dataset: {theirs:.1f} s", f"{theirs / ours:.2f}x")
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--beprepared", help="a Python with beprepared 0.2.3 (its own venv)")
    parser.add_argument("--imagededup", help="a Python with imagededup (its own venv)")
    parser.add_argument(
        "--img2dataset", help="a Python with img2dataset (its own venv, its script beside it)"
    )
    parser.add_argument("--baseline", help="another captionary source tree (its src/) for the pipeline rows")
    parser.add_argument("--n", type=int, default=2000, help="600x600 JPEGs for the pipeline rows")
    parser.add_argument("--hashes", type=int, default=5000, help="hashes for the pHash search row")
    parser.add_argument("--downloads", type=int, default=300, help="photos for the downloads row")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument(
        "--only", default="pipeline,phash,downloads", help="comma-separated: pipeline, phash, downloads"
    )
    args = parser.parse_args()
    rows: dict[str, Callable[[argparse.Namespace, Path, list[tuple[str, ...]]], None]] = {
        "pipeline": pipeline_rows,
        "phash": phash_rows,
        "downloads": download_rows,
    }
    print(f"{os.cpu_count()} cores, load average {load_average()} at the start")
    summary: list[tuple[str, ...]] = []
    for name in args.only.split(","):
        root = Path(tempfile.mkdtemp(prefix=f"captionary-peers-{name}-"))
        try:
            rows[name](args, root, summary)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    if summary:
        print(f"\nsummary (load average {load_average()})\n")
        print("| work | captionary | peer | peer / captionary |\n|---|---|---|---|")
        for row in summary:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
