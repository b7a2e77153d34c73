"""`generate_image` end to end through real Workspace runs on a tiny random FLUX-shaped pipeline:
existing captions regenerated as synthetic pairs, written by `save` at the asked size; the same seed
gives identical pixels; a re-run computes nothing and loads no model; a changed pixel parameter
regenerates; a batch out of memory is halved; the image is a stored blob later steps read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from typing import ClassVar

import numpy as np
from PIL import Image

from captionary import BatchStep, GenerateImage, Load, Save, SetCaption, Workspace
from captionary.errors import ParamError
from captionary.pipeline.yaml_loader import load_pipeline

FLUX = {"height": 32, "width": 48, "num_inference_steps": 2, "max_sequence_length": 32, "guidance_scale": 3.5}


def dog_photos(photos: Path) -> Path:
    return photos / "dog"  # 00-02 have .txt captions, 03-04 have none


def generate(pipelines: dict[str, Path], **changes: object) -> GenerateImage:
    settings = {"prompt": "{caption}", **FLUX, "batch_size": 2, **changes}
    return GenerateImage(model=str(pipelines["flux"]), **settings)


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_captions_regenerated_as_synthetic_pairs(photos: Path, tmp_path: Path, pipelines) -> None:
    step = generate(pipelines)
    out = tmp_path / "out"
    pipeline = Load(str(dog_photos(photos))) >> step >> Save(str(out), image_format="png")
    ws = Workspace(tmp_path / "ws")
    first = ws.run(pipeline)
    stats = first.steps[1]
    assert (stats.computed, stats.failed) == (3, 2)  # two photos have no caption to generate from
    assert all("has no property 'caption'" in e["reason"] for e in first.errors)
    assert stats.usage == {"images": 3}
    assert step.image_backend.pipe is None  # released when the step saw its last item
    images = pixels(out)
    assert sorted(images) == ["00.png", "01.png", "02.png"]
    assert {a.shape for a in images.values()} == {(32, 48, 3)}
    originals = {p.stem: Image.open(p).size for p in dog_photos(photos).glob("*.jpg")}
    assert all(size != (48, 32) for size in originals.values())  # the files are the generated images
    assert (out / "00.txt").read_text().strip() == (dog_photos(photos) / "00.txt").read_text().strip()

    # the item's image is now a stored blob with its seed recorded
    items = {item.name: item for item in ws.items()}
    item = items["00"]
    assert item.image_hash != item.id and item.base == item.image_hash and not item.recipe
    assert ws.blobs.get(item.base)[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(item["seed"], int) and (item.width, item.height) == (48, 32)

    # a re-run generates nothing (the model is never loaded); a changed guidance_scale regenerates
    again = ws.run(Load(str(dog_photos(photos))) >> generate(pipelines) >> Save(str(out), image_format="png"))
    assert (again.steps[1].computed, again.steps[1].cached) == (0, 3)
    assert again.steps[1].usage == {}
    assert pixels(out).keys() == images.keys()
    changed = ws.run(
        Load(str(dog_photos(photos)))
        >> generate(pipelines, guidance_scale=7.0)
        >> Save(str(out), image_format="png")
    )
    assert (changed.steps[1].computed, changed.steps[1].cached) == (3, 0)
    assert any(not np.array_equal(images[k], v) for k, v in pixels(out).items())


def test_same_seed_same_pixels_in_another_workspace(photos: Path, tmp_path: Path, pipelines) -> None:
    """Seeds make images reproducible: a fresh workspace (batch size 1, so other batches) gives
    identical pixels; another seed gives others."""
    runs = {}
    for name, changes in [("a", {"seed": 7}), ("b", {"seed": 7, "batch_size": 1}), ("c", {"seed": 8})]:
        out = tmp_path / f"out_{name}"
        ws = Workspace(tmp_path / f"ws_{name}")
        ws.run(
            Load(str(dog_photos(photos)))
            >> generate(pipelines, **changes)
            >> Save(str(out), image_format="png")
        )
        runs[name] = pixels(out)
    for key in runs["a"]:
        assert np.array_equal(runs["a"][key], runs["b"][key])
        assert not np.array_equal(runs["a"][key], runs["c"][key])


def test_a_batch_out_of_memory_is_halved(photos: Path, tmp_path: Path, pipelines) -> None:
    from tiny_pipelines import FitsOne

    FitsOne.sizes.clear()
    step = generate(pipelines, backend="tiny_pipelines:FitsOne", batch_size=3)
    summary = Workspace(tmp_path / "ws").run(Load(str(dog_photos(photos))) >> step)
    assert (summary.steps[1].computed, summary.steps[1].failed) == (3, 2)
    assert FitsOne.sizes[:3] == [3, 1, 1]  # halved (3 // 2 = 1), then one at a time


def test_a_generator_and_a_captioner_never_hold_the_gpu_at_once(
    photos: Path, tmp_path: Path, pipelines
) -> None:
    from tiny_pipelines import EVENTS

    # defined here, not at import: a step class registers itself, and the step contract test lists
    # the registry when it is collected
    class TGenGpuCaptioner(BatchStep):
        """Pretends to hold a GPU model after the generator: logs its load."""

        name: ClassVar[str] = "t_gen_gpu_captioner"
        writes: ClassVar[tuple[str, ...]] = ("caption",)
        reads_image: ClassVar[bool] = False

        def accelerator(self) -> str | None:
            return "cuda:0"

        def setup(self) -> None:
            from tiny_pipelines import EVENTS

            EVENTS.append("load captioner")

        def apply_batch(self, items):
            return [{"caption": "captioned"} for _ in items]

    EVENTS.clear()
    step = generate(pipelines, backend="tiny_pipelines:OnGpu")
    summary = Workspace(tmp_path / "ws").run(Load(str(dog_photos(photos))) >> step >> TGenGpuCaptioner())
    assert summary.steps[2].computed == 3
    assert EVENTS == ["load generator", "release generator", "load captioner"]


def test_a_prompt_template_over_several_properties(photos: Path, tmp_path: Path, pipelines) -> None:
    pipeline = (
        Load(str(dog_photos(photos)))
        >> SetCaption(template="a dog")
        >> generate(pipelines, prompt="{caption}, photo named {name}")
        >> Save(str(tmp_path / "out"), image_format="png")
    )
    summary = Workspace(tmp_path / "ws").run(pipeline)
    assert (summary.steps[2].computed, summary.steps[2].failed) == (5, 0)
    assert len(pixels(tmp_path / "out")) == 5


def test_yaml_and_parameter_errors(tmp_path: Path, pipelines) -> None:
    text = f"""
