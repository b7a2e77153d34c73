"""The `diffusers` image backend on tiny random FLUX-, SD3- and SDXL-shaped pipelines built from
configs in a temp folder: the right pipeline class, the asked size, per-image seeds (an image is the
same alone or in a batch), parameters a pipeline does not take, loading and releasing."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

import numpy as np

from captionary.backends.base import BackendConfig
from captionary.backends.images import ImageParams, ImageRequest, make_image_backend
from captionary.errors import ConfigError

SMALL = ImageParams(height=32, width=48, num_inference_steps=2, guidance_scale=3.0)
T5 = ImageParams(height=32, width=48, num_inference_steps=2, guidance_scale=3.0, max_sequence_length=32)


def backend(folder: Path, **options: object):
    return make_image_backend(BackendConfig("diffusers", str(folder), None, dict(options)))


@pytest.mark.parametrize(
    ("shape", "cls", "params"),
    [
        ("flux", "FluxPipeline", T5),
        ("sd3", "StableDiffusion3Pipeline", T5),
        ("sdxl", "StableDiffusionXLPipeline", SMALL),
    ],
)
def test_each_family_loads_by_folder_and_makes_the_asked_size(pipelines, shape, cls, params) -> None:
    images = backend(pipelines[shape])
    with images:
        assert type(images.pipe).__name__ == cls
        results = images.generate(
            [ImageRequest("a dog on the grass", 1, params), ImageRequest("a cat", 2, params)]
        )
        assert images.calls == 1  # one batched call
    assert images.pipe is None  # released
    assert [r.error for r in results] == [None, None]
    assert [r.image.size for r in results] == [(48, 32), (48, 32)]
    first, second = (np.asarray(r.image, dtype=np.int16) for r in results)
    assert np.abs(first - second).mean() > 1  # different prompts and seeds, different pixels


@pytest.mark.parametrize(
    ("shape", "params", "tolerance"), [("flux", T5, 0), ("sd3", T5, 0), ("sdxl", SMALL, 2)]
)
def test_an_image_is_the_same_alone_and_in_a_batch(pipelines, shape, params, tolerance) -> None:
    """Each image's latents come from its own seeded generator, so it can be made again by itself
    (exactly for the transformers; the UNet's batched convolutions round differently by a level)."""
    with backend(pipelines[shape]) as images:
        batch = images.generate([ImageRequest(f"a red backpack {i}", 10 + i, params) for i in range(3)])
        alone = images.generate([ImageRequest("a red backpack 1", 11, params)])[0]
        other_seed = images.generate([ImageRequest("a red backpack 1", 12, params)])[0]
    pixels = [np.asarray(r.image, dtype=np.int16) for r in (batch[1], alone, other_seed)]
    assert np.abs(pixels[0] - pixels[1]).max() <= tolerance
    assert np.abs(pixels[1] - pixels[2]).mean() > 1


def test_a_parameter_the_pipeline_does_not_take_fails_those_requests(pipelines) -> None:
    with backend(pipelines["sdxl"]) as images:
        results = images.generate([ImageRequest("a cat", 0, T5), ImageRequest("a cat", 0, SMALL)])
    assert results[0].error == "StableDiffusionXLPipeline takes no max_sequence_length"
    assert results[1].error is None and results[1].image.size == (48, 32)


def test_pipeline_class_call_options_and_dtype(pipelines) -> None:
    import torch

    options = {"pipeline": "FluxPipeline", "dtype": "bfloat16", "call_options": {"max_sequence_length": 16}}
    with backend(pipelines["flux"], **options) as images:
        assert images.pipe.transformer.dtype == torch.bfloat16
        (result,) = images.generate([ImageRequest("a teapot", 3, SMALL)])
    assert result.image.size == (48, 32)
    with pytest.raises(ConfigError, match="no pipeline class 'NoSuchPipeline'"):
        backend(pipelines["flux"], pipeline="NoSuchPipeline").load()


def test_bad_configuration_fails_early(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dtype must be one of"):
        backend(tmp_path, dtype="float8")
    with pytest.raises(ConfigError, match="does not take option"):
        backend(tmp_path, enable_cpu_offload=True)
    with pytest.raises(ConfigError, match="model folder not found"):
        backend(tmp_path / "missing").preflight()
    with pytest.raises(ConfigError, match="choose one of"):
        backend(tmp_path, enable_model_cpu_offload=True, enable_sequential_cpu_offload=True)
