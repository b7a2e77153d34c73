"""Cache benchmark: a fully cached re-run of load >> filter_by_size >> resize >> save over N images.

Prints, in one run on this machine:
  * the first run (captionary, all cores) next to a plain single-process Pillow loop doing the same work;
  * the fully cached re-run's wall time (goal: under 1 s for 20,000 images);
  * microseconds per item for each step, from cached re-runs of growing pipeline prefixes;
  * the same re-run through the CLI (`captionary run`), process start-up and imports included.

    python benchmarks/cache.py            # 20,000 images (about 2 minutes on 2 cores)
    python benchmarks/cache.py --n 2000   # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from captionary import FilterBySize, Load, Resize, Save, Workspace

MIN_EDGE, MAX_EDGE = 48, 64


def make_images(folder: Path, n: int) -> None:
    """n distinct small JPEGs (96x72; every 10th is 40x30 so the size filter drops it)."""
    for i in range(n):
        size = (40, 30) if i % 10 == 0 else (96, 72)
        pixels = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        image.save(sub / f"{i:06d}.jpg", quality=90)


def plain_pillow(src: Path, out: Path) -> int:
    """The baseline: one process, one loop, same work (size filter, resize, JPEG out)."""
    written = 0
    for path in sorted(src.rglob("*.jpg")):
        with Image.open(path) as image:
            if min(image.size) < MIN_EDGE:
                continue
            image.thumbnail((MAX_EDGE, MAX_EDGE), Image.Resampling.LANCZOS)
            target = out / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target, quality=95)
            written += 1
    return written


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    n = args.n
    root = Path(tempfile.mkdtemp(prefix="captionary-bench-"))
    try:
        src = root / "photos"
        src.mkdir()
        seconds, _ = timed(lambda: make_images(src, n))
        print(f"generated {n} JPEGs in {seconds:.1f} s under {root}")

        steps = [Load(src), FilterBySize(min_edge=MIN_EDGE), Resize(max_edge=MAX_EDGE), Save(root / "out")]
        pipeline = steps[0] >> steps[1] >> steps[2] >> steps[3]
        baseline_s, written = timed(lambda: plain_pillow(src, root / "plain"))
        with Workspace(root / "ws") as ws:
            first_s, first = timed(lambda: ws.run(pipeline, progress=False))
            assert first.step("save").computed == written, (first.table(), written)
            rerun_s, rerun = timed(lambda: ws.run(pipeline, progress=False))
            assert rerun.computed == 0, rerun.table()
            prefixes = []
            for k in range(1, len(steps) + 1):
                prefix = steps[0]
                for step in steps[1:k]:
                    prefix = prefix >> step
                best = min(timed(lambda p=prefix: ws.run(p, progress=False))[0] for _ in range(3))
                prefixes.append((steps[k - 1].name, best))

        (root / "bench.yaml").write_text(
            f"workspace: ws\nsteps:\n  - load: {{path: photos}}\n"
            f"  - filter_by_size: {{min_edge: {MIN_EDGE}}}\n  - resize: {{max_edge: {MAX_EDGE}}}\n"
            f"  - save: {{path: out}}\n"
        )
        cli_s, proc = timed(lambda: subprocess.run(
            [sys.executable, "-m", "captionary.cli", "run", str(root / "bench.yaml"), "--no-progress"],
            capture_output=True, text=True, check=True))

        print(f"\n{n} images, {os.cpu_count()} cores; pipeline: load >> filter_by_size >> resize >> save\n")
        print(f"{'run':<44}{'wall s':>10}{'vs plain':>10}")
        print(f"{'plain Pillow loop, 1 process (baseline)':<44}{baseline_s:>10.2f}{1:>10.2f}")
        print(f"{'captionary first run':<44}{first_s:>10.2f}{first_s / baseline_s:>10.2f}")
        print(f"{'captionary fully cached re-run (API)':<44}{rerun_s:>10.3f}{rerun_s / baseline_s:>10.3f}")
        print(f"{'captionary fully cached re-run (CLI)':<44}{cli_s:>10.3f}{cli_s / baseline_s:>10.3f}")
        print(f"\ncached re-run cost per step (best of 3, from growing prefixes)\n")
        print(f"{'step':<20}{'items in':>10}{'ms':>10}{'us/item':>10}")
        previous = 0.0
        for (name, seconds), stats in zip(prefixes, rerun.steps):
            delta = seconds - previous
            previous = seconds
            print(f"{name:<20}{stats.n_in:>10}{delta * 1e3:>10.1f}{delta / max(1, stats.n_in) * 1e6:>10.1f}")
        print(f"\ngoal: fully cached re-run under 1 s for 20,000 images -> "
              f"{'met' if rerun_s < 1 and n >= 20_000 else 'see above'} ({rerun_s:.3f} s for {n})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