workspace: {tmp_path / "ws"}
steps:
  - load: {{path: {tmp_path}}}
  - generate_image: {{model: {pipelines["flux"]}, prompt: "{{caption}}", height: 32, width: 48}}
"""
    (tmp_path / "p.yaml").write_text(text)
    step = load_pipeline(tmp_path / "p.yaml").pipeline.steps[1]
    assert isinstance(step, GenerateImage) and step.reads == ("caption", "seed")
    with pytest.raises(ParamError, match="model folder not found"):
        GenerateImage(model=str(tmp_path / "missing"))
    with pytest.raises(ParamError, match="names no property"):
        GenerateImage(model=str(pipelines["flux"]), prompt="a fixed prompt")
    with pytest.raises(ParamError, match="unknown image backend 'dalle'"):
        GenerateImage(model="x", backend="dalle")


def test_cache_key_holds_every_pixel_parameter_but_not_batch_or_device(pipelines) -> None:
    base = generate(pipelines)
    for change in [
        {"guidance_scale": 4.0},
        {"num_inference_steps": 3},
        {"height": 64},
        {"width": 64},
        {"negative_prompt": "blurry"},
        {"max_sequence_length": 16},
        {"seed": 1},
        {"revision": "abc"},
        {"dtype": "bfloat16"},
        {"options": {"call_options": {"true_cfg_scale": 2.0}}},
        {"prompt": "{caption}!"},
    ]:
        assert generate(pipelines, **change).cache_prefix != base.cache_prefix, change
    for change in [{"batch_size": 7}, {"device": "cpu"}]:
        assert generate(pipelines, **change).cache_prefix == base.cache_prefix, change
    assert json.loads(json.dumps(base.cache_params))["model"]["backend"] == "diffusers"


def test_the_example_pipeline_parses() -> None:
    plan = load_pipeline(Path(__file__).resolve().parents[2] / "examples" / "generate.yaml")
    names = [s.name for s in plan.pipeline.steps]
    assert names == ["load_prompts", "generate_image", "caption", "save"]
    step = plan.pipeline.steps[1]
    assert step.image_backend.config.model == "black-forest-labs/FLUX.1-dev" and step.dtype == "bfloat16"
