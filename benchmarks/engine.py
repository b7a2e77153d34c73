"""Image engines: the first run of `load >> filter_by_size >> resize >> save` on the DreamBooth photos
with `engine: auto` (the default: vips for large images, Pillow for small ones), forced vips, forced
Pillow, and the one-process plain Pillow loop, interleaved; then the pixel difference between the
engines (mean and max absolute error per channel).

    python benchmarks/engine.py                 # 158 photos, 3 interleaved repetitions
    python benchmarks/engine.py --reps 5
    python benchmarks/engine.py --pixels-only   # just the pixel difference
    python benchmarks/engine.py --src ~/small --limit 5000 --max-edge 64 --min-edge 48 --no-pixels
                                                # small images (benchmarks/cache.py's work)

Each captionary run is a first run: a new workspace and a new output folder (the pool of worker
processes started inside the run, as a user's first run starts it). The plain loop is what a person
writes by hand: open, exif_transpose, resize to a 1024 px longer edge (Lanczos), save JPEG q95.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

from captionary import CropToAspect, FilterBySize, Load, Resize, Save, Workspace

REPO = Path(__file__).resolve().parents[1]
DREAMBOOTH = REPO.parent / "shared" / "data" / "dreambooth"
EDGE, MIN_EDGE, QUALITY = 1024, 512, 95


def plain_pillow(files: list[Path], out: Path) -> None:
    """The loop a person writes by hand, in one process."""
    out.mkdir()
    for path in files:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
        if min(image.size) < MIN_EDGE:
            continue
        scale = EDGE / max(image.size)
        if scale < 1:
            size = (round(image.width * scale), round(image.height * scale))
            image = image.resize(size, Image.Resampling.LANCZOS)
        image.convert("RGB").save(out / f"{path.parent.name}-{path.stem}.jpg", quality=QUALITY)


def captionary_run(src: Path, root: Path, engine: str, workers: int | None = None) -> int:
    pipeline = (
        Load(src)
        >> FilterBySize(min_edge=MIN_EDGE)
        >> Resize(max_edge=EDGE, engine=engine)
        >> Save(root / "out", image_format="jpg", quality=QUALITY, engine=engine)
    )
    with Workspace(root / "ws") as ws:
        summary = ws.run(pipeline, progress=False, workers=workers)
    assert summary.status == "completed" and not summary.errors, summary.errors
    return summary.step("save").n_out


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of this process and its finished children: the pool)."""
    start, before = time.perf_counter(), os.times()
    fn()
    after = os.times()
    return time.perf_counter() - start, sum(after[:4]) - sum(before[:4])


PLAIN = "plain Pillow loop (1 process)"


def speed(src: Path, reps: int, workers: int | None = None) -> None:
    files = sorted(p for p in src.rglob("*.jpg"))
    labels = (PLAIN, "captionary, pillow", "captionary, vips", "captionary, auto")
    walls: dict[str, list[float]] = {label: [] for label in labels}
    cpus: dict[str, list[float]] = {label: [] for label in labels}
    loads = [os.getloadavg()[0]]
    for rep in range(reps):
        turn = rep % len(labels)  # interleaved, every variant once per repetition, the order rotated
        for label in labels[turn:] + labels[:turn]:  # so none always follows the same one
            root = Path(tempfile.mkdtemp(prefix="captionary-engine-"))
            try:
                if label == PLAIN:
                    wall, cpu = timed(lambda root=root: plain_pillow(files, root / "plain"))
                else:
                    engine = label.split(", ")[1]
                    wall, cpu = timed(
                        lambda root=root, engine=engine: captionary_run(src, root, engine, workers)
                    )
            finally:
                shutil.rmtree(root, ignore_errors=True)
            walls[label].append(wall)
            cpus[label].append(cpu)
        loads.append(os.getloadavg()[0])
    plain, plain_cpu = statistics.median(walls[PLAIN]), statistics.median(cpus[PLAIN])
    cores = os.cpu_count() or 1
    print(f"{len(files)} images ({src}); {cores} cores; {reps} interleaved repetitions")
    print(f"load >> filter_by_size(min_edge={MIN_EDGE}) >> resize(max_edge={EDGE}) >> save(jpg, q{QUALITY})")
    print(f"load average (1 min) before and after each round: {' '.join(f'{x:.1f}' for x in loads)}")
    print("CPU: user + system seconds of every process of the run\n")
    columns = (
        ("wall min", 9),
        ("median", 8),
        ("images/s", 9),
        ("vs plain", 9),
        ("CPU med", 8),
        ("vs plain", 9),
    )
    print(f"{'first run':<32}" + "".join(f"{name:>{width}}" for name, width in columns))
    for label in labels:
        wall, cpu = statistics.median(walls[label]), statistics.median(cpus[label])
        print(
            f"{label:<32}{min(walls[label]):>9.2f}{wall:>8.2f}{len(files) / wall:>9.1f}{plain / wall:>8.2f}x"
            f"{cpu:>8.2f}{plain_cpu / cpu:>8.2f}x"
        )
    vips = statistics.median(walls["captionary, vips"])
    pillow = statistics.median(walls["captionary, pillow"])
    auto = statistics.median(walls["captionary, auto"])
    print(
        f"\nvips engine vs Pillow engine: {pillow / vips:.2f}x; auto vs vips: {vips / auto:.2f}x, "
        f"auto vs Pillow: {pillow / auto:.2f}x; goal vips >= 3.5x the plain loop: {plain / vips:.2f}x"
    )


