"""First runs of `load >> filter_by_size >> resize >> save`, this source tree against a baseline tree
(e.g. a `git worktree` of main) and a plain one-process Pillow loop, interleaved, each in a fresh
process with a new workspace and output folder. Prints wall and CPU seconds (the process and its pool
workers) per variant, min and median, ratios against the plain loop, and the load average.

    python benchmarks/first_run_ab.py --photos /work/s3/photos --baseline /work/main/src --reps 3
    python benchmarks/first_run_ab.py --photos ../shared/data/dreambooth --edge 1024 --threads 1 2 4

Every image step uses the Pillow engine (`image_engine: pillow`; `benchmarks/cache.py` runs the default,
`auto`, which takes Pillow for images this small).
`--threads` runs this tree once per number of `save` threads (the baseline runs with its default).
Every run's files are kept until all rounds are done: deleting thousands of files just before the
next run slows that run's file creations on this machine's disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

RUN = """
import json, resource, sys, time
from pathlib import Path
from captionary import FilterBySize, Load, Resize, Save, Workspace
photos, root, edge = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
threads, image_format = sys.argv[4:6]
save = {} if threads == "default" else {"threads": int(threads)}
steps = Load(photos) >> FilterBySize(min_edge=48)
if edge:
    steps = steps >> Resize(max_edge=edge, engine="pillow")
steps = steps >> Save(root / "out", engine="pillow", image_format=image_format, **save)
if __name__ == "__main__":
    start = time.perf_counter()
    with Workspace(root / "ws") as ws:
        summary = ws.run(steps, progress=False)
    wall = time.perf_counter() - start
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    print(json.dumps({"wall": wall, "cpu": sum(u.ru_utime + u.ru_stime for u in usage),
                      "sys": sum(u.ru_stime for u in usage), "written": summary.step("save").computed}))
"""

# the loop of benchmarks/cache.py (it writes no caption files; `save` writes one per image)
PLAIN = """
import json, resource, sys, time
from pathlib import Path
from PIL import Image
photos, root, edge, image_format = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
start = time.perf_counter()
written = 0
for path in sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
    with Image.open(path) as image:
        if min(image.size) < 48:
            continue
        if edge:
            image.thumbnail((edge, edge), Image.Resampling.LANCZOS)
        suffix = ".jpg" if image_format in ("jpg", "original") else "." + image_format
        target = root / "out" / path.relative_to(photos).with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=95)
        written += 1
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
                  "sys": usage.ru_stime, "written": written}))
"""


def run_once(code: str, src: str | None, args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=src) if src else dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"run failed ({args}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--baseline", help="the src folder of another tree (e.g. /work/main/src)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--edge", type=int, default=64, help="resize's max_edge (0: no resize step)")
    parser.add_argument("--image-format", default="original", help="save's image_format (png: save encodes)")
    parser.add_argument("--threads", nargs="*", default=["default"], help="save threads to try (this tree)")
    parser.add_argument("--no-plain", action="store_true", help="leave out the plain Pillow loop")
    parser.add_argument("--tmp", type=Path, default=None, help="where runs write (default: a temp folder)")
    args = parser.parse_args()
    variants: list[tuple[str, str, str | None, str]] = []  # (label, code, src, threads)
    if not args.no_plain:
        variants.append(("plain Pillow loop, 1 process", PLAIN, None, ""))
    for threads in args.threads:
        label = "this tree" + ("" if threads == "default" else f", save threads {threads}")
        variants.append((label, RUN, SRC, threads))
    if args.baseline:
        variants.append(("baseline tree", RUN, args.baseline, "default"))
    root = Path(tempfile.mkdtemp(prefix="first-run-ab-", dir=args.tmp))
    results: dict[str, list[dict]] = {label: [] for label, *_ in variants}
    loads = []
    try:
        for rep in range(args.reps):
            order = variants if rep % 2 == 0 else variants[::-1]  # alternate which goes first
            for n, (label, code, src, threads) in enumerate(order):
                folder = root / f"{rep}-{n}"
                extra = [threads] if code is RUN else []
                run_args = [str(args.photos), str(folder), str(args.edge), *extra, args.image_format]
                results[label].append(run_once(code, src, run_args))
                loads.append(os.getloadavg()[0])
                print(f"  round {rep + 1} {label}: {results[label][-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    written = {r["written"] for runs in results.values() for r in runs}
    print(
        f"\n{args.photos}: resize to {args.edge} px, {args.reps} interleaved rounds, {os.cpu_count()} cores; "
        f"images written per run: {sorted(written)}; 1-min load average during the rounds: "
        f"min {min(loads):.2f}, max {max(loads):.2f}\n"
    )
    plain = statistics.median(r["wall"] for r in results[variants[0][0]]) if not args.no_plain else None
    print(f"{'':<36}{'wall min':>9}{'median':>9}{'CPU med':>9}{'sys med':>9}{'plain/this':>11}")
    for label, runs in results.items():
        walls = [r["wall"] for r in runs]
        med = statistics.median(walls)
        ratio = f"{plain / med:>10.2f}x" if plain else ""
        cpu = statistics.median(r["cpu"] for r in runs)
        sys_s = statistics.median(r["sys"] for r in runs)
        print(f"{label:<36}{min(walls):>9.2f}{med:>9.2f}{cpu:>9.2f}{sys_s:>9.2f}{ratio}")


if __name__ == "__main__":
    main()
