"""Ingest benchmark: load + size filter + resize to 1024 + kohya export of real-sized JPEGs.

2,000 distinct 2048x1536 JPEGs are made from the DreamBooth photos (crops, flips and colour shifts of
the 158 originals; or of examples/photos when the shared data is absent). In the same run we measure:
  * the raw decode rate of these files (decode only, one process): what one core can read at best;
  * a plain single-process Pillow loop doing the same work (`Image.thumbnail`, JPEG q95), and the
    same loop split over all cores (how far the machine itself scales);
  * captionary's first run on all cores, and its cached re-run.

    python benchmarks/ingest.py            # 2,000 images, ~6 minutes on 2 cores
    python benchmarks/ingest.py --n 200    # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

from captionary import FilterBySize, Load, Resize, Save, Workspace

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "dreambooth"
SIZE, EDGE, MIN_EDGE = (2048, 1536), 1024, 512


def make_one(args: tuple[Path, Path, int]) -> None:
    source, target, i = args
    image = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
    image = ImageOps.fit(image, SIZE, centering=((i * 37 % 100) / 100, (i * 53 % 100) / 100))
    if i % 2:
        image = ImageOps.mirror(image)
    image = image.point(lambda v, shift=i % 7: min(255, v + shift))  # distinct bytes per copy
    image.save(target, quality=90)


def make_images(folder: Path, n: int) -> None:
    sources = sorted((SHARED if SHARED.is_dir() else REPO / "examples" / "photos").rglob("*.jpg"))
    jobs = [(sources[i % len(sources)], folder / f"{i:05d}.jpg", i) for i in range(n)]
    with ProcessPoolExecutor() as pool:
        list(pool.map(make_one, jobs, chunksize=8))


def decode_only(files: list[Path]) -> None:
    for path in files:
        with Image.open(path) as image:
            image.load()


def plain_pillow(files: list[Path], out: Path) -> None:
    out.mkdir()
    _plain_part(files, out)


def plain_pillow_parallel(files: list[Path], out: Path, processes: int) -> None:
    """The same loop split over processes: how far this machine scales with cores at all."""
    out.mkdir()
    parts = [files[i::processes] for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_plain_part, parts, [out] * processes))


def _plain_part(files: list[Path], out: Path) -> None:
    """The loop a person writes by hand: size filter, thumbnail, JPEG q95."""
    for path in files:
        with Image.open(path) as image:
            if min(image.size) < MIN_EDGE:
                continue
            image.thumbnail((EDGE, EDGE), Image.Resampling.LANCZOS)
            image.save(out / path.name, quality=95)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="captionary-ingest-"))
    cores = os.cpu_count() or 1
    try:
        src = root / "photos"
        src.mkdir()
        made = timed(lambda: make_images(src, args.n))
        files = sorted(src.glob("*.jpg"))
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        decode_s = timed(lambda: decode_only(files))
        plain_s = timed(lambda: plain_pillow(files, root / "plain"))
        parallel_s = timed(lambda: plain_pillow_parallel(files, root / "plain-parallel", cores))
        pipeline = Load(src) >> FilterBySize(min_edge=MIN_EDGE) >> Resize(max_edge=EDGE) >> Save(root / "out")
        with Workspace(root / "ws") as ws:
            first_s = timed(lambda: ws.run(pipeline, progress=False))
            cached_s = timed(lambda: ws.run(pipeline, progress=False))
        n = len(files)
        each = f"{size_mb / n:.2f} MB each, made in {made:.0f} s"
        print(f"{n} JPEGs of {SIZE[0]}x{SIZE[1]} ({each}); {cores} cores;")
        print(f"load >> filter_by_size(min_edge={MIN_EDGE}) >> resize(max_edge={EDGE}) >> save(kohya)\n")
        print(f"{'run':<44}{'wall s':>9}{'images/s':>10}{'per core':>10}{'vs plain':>10}")
        rows = [
            ("raw decode only (1 process; the limit)", decode_s, 1),
            ("plain Pillow loop (1 process)", plain_s, 1),
            (f"plain loop split over {cores} processes (ceiling)", parallel_s, cores),
            ("captionary first run (all cores)", first_s, cores),
            ("captionary cached re-run", cached_s, cores),
        ]
        for label, seconds, used in rows:
            print(
                f"{label:<44}{seconds:>9.2f}{n / seconds:>10.1f}{n / seconds / used:>10.1f}"
                f"{plain_s / seconds:>9.2f}x"
            )
        print(
            f"\ngoal: at least 1.8x the plain loop's throughput on 2 cores -> {plain_s / first_s:.2f}x "
            f"(this machine scales the plain loop itself {plain_s / parallel_s:.2f}x over {cores} processes)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
