"""Near-duplicate search on real photos: re-encoded, resized, cropped and recoloured copies are found,
different photos are not grouped; precision and recall are printed."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

pytest.importorskip("imagehash")

from captionary import Dedup, Load, PerceptualHash, Workspace

REPO = Path(__file__).resolve().parents[2]
DREAMBOOTH = REPO.parent / "shared" / "data" / "dreambooth"
EDGE = 512
PER_SUBJECT = 2  # photos of each DreamBooth subject: same subject, different photo = hard negatives


def reencoded(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=50)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def resized(image: Image.Image) -> Image.Image:
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)


def cropped(image: Image.Image) -> Image.Image:
    dx, dy = round(image.width * 0.02), round(image.height * 0.02)  # 2% off every side
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def recoloured(image: Image.Image) -> Image.Image:
    warm = Image.merge(
        "RGB",
        [b.point(lambda v, f=f: min(255, round(v * f))) for b, f in zip(image.split(), (1.1, 1.0, 0.85))],
    )
    return ImageEnhance.Color(warm).enhance(0.6)


COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "q50": reencoded,
    "half": resized,
    "crop": cropped,
    "recolour": recoloured,
}


def originals() -> list[Path]:
    if DREAMBOOTH.is_dir():
        subjects = sorted(p for p in DREAMBOOTH.iterdir() if p.is_dir())
        return [photo for s in subjects for photo in sorted(s.glob("*.jpg"))[:PER_SUBJECT]]
    return sorted((REPO / "examples" / "photos").rglob("*.jpg"))  # CI without the shared data


@pytest.fixture(scope="module")
def near_copies(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Each original as `<k>/orig.jpg` plus its four altered copies; name -> original's name."""
    root = tmp_path_factory.mktemp("near") / "photos"
    truth: dict[str, str] = {}
    for k, path in enumerate(originals()):
        folder = root / f"{k:03d}"
        folder.mkdir(parents=True)
        image = Image.open(path).convert("RGB")
        image.thumbnail((EDGE, EDGE))  # smaller real photos: a quicker test, the same behaviour
        image.save(folder / "orig.jpg", quality=95)
        truth[f"{k:03d}/orig"] = f"{k:03d}/orig"
        for label, make in COPIES.items():
            make(image).save(folder / f"{label}.jpg", quality=95)
            truth[f"{k:03d}/{label}"] = f"{k:03d}/orig"
    return root, truth


def pairs_of(groups: dict[str, str]) -> set[frozenset[str]]:
    by_group: dict[str, list[str]] = {}
    for name, group in groups.items():
        by_group.setdefault(group, []).append(name)
    return {frozenset(p) for members in by_group.values() for p in itertools.combinations(members, 2)}


@pytest.fixture(scope="module")
def deduped(near_copies, tmp_path_factory):
    """The photos and their copies through `load >> phash >> dedup` (one workspace for the module)."""
    root, _ = near_copies
    path = tmp_path_factory.mktemp("dedup") / "ws"
    with Workspace(path) as ws:
        summary = ws.run(Load(root) >> PerceptualHash() >> Dedup(method="phash"), progress=False)
        items = {item.name: item for item in ws.items(include_dropped=True)}
    return path, summary, items


def test_phash_dedup_finds_altered_copies_and_keeps_different_photos(near_copies, deduped):
    _, truth = near_copies
    _, summary, items = deduped
    assert not summary.errors and len(items) == len(truth)
    names = {item.id: item.name for item in items.values()}
    found = {name: names[item["dup_group"]] for name, item in items.items() if "dup_group" in item}
    predicted, actual = pairs_of(found), pairs_of(truth)
    precision = len(predicted & actual) / max(1, len(predicted))
    recall = len(predicted & actual) / len(actual)
    per_copy = {
        label: sum(frozenset((n, truth[n])) in predicted for n in truth if n.endswith(label))
        / (len(truth) // 5)
        for label in COPIES
    }
    print(
        f"\nphash dedup on {len(truth) // 5} photos x 5 versions: pair precision {precision:.3f}, "
        f"recall {recall:.3f}; copies found per kind: "
        + ", ".join(f"{k} {v:.2f}" for k, v in per_copy.items())
    )
    assert precision >= 0.98
    assert recall >= 0.9
    assert all(share >= 0.85 for share in per_copy.values()), per_copy
    # the original is the largest of its group, so it is the one kept; the others name it
    for item in items.values():
        if item.get("dup_of"):
            kept = names[item["dup_of"]]
            assert item["drop_reason"].startswith(f"duplicate of {kept} (pHash distance ")
            assert kept.endswith("/orig") and item["dup_distance"] <= 8
    kept = [n for n, item in items.items() if item.get("dropped_by") is None]
    assert summary.step("dedup").dropped == len(items) - len(kept)
    assert all(n.endswith("/orig") for n in kept if "dup_group" in items[n])


def test_dedup_is_cached_and_a_new_threshold_recomputes_only_the_search(near_copies, deduped):
    root, _ = near_copies
    path, first, _ = deduped
    with Workspace(path) as ws:
        again = ws.run(Load(root) >> PerceptualHash() >> Dedup(), progress=False)
        strict = ws.run(Load(root) >> PerceptualHash() >> Dedup(threshold=0), progress=False)
    n = first.step("phash").computed
    assert again.step("phash").cached == n and again.step("dedup").cached == n
    assert strict.step("phash").cached == n and strict.step("dedup").computed == n
    assert strict.step("dedup").dropped < first.step("dedup").dropped
