"""Fan-out throughput: a 4-way crop of 2,000 photos through `crop_boxes >> resize >> save`, next to a
plain Pillow loop doing the same crops, in the same run; then the cached re-run's time per child.

The photos are made from the DreamBooth set (each resized to several widths, JPEG q90) in a temp
folder. Each photo gets four boxes (its quadrants, with a margin) from a property step, so both sides
crop exactly the same regions: decode once, crop four times, resize each crop to a 256 px longer
edge (LANCZOS), JPEG q90, write. Runs alternate (plain, ours, plain, ours, ...) and the table shows
each run's wall time, the load average before it, and the ratio to the plain loop.

    python benchmarks/fanout.py                       # 2,000 photos, 2 repetitions
    python benchmarks/fanout.py --count 400 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

from PIL import Image, ImageOps

from captionary import CropBoxes, Load, Map, Resize, Save, Workspace
from captionary.steps.transforms.region import pixel_box

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"
EDGE = 256
WIDTHS = tuple(range(560, 1280, 48))
BOXES = [
    [0.02, 0.02, 0.52, 0.52],
    [0.48, 0.02, 0.98, 0.52],
    [0.02, 0.48, 0.52, 0.98],
    [0.48, 0.48, 0.98, 0.98],
]


class QuadrantBoxes(Map):
    """The four quadrant boxes (what a detector would write)."""

    name: ClassVar[str] = "bench_quadrant_boxes"
    writes: ClassVar[tuple[str, ...]] = ("face_boxes",)
    reads_image: ClassVar[bool] = False

    def apply(self, item):
        return {"face_boxes": BOXES}


def make_photos(source: Path, target: Path, count: int) -> list[Path]:
    """`count` distinct JPEGs: every source photo resized to several widths, until there are enough
    (each original decoded once)."""
    originals = sorted(source.rglob("*.jpg"))
    made: list[Path] = []
    rounds = -(-count // len(originals))
    for path in originals:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
        for width in WIDTHS[:rounds]:
            height = max(1, round(image.height * width / image.width))
            out = target / f"{path.parent.name}_{path.stem}_{width}.jpg"
            image.resize((width, height), Image.Resampling.BILINEAR).save(out, quality=90)
            made.append(out)
    made = made[:count]
    for extra in sorted(target.glob("*.jpg")):
        if extra not in made:
            extra.unlink()
    return made


def plain_pillow(photos: list[Path], out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in photos:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            for index, box in enumerate(BOXES):
                crop = image.crop(pixel_box(box, *image.size))
                crop.thumbnail((EDGE, EDGE), Image.Resampling.LANCZOS)
                crop.save(out / f"{path.stem}_box{index}.jpg", quality=90)
                written += 1
    return written


def pipeline(photos: Path, out: Path):
    return Load(photos) >> QuadrantBoxes() >> CropBoxes() >> Resize(max_edge=EDGE) >> Save(out, quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--photos", type=Path, default=DEFAULT if DEFAULT.is_dir() else REPO / "examples" / "photos"
    )
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="captionary's pool (default: all cores)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="captionary-fanout-"))
    try:
        (root / "photos").mkdir()
        started = time.perf_counter()
        photos = make_photos(args.photos, root / "photos", args.count)
        print(
            f"made {len(photos)} photos ({WIDTHS[0]}-{WIDTHS[-1]} px wide) "
            f"in {time.perf_counter() - started:.0f} s"
        )
        children = 4 * len(photos)
        rows = []
        for rep in range(args.repeat):
            load = os.getloadavg()[0]
            started = time.perf_counter()
            written = plain_pillow(photos, root / f"plain{rep}")
            plain_s = time.perf_counter() - started
            assert written == children
            rows.append((f"plain Pillow loop, 1 process (rep {rep + 1})", plain_s, load, plain_s))
            load = os.getloadavg()[0]
            with Workspace(root / f"ws{rep}") as ws:
                options = {"progress": False} | (
                    {"workers": args.workers} if args.workers is not None else {}
                )
                started = time.perf_counter()
                summary = ws.run(pipeline(root / "photos", root / f"out{rep}"), **options)
                ours_s = time.perf_counter() - started
                assert summary.step("save").computed == children, summary.table()
                rows.append(
                    (f"captionary first run, {os.cpu_count()} cores (rep {rep + 1})", ours_s, load, plain_s)
                )
                load = os.getloadavg()[0]
                started = time.perf_counter()
                again = ws.run(pipeline(root / "photos", root / f"out{rep}"), **options)
                cached_s = time.perf_counter() - started
                assert again.computed == 0, again.table()
                rows.append((f"captionary re-run, all cached (rep {rep + 1})", cached_s, load, plain_s))
        print(
            f"\n{len(photos)} photos -> {children} crops ({len(BOXES)} per photo), resize to {EDGE} px, "
            f"JPEG q90; {os.cpu_count()} cores; Python {sys.version.split()[0]}\n"
        )
        print(f"{'run':<48}{'wall s':>8}{'crops/s':>9}{'ms/child':>10}{'vs plain':>10}{'load':>7}")
        for label, seconds, load, plain_s in rows:
            print(
                f"{label:<48}{seconds:>8.2f}{children / seconds:>9.0f}{1000 * seconds / children:>10.3f}"
                f"{plain_s / seconds:>9.2f}x{load:>7.1f}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
