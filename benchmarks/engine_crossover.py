"""Where libvips starts to beat Pillow: CPU milliseconds per image for each engine (`core/engines`), by
source size, on the chain's own engine calls (what `engine: auto` chooses by; see README "Image engines").

    python benchmarks/engine_crossover.py              # JPEG and PNG sources, every size
    python benchmarks/engine_crossover.py --budget 0.1 # quicker (seconds of CPU per cell and engine)

Work per image, each timed on one core (process CPU time, so a busy machine skews it less than wall
time): `decode` (decoded into memory), `+encode` (decode, then encode in the source's format at q95,
JPEG for TIFF), `+resize/2` (decode, resize to half the size with Lanczos, encode) and `+resize 512` (decode
shrunk on load as `resize` asks, resize to a 512 px longer edge where larger, encode). The sources are
a DreamBooth photo scaled to each size (real photo content: noise decodes slower in both engines).
The engines alternate in rounds, so both see the same machine.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from captionary import Resize
from captionary.core import engines

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "data" / "dreambooth" / "dog" / "00.jpg"
SIZES = [
    (64, 48),
    (96, 72),
    (160, 120),
    (240, 180),
    (320, 240),
    (400, 300),
    (480, 360),
    (560, 420),
    (640, 480),
    (800, 600),
    (1024, 768),
    (2048, 1536),
]
ENCODES = ("JPEG", "PNG", "WEBP")
"""Formats both engines encode: a source in another format (TIFF) is encoded as JPEG."""


def source(size: tuple[int, int], fmt: str) -> bytes:
    with Image.open(PHOTO) as photo:
        image = photo.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()


def work(engine: engines.ImageEngine, data: bytes, fmt: str, op: str) -> Callable[[], object]:
    size = Image.open(io.BytesIO(data)).size
    fmt = fmt if fmt in ENCODES else "JPEG"
    half = (max(1, size[0] // 2), max(1, size[1] // 2))
    to512 = Resize(max_edge=512, engine=engine.name)
    scale = min(1.0, 512 / max(size))
    small = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))

    def run() -> object:
        if op == "decode":
            return engine.realize(engine.decode(data))
        if op == "+encode":
            return engine.encode(engine.decode(data), fmt, 95)
        if op == "+resize/2":
            return engine.encode(engine.realize(engine.resize(engine.decode(data), half, "lanczos")), fmt, 95)
        image = engine.decode(data, to512.draft_scale)
        if scale < 1:
            image = engine.realize(engine.resize(image, small, "lanczos"))
        return engine.encode(image, fmt, 95)

    return run


def cpu_ms(fn: Callable[[], object], budget: float) -> float:
    fn()
    count, start = 0, time.process_time()
    while (spent := time.process_time() - start) < budget or count < 3:
        fn()
        count += 1
    return spent / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--budget", type=float, default=0.15, help="CPU seconds per cell, engine and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--formats", default="JPEG,PNG")
    args = parser.parse_args()
    pillow, vips = engines.get("pillow"), engines.get("vips")
    ops = ("decode", "+encode", "+resize/2", "+resize 512")
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    print("CPU ms per image, Pillow / vips (ratio Pillow/vips: > 1 means vips is cheaper); best of rounds")
    for fmt in args.formats.split(","):
        print(f"\n{fmt} sources")
        print(f"{'size':>10}{'pixels':>9}" + "".join(f"{op:>24}" for op in ops))
        for size in SIZES:
            data = source(size, fmt)
            cells = []
            for op in ops:
                runs = {e.name: work(e, data, fmt, op) for e in (pillow, vips)}
                times: dict[str, list[float]] = {name: [] for name in runs}
                for _ in range(args.rounds):  # interleaved: each engine once per round
                    for name, run in runs.items():
                        times[name].append(cpu_ms(run, args.budget))
                best = {name: min(values) for name, values in times.items()}
                ratio = best["pillow"] / best["vips"]
                cells.append(f"{best['pillow']:7.2f} /{best['vips']:6.2f} {ratio:5.2f}x")
            print(f"{size[0]:>5}x{size[1]:<4}{size[0] * size[1]:>9}" + "".join(f"{c:>24}" for c in cells))
    print(f"\nload average (1 min) at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