def pixel_difference(src: Path) -> None:
    """Each engine's images of the same steps, read back from the workspace (recipes replayed)."""
    import numpy as np  # here: the worker processes import this script again and never need it

    cases = {
        "resize(max_edge=1024)": [Resize(max_edge=1024)],
        "resize(max_edge=512)": [Resize(max_edge=512)],
        "crop_to_aspect(3:2)": [CropToAspect(aspect="3:2")],
        "crop_to_aspect(3:2) >> resize(512)": [CropToAspect(aspect="3:2"), Resize(max_edge=512)],
    }
    print(f"\npixel difference, vips vs Pillow engine, {len(list(src.rglob('*.jpg')))} photos (RGB, 0-255)")
    print(f"{'steps':<36}{'mean abs error R G B':>24}{'max R G B':>16}{'pixels > 8':>12}")
    root = Path(tempfile.mkdtemp(prefix="captionary-pixels-"))
    try:
        for label, steps in cases.items():
            images = {}
            for engine in ("pillow", "vips"):
                pipeline = Load(src)
                for step in steps:
                    pipeline = pipeline >> type(step)(**{**step.params, "engine": engine})
                with Workspace(root / f"{engine}-{len(images)}-{label}") as ws:
                    ws.run(pipeline, progress=False)
                    images[engine] = {
                        item.id: np.asarray(item.image.convert("RGB"), dtype=np.int16) for item in ws.items()
                    }
            total, count, peak, over = np.zeros(3), 0, np.zeros(3, dtype=int), 0
            for key, a in images["pillow"].items():
                b = images["vips"][key]
                assert a.shape == b.shape, (key, a.shape, b.shape)
                diff = np.abs(a - b)
                total += diff.sum(axis=(0, 1))
                count += diff.shape[0] * diff.shape[1]
                peak = np.maximum(peak, diff.max(axis=(0, 1)))
                over += int((diff > 8).sum())
            mean = " ".join(f"{v:.3f}" for v in total / count)
            print(f"{label:<36}{mean:>24}{' '.join(str(v) for v in peak):>16}{over / count / 3:>11.4%}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    global EDGE, MIN_EDGE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--src", type=Path, default=DREAMBOOTH)
    parser.add_argument("--limit", type=int, help="the first N JPEGs of --src only (copied)")
    parser.add_argument("--max-edge", type=int, default=EDGE, help="resize's max_edge")
    parser.add_argument("--min-edge", type=int, default=MIN_EDGE, help="filter_by_size's min_edge")
    parser.add_argument("--workers", type=int, help="captionary's pool (0: in the driver; CPU is cleaner)")
    parser.add_argument("--pixels-only", action="store_true")
    parser.add_argument("--no-pixels", action="store_true", help="only the timing table")
    args = parser.parse_args()
    EDGE, MIN_EDGE = args.max_edge, args.min_edge
    src = args.src
    if args.limit:
        src = Path(tempfile.mkdtemp(prefix="captionary-engine-src-"))
        for path in sorted(args.src.rglob("*.jpg"))[: args.limit]:
            target = src / path.relative_to(args.src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    try:
        if not args.pixels_only:
            speed(src, args.reps, args.workers)
        if not args.no_pixels:
            pixel_difference(src)
    finally:
        if args.limit:
            shutil.rmtree(src, ignore_errors=True)


if __name__ == "__main__":
    main()
