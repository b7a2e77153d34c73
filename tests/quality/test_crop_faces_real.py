"""`faces >> crop_boxes >> flip` on real photos, as examples/faces.yaml runs it: one crop per face
found by dlib, a mirrored copy of each, nothing recomputed on the second run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("dlib")

from captionary import Workspace
from captionary.cli import main
from captionary.steps.transforms.region import pixel_box
from conftest import REPO

DATA = Path(__file__).parent / "data"


def test_examples_faces_yaml_crops_each_face_and_flips_it(tmp_path, capsys):
    shutil.copy(REPO / "examples" / "faces.yaml", tmp_path)
    shutil.copytree(REPO / "examples" / "photos", tmp_path / "photos", ignore=shutil.ignore_patterns("*.md"))
    shutil.copytree(REPO / "examples" / "portraits", tmp_path / "portraits")  # a NASA photo, public domain
    shutil.copy(tmp_path / "photos" / "dog" / "00.jpg", tmp_path / "portraits" / "same_dog.jpg")
    assert main(["run", str(tmp_path / "faces.yaml"), "--no-progress"]) == 0
    assert main(["run", str(tmp_path / "faces.yaml"), "--no-progress"]) == 0
    table = capsys.readouterr().out.split("completed")[-2]
    rows = [line.split() for line in table.strip().splitlines()]
    counts = [row for row in rows if len(row) == 7 and row[1].isdigit()]  # the step table's rows
    assert len(counts) == 7 and all(row[3] == "0" for row in counts)  # computed 0
    images = sorted(p.name for p in (tmp_path / "faces").rglob("*.jpg"))
    assert images == ["astronaut_box0.jpg", "astronaut_box0_flip.jpg"]  # pets and toys have no face
    with Workspace(tmp_path / "ws-faces") as ws:
        items = {item.name: item for item in ws.items(include_dropped=True)}
        dog = next(i for i in items.values() if i.source.endswith("dog/00.jpg"))
        assert [o["step"] for o in ws.origins(dog.id)] == ["load", "load#2"]
    crop = items["astronaut_box0"]
    assert crop.width == crop.height <= 512
    photo = Image.open(DATA / "astronaut.jpg").convert("RGB")
    x0, y0, _, _ = pixel_box(crop["region"], *photo.size)
    assert 0.25 < x0 / photo.width < 0.4 and 0.05 < y0 / photo.height < 0.2  # around her face
    assert (
        crop["parent"] == items["astronaut"].id and items["astronaut"]["drop_reason"] == "split into 1 items"
    )
    flipped = np.asarray(items["astronaut_box0_flip"].image)
    assert np.array_equal(flipped, np.asarray(crop.image)[:, ::-1])
