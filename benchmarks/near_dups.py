"""Near-duplicate quality: precision and recall per kind of copy, captionary's `dedup` methods next to
imagededup's PHash (the peer users pick) at the same threshold, on the same files in the same run.

Originals: `--per-subject` photos of every DreamBooth subject (different shots of one subject are the
hard negatives). Each gets one copy of every kind below. A copy is found when the method puts it in its
original's group; precision counts every pair the method put together (a copy with another photo, or
two different shots, is a false pair).

    python benchmarks/near_dups.py                        # 2 photos x 30 subjects, 9 kinds of copy
    python benchmarks/near_dups.py --imagededup /tmp/idd/bin/python
        # imagededup pulls its own torch/torchvision, so it lives in a venv of its own:
        #   python -m venv /tmp/idd && /tmp/idd/bin/pip install imagededup
    python benchmarks/near_dups.py --scale 1000000        # plus the robust candidate search at 1M items
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from captionary import Dedup, Load, PerceptualHash, WindowHashes, Workspace
from captionary.steps.dedup.dedup import WINDOW_RADIUS
from captionary.steps.dedup.hamming import cross_pairs, hamming_pairs
from captionary.steps.dedup.windows import WINDOWS

DREAMBOOTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "dreambooth"
EDGE = 640
THRESHOLD = 8


def crop(left: float, top: float, right: float, bottom: float) -> Callable[[Image.Image], Image.Image]:
    def make(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.crop((round(left * w), round(top * h), round(w - right * w), round(h - bottom * h)))

    return make


def jpeg(quality: int) -> Callable[[Image.Image], Image.Image]:
    def make(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return make


def kinds(seed: int) -> dict[str, Callable[[Image.Image], Image.Image]]:
    rng = random.Random(seed)
    return {
        "JPEG q50": jpeg(50),
        "resize 70%": lambda im: im.resize((round(im.width * 0.7), round(im.height * 0.7)), Image.LANCZOS),
        "brightness +10%": lambda im: ImageEnhance.Brightness(im).enhance(1.1),
        "crop 3%/side": crop(0.03, 0.03, 0.03, 0.03),
        "crop 8%/side": crop(0.08, 0.08, 0.08, 0.08),
        "crop 10%/side": crop(0.1, 0.1, 0.1, 0.1),
        "crop 0-10% random": lambda im: crop(*(rng.uniform(0, 0.1) for _ in range(4)))(im),
        "mirror": ImageOps.mirror,
        "mirror + crop 5%": lambda im: crop(0.05, 0.05, 0.05, 0.05)(ImageOps.mirror(im)),
    }


def make_copies(root: Path, per_subject: int, seed: int) -> tuple[dict[str, str], list[str]]:
    """Files `<subject>_<photo>__<kind>.jpg`; name -> its original's name, and the kinds' labels."""
    copies = kinds(seed)
    truth: dict[str, str] = {}
    for subject in sorted(p for p in DREAMBOOTH.iterdir() if p.is_dir()):
        for photo in sorted(subject.glob("*.jpg"))[:per_subject]:
            image = ImageOps.exif_transpose(Image.open(photo)).convert("RGB")
            image.thumbnail((EDGE, EDGE))
            base = f"{subject.name}_{photo.stem}"
            image.save(root / f"{base}__original.jpg", quality=95)
            truth[f"{base}__original"] = f"{base}__original"
            for k, make in enumerate(copies.values()):
                make(image).save(root / f"{base}__k{k}.jpg", quality=95)
                truth[f"{base}__k{k}"] = f"{base}__original"
    return truth, list(copies)


def captionary_groups(root: Path, ws: Path, method: str) -> dict[str, str]:
    with Workspace(ws) as workspace:
        workspace.run(
            Load(root) >> PerceptualHash() >> WindowHashes() >> Dedup(method=method, threshold=THRESHOLD),
            progress=False,
        )
        items = list(workspace.items(include_dropped=True))
    names = {item.id: item.name for item in items}
    return {item.name: names[item["dup_group"]] for item in items if "dup_group" in item}


IMAGEDEDUP = """
import json, sys
from imagededup.methods import PHash
found = PHash(verbose=False).find_duplicates(image_dir=sys.argv[1], max_distance_threshold=int(sys.argv[2]))
print(json.dumps(found))
"""


def imagededup_groups(root: Path, python: str) -> dict[str, str]:
    """imagededup's duplicate lists as groups: each file with the first name of its connected set."""
    output = subprocess.run(
        [python, "-c", IMAGEDEDUP, str(root), str(THRESHOLD)], capture_output=True, text=True, check=True
    ).stdout
    neighbours = {Path(k).stem: [Path(v).stem for v in vs] for k, vs in json.loads(output).items()}
    return {name: min([name, *found]) for name, found in neighbours.items() if found}


