"""First-run throughput on real photos: `load >> resize >> save` against a plain Pillow loop.

Both do the same work (decode, resize to a 1024 px longer edge with LANCZOS, JPEG quality 95, write);
the baseline is the loop a person writes by hand (one process, `Image.thumbnail`, which decodes JPEGs at
reduced scale). Both run in this process, one after the other, on the same files.

    python benchmarks/first_run.py                          # ../shared/data/dreambooth if present
    python benchmarks/first_run.py --photos examples/photos
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from captionary import Load, Resize, Save, Workspace

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"
EDGE = 1024


def plain_pillow(src: Path, out: Path) -> int:
    count = 0
    for path in sorted(src.rglob("*.jpg")):
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((EDGE, EDGE), Image.Resampling.LANCZOS)
            target = out / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target, quality=95)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    fallback = REPO / "examples" / "photos"
    parser.add_argument("--photos", type=Path, default=DEFAULT if DEFAULT.is_dir() else fallback)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="captionary-first-run-"))
    try:
        start = time.perf_counter()
        count = plain_pillow(args.photos, root / "plain")
        plain_s = time.perf_counter() - start
        with Workspace(root / "ws") as ws:
            start = time.perf_counter()
            summary = ws.run(Load(args.photos) >> Resize(max_edge=EDGE) >> Save(root / "out"), progress=False)
            ours_s = time.perf_counter() - start
            start = time.perf_counter()
            ws.run(Load(args.photos) >> Resize(max_edge=EDGE) >> Save(root / "out"), progress=False)
            cached_s = time.perf_counter() - start
        assert summary.step("save").computed == count, summary.table()
        megapixels = sum(Image.open(p).width * Image.open(p).height for p in args.photos.rglob("*.jpg")) / 1e6
        print(
            f"{count} photos ({megapixels / count:.1f} MP on average) from {args.photos}; "
            f"{os.cpu_count()} cores; resize to {EDGE} px, JPEG q95\n"
        )
        print(f"{'run':<40}{'wall s':>9}{'images/s':>10}{'speed-up':>10}")
        for label, seconds in [
            ("plain Pillow loop (1 process)", plain_s),
            ("captionary first run (all cores)", ours_s),
            ("captionary re-run (all cached)", cached_s),
        ]:
            print(f"{label:<40}{seconds:>9.2f}{count / seconds:>10.1f}{plain_s / seconds:>9.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
