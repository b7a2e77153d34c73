"""`class_images` (DreamBooth prior preservation) on a tiny random FLUX-shaped pipeline: `count` class
images with fixed seeds saved as a regularization folder; a re-run with a larger count generates only
the new ones; the YAML form; without a model it only makes prompt items."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from PIL import Image

from captionary import ClassImages, GenerateImage, Pipeline, Save, Workspace
from captionary.cli import main
from captionary.errors import ParamError

FLUX = {"height": 32, "width": 48, "num_inference_steps": 2, "max_sequence_length": 32}


def test_class_images_then_more(tmp_path: Path, pipelines) -> None:
    reg = tmp_path / "reg"
    ws = Workspace(tmp_path / "ws")

    def run(count: int):
        source = ClassImages(prompt="a photo of a dog", count=count, model=str(pipelines["flux"]), **FLUX)
        return ws.run(source >> Save(str(reg), format="kohya"))

    first = run(3)
    assert [s.name for s in first.steps] == ["class_images", "generate_image", "save"]
    assert first.steps[1].computed == 3
    files = sorted(p.name for p in reg.glob("*.png"))
    assert files == ["class_00000.png", "class_00001.png", "class_00002.png"]
    assert all(Image.open(reg / f).size == (48, 32) for f in files)
    before = {f: (reg / f).read_bytes() for f in files}
    seeds = sorted(item["seed"] for item in ws.items())
    assert seeds == [0, 1, 2]

    more = run(5)
    assert (more.steps[0].cached, more.steps[0].computed) == (3, 2)
    assert (more.steps[1].cached, more.steps[1].computed) == (3, 2)  # only the new ones generated
    assert len(list(reg.glob("*.png"))) == 5
    assert all((reg / f).read_bytes() == data for f, data in before.items())


def test_yaml_form_runs(tmp_path: Path, pipelines) -> None:
    (tmp_path / "reg.yaml").write_text(
        f"""workspace: ws
steps:
  - class_images:
      prompt: a photo of a cat
      count: 2
      seed: 10
      model: {pipelines["flux"]}
      height: 32
      width: 48
      num_inference_steps: 2
      max_sequence_length: 32
  - save: {{path: reg, format: kohya}}
"""
    )
    assert main(["run", str(tmp_path / "reg.yaml"), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "reg").glob("*.png")) == ["class_00000.png", "class_00001.png"]


def test_without_a_model_only_prompt_items(tmp_path: Path, pipelines) -> None:
    source = ClassImages(prompt="a photo of a dog", count=2)
    assert source.expanded() == [source]
    pipeline = Pipeline([source, GenerateImage(model=str(pipelines["flux"]), **FLUX)])
    assert len(Pipeline(pipeline.steps)) == 2  # expanding again changes nothing
    summary = Workspace(tmp_path / "ws").run(pipeline >> Save(str(tmp_path / "out")))
    assert summary.steps[1].computed == 2
    with pytest.raises(ParamError, match="height need a model"):
        ClassImages(prompt="a dog", count=2, height=64)
    with pytest.raises(ParamError, match="count: must be at least 1"):
        ClassImages(prompt="a dog", count=0)


def test_class_images_into_a_kohya_regularization_folder(tmp_path: Path, pipelines) -> None:
    """The issue's form: `save: {format: kohya, repeats: 1, folder: reg/1_dog}` beside the training set."""
    source = ClassImages(prompt="a photo of a dog", count=2, model=str(pipelines["flux"]), **FLUX)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(source >> Save(str(tmp_path / "out"), format="kohya", repeats=1, folder="reg/1_dog"))
    assert not summary.errors
    folder = tmp_path / "out" / "reg" / "1_dog"
    images = sorted(p.name for p in folder.glob("*.png"))
    assert images == ["class_00000.png", "class_00001.png"]
    assert all(
        (folder / name).with_suffix(".txt").read_text().strip() == "a photo of a dog" for name in images
    )
