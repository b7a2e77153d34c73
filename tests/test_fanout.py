"""Fan-out: steps that make new items (crops, flips) from each input, cached and resumed like any item."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from captionary import CropBoxes, Flip, Load, Resize, Save, SetCaption, Workspace
from captionary.core.outcome import child_id
from captionary.steps.transforms.region import pixel_box
from conftest import tree
from steps_for_fanout import TBatchSplit, TBoxes


def split(photos: Path, out: Path, **crop):
    return (
        Load(photos) >> TBoxes() >> CropBoxes(**crop) >> Resize(max_edge=64) >> Save(out, json_sidecar=True)
    )


def upright(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return ImageOps.exif_transpose(image)


def by_name(ws: Workspace) -> dict[str, object]:
    return {item.name: item for item in ws.items()}


def test_split_children_are_cached_and_ids_are_stable(photos, tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        first = ws.run(split(photos, tmp_path / "out"), workers=0, progress=False)
        crops = first.step("crop_boxes")
        assert (crops.n_in, crops.computed, crops.n_out, crops.dropped) == (12, 12, 24, 12)
        assert first.step("resize").computed == 24
        items = by_name(ws)
        again = ws.run(split(photos, tmp_path / "out"), workers=0, progress=False)
        assert again.computed == 0, again.table()  # children found in the cache, and all their results
        assert again.step("save").cached == 24
        assert {i.id for i in ws.items()} == {i.id for i in items.values()}
    assert len(items) == 24 and {name.rsplit("_", 1)[1] for name in items} == {"box0", "box1"}
    parents = {p.relative_to(photos).with_suffix("").as_posix() for p in photos.rglob("*.jpg")}
    with Workspace(tmp_path / "other") as ws:  # another workspace derives the same ids
        ws.run(split(photos, tmp_path / "out2"), workers=0, progress=False)
        assert {i.id for i in ws.items()} == {i.id for i in items.values()}
    child = items["dog/00_box1"]
    parent_id = child["parent"]
    prefix = CropBoxes().cache_prefix
    assert child.id == child_id(parent_id, prefix, "1:" + ",".join(f"{v:.6f}" for v in child["region"]))
    assert {name.rsplit("_", 1)[0] for name in items} == parents


def test_child_pixels_are_the_parent_cropped(photos, tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) >> TBoxes() >> CropBoxes(padding=0.1, square=True), workers=0, progress=False)
        children = list(ws.items())
    assert len(children) == 24
    for child in children[:6]:
        parent = upright(photos / f"{child.name.rsplit('_', 1)[0]}.jpg")
        expected = parent.crop(pixel_box(child["region"], *parent.size))
        assert child.image.size == expected.size == (child.width, child.height)
        assert child.width == child.height  # square
        assert np.array_equal(np.asarray(child.image), np.asarray(expected))


def test_pool_workers_replay_children_recipes(photos, tmp_path):
    """A crop child is an image step on the child's recipe: the process pool decodes the parent and
    applies crop + resize there, giving the same files as the driver."""
    with Workspace(tmp_path / "ws0") as ws:
        ws.run(split(photos, tmp_path / "inline"), workers=0, progress=False)
    with Workspace(tmp_path / "ws2") as ws:
        summary = ws.run(split(photos, tmp_path / "pool"), workers=2, progress=False)
    assert summary.step("resize").computed == 24
    assert tree(tmp_path / "inline") == tree(tmp_path / "pool")


def test_parent_removed_from_source_removes_its_children(photos, tmp_path):
    out = tmp_path / "out"
    with Workspace(tmp_path / "ws") as ws:
        ws.run(split(photos, out), workers=0, progress=False)
        assert {"dog/00_box0.jpg", "dog/00_box1.jpg"} <= set(tree(out))
        (photos / "dog" / "00.jpg").unlink()
        summary = ws.run(split(photos, out), workers=0, progress=False)
        assert summary.computed == 0
        names = set(by_name(ws))
    assert len(names) == 22 and not any(n.startswith("dog/00_") for n in names)
    assert not any(path.startswith("dog/00_") for path in tree(out))
    assert len([p for p in tree(out) if p.endswith(".jpg")]) == 22


def test_editing_the_split_recomputes_it_and_its_descendants_only(photos, tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        ws.run(split(photos, tmp_path / "out"), workers=0, progress=False)
        summary = ws.run(split(photos, tmp_path / "out", padding=0.05), workers=0, progress=False)
    assert summary.step("t_fanout_boxes").cached == 12
    assert summary.step("crop_boxes").computed == 12
    assert summary.step("resize").computed == 24
    images = [p for p in tree(tmp_path / "out") if p.endswith(".jpg")]
    assert len(images) == 24  # the old crops' files were replaced, not kept


def test_children_of_children(photos, tmp_path):
    """A crop of a crop (the three-stage split's shape): grandchildren replay two crops."""
    pipeline = Load(photos) >> TBoxes() >> CropBoxes() >> CropBoxes(min_size=20) >> Save(tmp_path / "out")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(pipeline, workers=0, progress=False)
        items = by_name(ws)
        rerun = ws.run(pipeline, workers=0, progress=False)
    assert summary.step("crop_boxes#2").n_out == 48 and rerun.computed == 0
    grandchild = items["cat/00_box0_box1"]
    assert grandchild["parent"] not in items_by_id(items)  # the middle generation was split, not kept
    photo = upright(photos / "cat" / "00.jpg")
    with Workspace(tmp_path / "ws") as ws:
        middle = {i.id: i for i in ws.items(include_dropped=True)}[grandchild["parent"]]
    assert middle.name == "cat/00_box0" and middle["dropped_by"] == "crop_boxes#2"
    first = photo.crop(pixel_box(middle["region"], *photo.size))
    second = first.crop(pixel_box(grandchild["region"], *first.size))
    assert np.array_equal(np.asarray(grandchild.image), np.asarray(second))
    assert len(grandchild.recipe) == 2


def items_by_id(items: dict) -> dict:
    return {item.id: item for item in items.values()}


def test_keep_parent_and_flip(photos, tmp_path):
    pipeline = (
        Load(photos) >> Resize(max_edge=48) >> Flip() >> SetCaption(template="x") >> Save(tmp_path / "out")
    )
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(pipeline, workers=0, progress=False)
        items = by_name(ws)
    assert summary.step("flip").n_out == 24 and summary.step("flip").dropped == 0
    original, mirrored = items["dog/01"], items["dog/01_flip"]
    assert mirrored["parent"] == original.id and mirrored["flipped"] is True
    assert np.array_equal(np.asarray(mirrored.image), np.asarray(original.image)[:, ::-1])
    with Workspace(tmp_path / "ws2") as ws:
        kept = ws.run(Load(photos) >> TBoxes() >> CropBoxes(keep_parent=True), workers=0, progress=False)
    assert kept.step("crop_boxes").n_out == 36


def test_bad_boxes_fail_per_item(photos, tmp_path):
    shutil.rmtree(photos / "cat")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> TBoxes() >> CropBoxes(boxes="width"), workers=0, progress=False)
    assert summary.step("crop_boxes").failed == 9
    assert "width must be a list of boxes" in summary.errors[0]["reason"]
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> TBoxes() >> CropBoxes(min_size=10_000), workers=0, progress=False)
    assert summary.step("crop_boxes").n_out == 0 and summary.step("crop_boxes").dropped == 9


