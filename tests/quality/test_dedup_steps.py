"""exact_dedup and the dedup ladder as pipeline steps: which item is kept, the reason, the recorded
group, embeddings read from array blobs, and parameter errors."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image, ImageFilter, PngImagePlugin

pytest.importorskip("imagehash")
pytest.importorskip("faiss")

from captionary import (
    Dedup,
    ExactDedup,
    ItemError,
    Load,
    Map,
    ParamError,
    PerceptualHash,
    Resize,
    Sharpness,
    Workspace,
    parse_pipeline,
)
from captionary.errors import ConfigError


def run(ws_path: Path, pipeline):
    with Workspace(ws_path) as ws:
        summary = ws.run(pipeline, progress=False, workers=0)
        return summary, {item.name: item for item in ws.items(include_dropped=True)}


def png_with_text(image: Image.Image, path: Path, text: str) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", text)
    image.save(path, pnginfo=info)


def write_exact_set(folder: Path, photos: Path, order: list[str]) -> None:
    """Byte-identical JPEGs under three names and two PNGs with the same pixels but different
    metadata, created in `order` (so modification times differ between layouts)."""
    folder.mkdir()
    photo = photos / "dog" / "00.jpg"
    pixels = Image.open(photos / "cat" / "00.jpg").convert("RGB")
    makers = {
        "b_dog.jpg": lambda p: shutil.copy(photo, p),
        "a_dog.jpg": lambda p: shutil.copy(photo, p),
        "c_dog.jpg": lambda p: shutil.copy(photo, p),
        "y_cat.png": lambda p: png_with_text(pixels, p, "made by y"),
        "x_cat.png": lambda p: png_with_text(pixels, p, "made by x, longer"),
        "teapot.jpg": lambda p: shutil.copy(photos / "teapot" / "00.jpg", p),
    }
    for name in order:
        makers[name](folder / name)
        time.sleep(0.01)


@pytest.mark.parametrize("keep", ["first", "largest"])
def test_exact_duplicates_one_kept_stably_others_dropped_with_reason(photos, tmp_path, keep):
    kept_per_layout = []
    for layout, order in enumerate(
        [
            ["b_dog.jpg", "a_dog.jpg", "c_dog.jpg", "y_cat.png", "x_cat.png", "teapot.jpg"],
            ["c_dog.jpg", "teapot.jpg", "x_cat.png", "a_dog.jpg", "y_cat.png", "b_dog.jpg"],
        ]
    ):
        folder = tmp_path / f"set{layout}"
        write_exact_set(folder, photos, order)
        assert (folder / "x_cat.png").read_bytes() != (folder / "y_cat.png").read_bytes()
        summary, items = run(tmp_path / f"ws{layout}", Load(folder) >> ExactDedup(keep=keep))
        assert not summary.errors
        kept = sorted(n for n, item in items.items() if item.get("dropped_by") is None)
        kept_per_layout.append(kept)
        # byte-identical files: the loader keeps the first by path (the others are only counted)
        assert summary.step("load").dropped == 2 and "b_dog" not in items and "c_dog" not in items
        # same pixels, different bytes: exact_dedup keeps the first (both are equally large)
        assert items["y_cat"]["dropped_by"] == "exact_dedup"
        assert items["y_cat"]["drop_reason"] == f"duplicate of x_cat (same pixels; kept the {keep})"
        assert items["y_cat"]["dup_of"] == items["x_cat"].id == items["x_cat"]["dup_group"]
        assert items["y_cat"]["dup_distance"] == 0 and "dup_of" not in items["x_cat"]
        assert "dup_group" not in items["teapot"]
    assert kept_per_layout[0] == kept_per_layout[1] == ["a_dog", "teapot", "x_cat"]


def test_dedup_method_exact_equals_exact_dedup(photos, tmp_path):
    write_exact_set(tmp_path / "set", photos, ["a_dog.jpg", "x_cat.png", "y_cat.png", "teapot.jpg"])
    _, items = run(tmp_path / "ws", Load(tmp_path / "set") >> Dedup(method="exact", keep="first"))
    assert items["y_cat"]["drop_reason"] == "duplicate of x_cat (same pixels; kept the first)"


def test_keep_policies_choose_largest_sharpest_or_highest_score(photos, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    image = Image.open(photos / "dog" / "00.jpg").convert("RGB")
    image.filter(ImageFilter.GaussianBlur(1.5)).save(folder / "a_big_soft.jpg", quality=95)  # largest
    image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(folder / "b_sharp.jpg", quality=95)
    image.resize((image.width // 2, image.height // 2)).save(folder / "c_small.jpg", quality=95)
    for name, score in (("a_big_soft", 0.2), ("b_sharp", 0.5), ("c_small", 0.9)):
        (folder / f"{name}.json").write_text(f'{{"aesthetic": {score}}}')
    expected = {
        "largest": "a_big_soft",
        "first": "a_big_soft",
        "sharpest": "b_sharp",
        "highest": "c_small",
    }
    for keep, winner in expected.items():
        step = Dedup(keep=keep, score="aesthetic" if keep == "highest" else None, threshold=16)
        _, items = run(tmp_path / f"ws_{keep}", Load(folder) >> PerceptualHash() >> Sharpness() >> step)
        kept = [n for n, item in items.items() if item.get("dropped_by") is None]
        assert kept == [winner], (keep, {n: i.props for n, i in items.items()})
        assert all(item["dup_group"] == items[winner].id for item in items.values())


def test_sharpest_and_phash_are_computed_when_no_step_stored_them(photos, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    image = Image.open(photos / "dog" / "00.jpg").convert("RGB")
    image.filter(ImageFilter.GaussianBlur(2)).save(folder / "a_soft.jpg", quality=95)
    image.save(folder / "b_sharp.jpg", quality=95)
    _, items = run(tmp_path / "ws", Load(folder) >> Dedup(keep="sharpest", threshold=16))
    assert items["a_soft"]["drop_reason"].startswith("duplicate of b_sharp (pHash distance ")
    assert items["a_soft"]["drop_reason"].endswith("; kept the sharpest)")


def test_drop_false_records_groups_and_keeps_everything(photos, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    image = Image.open(photos / "dog" / "00.jpg")
    image.save(folder / "a.jpg", quality=95)
    image.save(folder / "b.jpg", quality=50)
    summary, items = run(tmp_path / "ws", Load(folder) >> Dedup(drop=False))
    assert summary.step("dedup").dropped == 0
    assert items["b"]["dup_of"] == items["a"].id == items["b"]["dup_group"] == items["a"]["dup_group"]


class TDedupVector(Map):
    """A synthetic embedding stored as an array blob: the vector of the group named in the caption
    (a `.txt` sidecar), plus a little noise seeded by the item's name."""

    name: ClassVar[str] = "t_dedup_vector"
    writes: ClassVar[tuple[str, ...]] = ("clip_embedding",)
    reads: ClassVar[tuple[str, ...]] = ("caption",)
    reads_image: ClassVar[bool] = False

    def apply(self, item):
        group = np.random.default_rng(int(item["caption"])).standard_normal(512)
        seed = int(hashlib.sha256(item.name.encode()).hexdigest()[:8], 16)
        noise = np.random.default_rng(seed).standard_normal(512) * 0.05
        return {"clip_embedding": (group + noise).astype(np.float32)}


