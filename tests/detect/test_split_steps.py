"""The detector split steps on real photos: children are crops of their parent (derived images,
replayed from the recipe), cached on a re-run, with stable ids; an image without detections is dropped
with the reason; `three_stage_split` makes children of children; the offline detectors (OpenCV HOG
people, dlib faces) on a composite of real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps
from tiny_detectors import yolo_onnx

from captionary import CropFaces, Load, Save, SplitPersons, ThreeStageSplit, Workspace
from captionary.errors import ParamError
from captionary.steps.transforms.region import pixel_box

REPO_DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "quality" / "data"


def fixed_detector(path, box, label="person", score=0.9):
    """A detector that always finds one object at `box` (fractions; the model sees a stretched 64 x 64)."""
    rows = np.zeros((1, 4, 6), np.float32)
    rows[0, 0] = [box[0] * 64, box[1] * 64, box[2] * 64, box[3] * 64, score, 0]
    return str(yolo_onnx(path, rows, names={0: label}))


def upright(path):
    return ImageOps.exif_transpose(Image.open(path)).convert("RGB")


def by_name(ws, dropped=False):
    return {item.name: item for item in ws.items(include_dropped=dropped)}


def test_split_persons_makes_cropped_children_that_are_cached(photos, tmp_path):
    detector = fixed_detector(tmp_path / "person.onnx", [0.25, 0.1, 0.75, 0.9])
    step = SplitPersons(detector=detector, resize="stretch", min_size=8)
    pipeline = Load(photos) >> step >> Save(tmp_path / "out")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(pipeline, workers=0, progress=False)
        items = by_name(ws)
        rerun = ws.run(pipeline, workers=0, progress=False)
        again = by_name(ws)
    stats = summary.step("split_persons")
    assert (stats.n_in, stats.computed, stats.dropped, stats.n_out) == (12, 12, 12, 12)
    assert sorted(items) == sorted(f"{p.parent.name}/{p.stem}_person0" for p in photos.rglob("*.jpg"))
    child = items["cat/00_person0"]
    photo = upright(photos / "cat" / "00.jpg")
    expected = photo.crop(pixel_box(child["region"], *photo.size))
    assert np.array_equal(np.asarray(child.image), np.asarray(expected))
    assert child["detection"] == {"box": [0.25, 0.1, 0.75, 0.9], "score": 0.9, "label": "person"}
    assert (child["width"], child["height"]) == expected.size
    assert rerun.step("split_persons").computed == 0 and rerun.step("split_persons").cached == 12
    assert {n: i.id for n, i in again.items()} == {n: i.id for n, i in items.items()}  # stable ids
    assert len(list((tmp_path / "out").rglob("*.jpg"))) == 12


def test_nothing_found_drops_the_image_with_the_reason_unless_kept(photos, tmp_path):
    detector = fixed_detector(tmp_path / "weak.onnx", [0.25, 0.1, 0.75, 0.9], score=0.2)  # below 0.3
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> SplitPersons(detector=detector), workers=0, progress=False)
        reasons = {i.get("drop_reason") for i in ws.items(include_dropped=True)}
        kept = ws.run(
            Load(photos) >> SplitPersons(detector=detector, min_score=0.1, keep_parent=True),
            workers=0,
            progress=False,
        )
    assert summary.step("split_persons").dropped == 12 and reasons == {"no person found"}
    assert kept.step("split_persons").n_out == 24  # 12 photos + 12 crops


def test_three_stage_split_makes_children_of_children(photos, tmp_path):
    step = ThreeStageSplit(
        person=fixed_detector(tmp_path / "p.onnx", [0.2, 0.2, 0.8, 0.8]),
        halfbody=fixed_detector(tmp_path / "h.onnx", [0.0, 0.0, 1.0, 0.5], "halfbody"),
        head=fixed_detector(tmp_path / "d.onnx", [0.25, 0.0, 0.75, 0.5], "head"),
        resize="stretch",
        min_size=8,
    )
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> step, workers=0, progress=False)
        items = by_name(ws)
        rerun = ws.run(Load(photos) >> step, workers=0, progress=False)
    assert summary.step("three_stage_split").n_out == 36 and rerun.step("three_stage_split").computed == 0
    person, half = items["dog/01_person0"], items["dog/01_person0_halfbody0"]
    head = items["dog/01_person0_halfbody0_head0"]
    assert [x["split_stage"] for x in (person, half, head)] == ["person", "halfbody", "head"]
    assert head["parent"] == half.id and half["parent"] == person.id
    photo = upright(photos / "dog" / "01.jpg")
    crop = photo
    for item in (person, half, head):
        crop = crop.crop(pixel_box(item["region"], *crop.size))
        assert np.array_equal(np.asarray(item.image), np.asarray(crop)), item.name
    assert len(head.recipe) == 3


def composite(background, people: int = 2, size: int = 300, canvas=(1000, 500)):
    """Real photos pasted together: the astronaut portrait (NASA, public domain) `people` times on a
    sample photo's background, `size` px each, centred in each half of the canvas; with the pasted
    rectangles as fractions."""
    image = Image.open(background).convert("RGB").resize(canvas)
    person = Image.open(REPO_DATA / "astronaut.jpg").convert("RGB").resize((size, size))
    width, height = canvas
    pasted = []
    for centre in (width // 4, 3 * width // 4)[:people]:
        x, y = centre - size // 2, (height - size) // 2
        image.paste(person, (x, y))
        pasted.append((x / width, y / height, (x + size) / width, (y + size) / height))
    return image, pasted


def test_offline_detectors_on_real_photos(photos, tmp_path):
    pytest.importorskip("cv2")
    pytest.importorskip("dlib")
    folder = tmp_path / "pictures"
    folder.mkdir()
    background = photos / "teapot" / "00.jpg"
    two, persons_at = composite(background)  # HOG needs room around a person
    two.save(folder / "two.jpg", quality=95)
    composite(background, people=0)[0].save(folder / "none.jpg", quality=95)
    portraits, faces_at = composite(background, size=400, canvas=(1100, 600))  # faces of ~80 px
    portraits.save(folder / "portraits.jpg", quality=95)
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(folder) >> SplitPersons(detector="hog", max_edge=1100), workers=0, progress=False)
        persons = by_name(ws, dropped=True)
        faces_step = CropFaces(detector="dlib-hog", min_score=0.5, max_edge=1100)
        ws.run(Load(folder) >> faces_step, workers=0, progress=False)
        faces = by_name(ws, dropped=True)
    # HOG (a weak detector for half-body portraits: see the README) finds both pasted people here
    assert persons["none"]["drop_reason"] == "no person found"
    found = [i["region"] for n, i in persons.items() if n.startswith("two_person")]
    assert len(found) == 2 and all(any(inside(r, p) for r in found) for p in persons_at)
    assert faces["none"]["drop_reason"] == "no face found"
    found = [i["region"] for n, i in faces.items() if n.startswith("portraits_face")]
    assert len(found) == 2 and all(any(inside(r, p) for r in found) for p in faces_at)


def inside(region, paste) -> bool:
    """The region's centre lies inside the pasted rectangle."""
    cx, cy = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
    return paste[0] < cx < paste[2] and paste[1] < cy < paste[3]


def test_bad_detector_names_fail_when_the_pipeline_is_built(tmp_path):
    with pytest.raises(ParamError, match=r"split_persons\.detector: 'nope': not hog, dlib or dlib-hog"):
        SplitPersons(detector="nope")
    with pytest.raises(ParamError, match=r"three_stage_split: give at least one of person, halfbody, head"):
        ThreeStageSplit(person=None, halfbody=None, head=None)


def test_the_readme_examples_build(tmp_path):
    import re

    from captionary import parse_pipeline

    readme = (REPO_DATA.parents[2] / "README.md").read_text()
    section = readme.split("## Persons, faces and heads")[1].split("\n## ")[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    (tmp_path / "photos").mkdir()
    head = "workspace: ws\nsteps:\n  - load: {path: photos}\n"
    names = []
    for block in blocks:
        text = block if block.startswith("workspace") else head + block
        names += [step.name for step in parse_pipeline(text, base=tmp_path).pipeline]
    assert {"split_persons", "crop_faces", "three_stage_split", "crop_heads", "main_subject"} <= set(names)