@pytest.mark.parametrize("param", [{"padding": -1.0}, {"min_size": -2}])
def test_crop_boxes_checks_its_parameters(param):
    from captionary import ParamError

    with pytest.raises(ParamError):
        CropBoxes(**param)


def test_a_batch_step_can_fan_out(photos, tmp_path):
    pipeline = Load(photos) >> Resize(max_edge=50) >> TBatchSplit() >> Save(tmp_path / "out")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(pipeline, workers=0, progress=False)
        items = by_name(ws)
        middle = {i.name: i for i in ws.items(include_dropped=True)}["dog/00"]
        again = ws.run(pipeline, workers=0, progress=False)
    split_stats = summary.step("t_batch_split")
    assert (split_stats.computed, split_stats.dropped, split_stats.n_out) == (12, 12, 24)
    assert again.computed == 0
    left, right = items["dog/00_left"], items["dog/00_right"]
    assert (
        left["halves"] == 2 and middle["drop_reason"] == "split in halves"
    )  # the parent's props are inherited
    whole = np.asarray(middle.image)
    assert np.array_equal(np.hstack([np.asarray(left.image), np.asarray(right.image)]), whole)


def test_children_of_children_from_one_step(photos, tmp_path):
    """One outcome nests children (a three-stage split in one step): each generation is made from the
    one before, `keep: false` leaves a middle one out, and the cache rebuilds the whole tree."""
    from steps_for_fanout import TNestedSplit

    shutil.rmtree(photos / "cat")
    pipeline = Load(photos) >> TNestedSplit() >> Resize(max_edge=100) >> Save(tmp_path / "out")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(pipeline, workers=0, progress=False)
        items = by_name(ws)
        again = ws.run(pipeline, workers=0, progress=False)
    assert again.computed == 0 and summary.step("t_nested_split").n_out == 9 * 4
    assert {n for n in items if n.startswith("dog/00")} == {
        "dog/00_left_top",
        "dog/00_left_top_l",
        "dog/00_left_top_r",
        "dog/00_left_bottom",
    }
    prefix = TNestedSplit().cache_prefix
    photo = upright(photos / "dog" / "00.jpg")
    top = items["dog/00_left_top"]
    assert items["dog/00_left_top_r"]["parent"] == top.id
    original_id = next(i.id for i in ws_items_all(tmp_path / "ws") if i.name == "dog/00")
    assert top["parent"] == child_id(original_id, prefix, "left")  # the left half: not kept
    assert top["parent"] not in {i.id for i in items.values()}
    assert top.id == child_id(top["parent"], prefix, "top")
    half = photo.crop(pixel_box([0.0, 0.0, 0.5, 1.0], *photo.size))
    quarter = half.crop(pixel_box([0.0, 0.0, 1.0, 0.5], *half.size))
    eighth = quarter.crop(pixel_box([0.5, 0.0, 1.0, 1.0], *quarter.size))
    assert len(items["dog/00_left_top_r"].recipe) == 4  # three crops, then the resize
    with Workspace(tmp_path / "ws2") as ws:
        ws.run(Load(photos) >> TNestedSplit(), workers=0, progress=False)
        unresized = by_name(ws)
    assert np.array_equal(np.asarray(unresized["dog/00_left_top_r"].image), np.asarray(eighth))


def ws_items_all(path):
    with Workspace(path) as ws:
        return list(ws.items(include_dropped=True))
