"""Dataflow-Gen's pipeline files run as they are: the ImageCaption example of its docs (docs/image.md,
github.com/Open-DataFlow/Dataflow-Gen) with `model_path` pointing at a tiny random LLaVA, and its
ImageGeneration example with tiny FLUX- and SD3-shaped pipelines and a local images API. The only
edits are what a CPU and no hub need: the model folders, the API URL, smaller sizes and token limit."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))  # tiny_models (the VLMs)

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from images_server import FakeImagesAPI
from PIL import Image
from tiny_models import tiny_model

from captionary.cli import main
from captionary.errors import ConfigError
from captionary.pipeline.yaml_loader import load_pipeline

PHOTOS = Path(__file__).resolve().parents[2] / "examples" / "photos"

IMAGE_CAPTION = """\
# example yaml file

meta_path: data/image/test_image_captioner.jsonl # path for the meta data, the format is fixed for image
meta_folder: data/image # only for captioner
base_folder: image_intermediate_results/ # path to save the intermediate results
save_folder: results/image_captioner # path to save the generated images
image_key: image # key for the image in the meta data
text_key: text # key for the text in the meta data
video_key: video # key for the video in the meta data

steps:
  - type: ImageCaptioner
    name: LLaVACaptioner
    config:
      model_path: {model}
      trust_remote_code: true
      tensor_parallel_size: 2
      max_model_len: 12
      max_num_seqs: 128
      temperature: 0.7
      top_p: 0.9
      top_k: 50
      repetition_penalty: 1.2
      prompt: What is the content of this image?
      repeat_time: 5
      batch_size: 1000
"""

IMAGE_GENERATION = """\
# example yaml file

meta_path: data/image/test_image_generator.jsonl
base_folder: image_intermediate_results/ # path to save the intermediate results
save_folder: results/image_generator # path to save the generated images
image_key: image # key for the image in the meta data
text_key: text # key for the text in the meta data
video_key: video # key for the video in the meta data

steps:
  - type: ImageGenerator
    name: FLUXGenerator
    config:
      model_path: {flux}
      height: 32
      weight: 48
      guidance_scale: 4.5
      num_inference_steps: 2
      max_sequence_length: 32
      batch_size: 1
      device: cuda
  - type: ImageGenerator
    name: StableDiffusion3Generator
    config:
      model_path: {sd3}
      height: 32
      weight: 48
      guidance_scale: 4.5
      num_inference_steps: 2
      max_sequence_length: 32
      batch_size: 1
      device: cuda
  - type: ImageGenerator
    name: ImageAPIGenerator
    config:
      model: openai:dall-e-3
      api_key: api_key
      api_url: {api}
      height: 32
      width: 48
      quality: standard
"""


def captioner_data(root: Path) -> None:
    (root / "data/image/train").mkdir(parents=True)
    rows = []
    for i, photo in enumerate(sorted((PHOTOS / "dog").glob("*.jpg"))[:4]):
        shutil.copy(photo, root / f"data/image/train/00000000{i}.jpg")
        rows.append({"id": f"00000000{i}", "image": f"train/00000000{i}.jpg"})
    (root / "data/image/test_image_captioner.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_image_caption_example_runs(tmp_path: Path) -> None:
    captioner_data(tmp_path)
    model = tiny_model("llava", tmp_path / "models")
    config = tmp_path / "ImageCaption.yaml"
    config.write_text(IMAGE_CAPTION.format(model=model))
    plan = load_pipeline(config)
    assert [s.name for s in plan.pipeline.steps] == ["load_manifest", "caption", "save"]
    caption = plan.pipeline.steps[1]
    assert caption.backend == "transformers" and caption.temperature == 0.7 and caption.top_p == 0.9
    assert caption.max_tokens == 12 and caption.prompt == "What is the content of this image?"
    assert caption.options == {"generate_options": {"top_k": 50}, "trust_remote_code": True}
    assert plan.workspace == tmp_path / "image_intermediate_results"

    assert main(["run", str(config), "--no-progress"]) == 0
    out = tmp_path / "results/image_captioner/train"  # a Hugging Face imagefolder
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert isinstance(row["text"], str) and row["text"].strip()  # the caption, under text_key
        assert (out / row["file_name"]).is_file() and row["id"].startswith("00000000")


def test_image_generation_example_runs(tmp_path: Path, pipelines) -> None:
    (tmp_path / "data/image").mkdir(parents=True)
    rows = [
        {"id": "000000000", "text": "a dog sitting on the grass", "image": "00000/000000000.jpg"},
        {"id": "000000001", "text": "a red backpack on a wooden floor", "image": "00000/000000001.jpg"},
    ]
    meta = tmp_path / "data/image/test_image_generator.jsonl"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeImagesAPI() as api:
        config = tmp_path / "ImageGeneration.yaml"
        config.write_text(IMAGE_GENERATION.format(flux=pipelines["flux"], sd3=pipelines["sd3"], api=api.url))
        plan = load_pipeline(config)
        names = [s.name for s in plan.pipeline.steps]
        assert names == ["load_prompts", "generate_image", "generate_image", "generate_image", "save"]
        flux, sd3, dalle = plan.pipeline.steps[1:4]
        assert (flux.backend, flux.width, flux.height, flux.guidance_scale, flux.dtype) == (
            "diffusers",
            48,
            32,
            4.5,
            "bfloat16",
        )
        assert sd3.model == str(pipelines["sd3"]) and dalle.backend == "openai" and dalle.model == "dall-e-3"
        assert main(["run", str(config), "--no-progress"]) == 0
        sent = [body for _, body, _ in api.hits]
    assert sorted(b["prompt"] for b in sent) == sorted(
        r["text"] for r in rows
    )  # the API made the last images
    assert all(b["quality"] == "standard" and b["size"] == "48x32" for b in sent)
    out = tmp_path / "results/image_generator/train"
    rows_out = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["text"] for r in rows_out) == sorted(r["text"] for r in rows)
    for row in rows_out:
        with Image.open(out / row["file_name"]) as image:
            assert image.size == (48, 32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "VideoCaptioner"}, "step type 'VideoCaptioner' cannot be mapped"),
        ({"name": "CogVLMCaptioner"}, "unknown captioner 'CogVLMCaptioner'"),
        ({"config": {"model_path": "x", "beam_width": 4}}, "config key 'beam_width' = 4 cannot be mapped"),
        (
            {"config": {"model_path": "x", "ignore_eos": True}},
            "config key 'ignore_eos' = True cannot be mapped",
        ),
    ],
)
def test_what_cannot_be_mapped_is_named(tmp_path: Path, change: dict, message: str) -> None:
    captioner_data(tmp_path)
    step = {"type": "ImageCaptioner", "name": "LLaVACaptioner", "config": {"model_path": "x"}} | change
    text = (
        "meta_path: data/image/test_image_captioner.jsonl\nmeta_folder: data/image\n"
        f"steps:\n  - {json.dumps(step)}\n"
    )
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_pipeline(tmp_path / "c.yaml")
    assert caught.value.line == 4 and "steps[0]" in caught.value.message


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("meta_path: m.jsonl\nnum_gpus: 8\nsteps: []\n")
    with pytest.raises(ConfigError, match="Dataflow-Gen key 'num_gpus' cannot be mapped") as caught:
        load_pipeline(tmp_path / "c.yaml")
    assert caught.value.line == 2