def test_embedding_dedup_reads_array_blobs_and_groups_by_cosine(photos, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    sources = sorted(photos.rglob("*.jpg"))[:8]
    for k, source in enumerate(sources):  # 8 distinct images, in 4 semantic groups of 2
        shutil.copy(source, folder / f"{k}.jpg")
        (folder / f"{k}.txt").write_text(str(k // 2))
    summary, items = run(tmp_path / "ws", Load(folder) >> TDedupVector() >> Dedup(method="embedding"))
    assert not summary.errors and summary.step("dedup").dropped == 4
    for k in range(0, 8, 2):
        kept, dup = items[str(k)], items[str(k + 1)]
        assert kept.get("dropped_by") is None and dup["dup_of"] == kept.id
        assert dup["drop_reason"].startswith(f"duplicate of {k} (cosine similarity 0.99")
        assert 0 < dup["dup_distance"] < 0.01
    with Workspace(tmp_path / "ws") as ws:  # the embeddings are array blobs, read back as numpy
        assert next(iter(ws.items(include_dropped=True))).array("clip_embedding").shape == (512,)


def test_embedding_dedup_without_embeddings_names_the_item(photos, tmp_path, ws_path):
    summary, _ = run(ws_path, Load(photos) >> Dedup(method="embedding"))
    assert summary.step("dedup").failed == 12
    assert "no property 'clip_embedding' (run clip_embed" in summary.errors[0]["reason"]


def test_highest_without_the_score_names_the_item(photos, ws_path):
    summary, _ = run(ws_path, Load(photos) >> Resize(max_edge=64) >> Dedup(keep="highest", score="aesthetic"))
    assert summary.step("dedup").failed == 12
    assert "keep: highest needs a number in 'aesthetic', got None" in summary.errors[0]["reason"]


def test_bad_phash_property_is_an_error_naming_the_item():
    from captionary.core.item import Item

    good = Item("b" * 64, props={"phash": "0" * 16, "width": 1, "height": 1}, name="y.jpg")
    bad = Item("a" * 64, props={"phash": "zz", "width": 1, "height": 1}, name="x.jpg")
    with pytest.raises(ItemError, match=r"x\.jpg: property 'phash' is 'zz', not 16 hex digits"):
        Dedup().apply_all([good, bad])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "md5"}, "dedup.method: must be one of exact, phash, robust, embedding"),
        ({"method": "exact", "threshold": 3}, "dedup.threshold: method: exact takes no threshold"),
        ({"threshold": 4.5}, "dedup.threshold: for phash: a whole number of bits 0..32"),
        ({"method": "embedding", "threshold": 1.5}, "dedup.threshold: for embedding: a cosine similarity"),
        ({"keep": "newest"}, "dedup.keep: must be one of largest, sharpest, highest, first"),
        ({"keep": "highest"}, "dedup.score: keep: highest needs `score`"),
    ],
)
def test_bad_parameters_fail_when_built(params, message):
    with pytest.raises(ParamError, match=message.replace("(", r"\(")):
        Dedup(**params)


def test_yaml_dedup_with_a_bad_value_names_the_line(tmp_path):
    text = "workspace: ws\nsteps:\n  - load: {path: .}\n  - phash\n  - dedup: {method: phash, keep: big}\n"
    with pytest.raises(ConfigError, match=r"5.*dedup.keep: must be one of"):
        parse_pipeline(text, base=tmp_path)
    ok = parse_pipeline(text.replace("big", "largest"), base=tmp_path)
    assert [s.name for s in ok.pipeline] == ["load", "phash", "dedup"]


def test_fewer_than_two_items_have_no_duplicates():
    from captionary.core.item import Item

    assert Dedup(method="embedding").apply_all([]) == []
    [outcome] = ExactDedup().apply_all([Item("a" * 64, props={"width": 1, "height": 1})])
    assert outcome.props is None and outcome.dropped is None