def scores(groups: dict[str, str], truth: dict[str, str], labels: list[str]) -> tuple[list[float], float]:
    def together(a: str, b: str) -> bool:
        return a in groups and b in groups and groups[a] == groups[b]

    recall = []
    for k in range(len(labels)):
        names = [n for n in truth if n.endswith(f"__k{k}")]
        recall.append(sum(together(n, truth[n]) for n in names) / len(names))
    members: dict[str, list[str]] = {}
    for name, group in groups.items():
        members.setdefault(group, []).append(name)
    pairs = [p for m in members.values() for p in itertools.combinations(m, 2)]
    right = sum(truth[a] == truth[b] for a, b in pairs)
    return recall, right / len(pairs) if pairs else 1.0


def scale_row(n: int) -> None:
    """The robust method's search at `n` items: pHash pairs, then every window against every frame."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    windows = rng.integers(0, 2**64 - 1, n * WINDOWS, dtype=np.uint64, endpoint=True)
    start = time.perf_counter()
    direct = hamming_pairs(frames, THRESHOLD)
    middle = time.perf_counter()
    found = cross_pairs(frames, windows, WINDOW_RADIUS)
    end = time.perf_counter()
    print(
        f"\nsearch at {n:,} items (random hashes): pHash pairs {middle - start:.1f} s ({len(direct)} pairs), "
        f"{n * WINDOWS:,} windows against {n:,} frames within {WINDOW_RADIUS} bits {end - middle:.1f} s "
        f"({len(found)} candidates to verify)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-subject", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--imagededup", help="a python that can import imagededup (its own venv)")
    parser.add_argument("--scale", type=int, default=0, help="also time the candidate search at this size")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        root.mkdir()
        truth, labels = make_copies(root, args.per_subject, args.seed)
        originals = sum(1 for n in truth if n.endswith("__original"))
        print(f"{originals} originals x {len(labels)} kinds of copy, pHash threshold {THRESHOLD} bits")
        columns: dict[str, tuple[list[float], float, float]] = {}
        for method in ("phash", "robust"):
            start = time.perf_counter()
            groups = captionary_groups(root, Path(tmp) / f"ws-{method}", method)
            columns[f"captionary {method}"] = (*scores(groups, truth, labels), time.perf_counter() - start)
        if args.imagededup:
            start = time.perf_counter()
            groups = imagededup_groups(root, args.imagededup)
            columns["imagededup PHash"] = (*scores(groups, truth, labels), time.perf_counter() - start)
    print("\n| recall by kind of copy | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for k, label in enumerate(labels):
        print(f"| {label} | " + " | ".join(f"{c[0][k]:.2f}" for c in columns.values()) + " |")
    print("| **pair precision** | " + " | ".join(f"{c[1]:.3f}" for c in columns.values()) + " |")
    print("| seconds (load, hash, search) | " + " | ".join(f"{c[2]:.1f}" for c in columns.values()) + " |")
    if args.scale:
        scale_row(args.scale)


if __name__ == "__main__":
    sys.exit(main())
