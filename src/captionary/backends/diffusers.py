"""`diffusers` image backend: a text-to-image pipeline run in this process.

`AutoPipelineForText2Image` loads FLUX (`FluxPipeline`), SD3/3.5 (`StableDiffusion3Pipeline`), SDXL
(`StableDiffusionXLPipeline`), SD 1.x/2.x, PixArt, Sana, ... by hub id or local folder; `pipeline`
names a class when the auto mapping does not know the model (then `DiffusionPipeline` reads the class
from `model_index.json`). A batch of requests with the same settings is one pipeline call with one
CPU `torch.Generator` per image, seeded with that image's seed: the latents of each image are drawn
from its own generator, so an image is the same alone or in any batch, on any device. Memory options
are diffusers' own: `enable_model_cpu_offload`, `enable_sequential_cpu_offload`, VAE slicing/tiling,
an attention backend, quantization (`PipelineQuantizationConfig`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from captionary.backends.base import BackendConfig, OutOfMemory
from captionary.backends.images import ImageBackend, ImageParams, ImageRequest, ImageResult
from captionary.backends.transformers import DTYPES, free_memory, pick_device, pick_dtype
from captionary.errors import ConfigError

log = logging.getLogger(__name__)


class DiffusersBackend(ImageBackend):
    """A diffusers text-to-image pipeline: loaded once, batched calls, per-image seeds."""

    name: ClassVar[str] = "diffusers"
    extra: ClassVar[str] = "generate"
    modules: ClassVar[tuple[str, ...]] = ("torch", "diffusers")
    options: ClassVar[dict[str, Any]] = {
        "device": "auto",  # auto: cuda, else mps, else cpu; or "cuda:1"
        "dtype": "auto",  # auto: bfloat16 on CUDA (float16 if unsupported), float16 on MPS, else float32
        "pipeline": None,  # a diffusers class name (e.g. "FluxPipeline"); None: AutoPipelineForText2Image
        "variant": None,  # e.g. "fp16" weights files
        "enable_model_cpu_offload": False,  # whole models to the GPU only while they run
        "enable_sequential_cpu_offload": False,  # layer by layer (slowest, least memory)
        "enable_vae_slicing": False,
        "enable_vae_tiling": False,
        "attention": None,  # a diffusers attention backend, e.g. "flash", "_native_cudnn", "sage"
        "quantization": None,  # PipelineQuantizationConfig(**this): {quant_backend, quant_kwargs, ...}
        "load_options": {},  # other from_pretrained arguments
        "call_options": {},  # other pipeline call arguments for every image (e.g. {true_cfg_scale: 4.0})
    }
    cache_options: ClassVar[tuple[str, ...]] = (
        "dtype",
        "pipeline",
        "variant",
        "quantization",
        "load_options",
        "call_options",
    )

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        if str(self.settings["dtype"]) not in DTYPES:
            raise ConfigError(
                f"diffusers: dtype must be one of {', '.join(DTYPES)}, got {self.settings['dtype']!r}"
            )
        if self.settings["enable_model_cpu_offload"] and self.settings["enable_sequential_cpu_offload"]:
            raise ConfigError(
                "diffusers: choose one of enable_model_cpu_offload and enable_sequential_cpu_offload"
            )
        self.pipe: Any = None
        self.accepts: frozenset[str] = frozenset()
        self.device = "cpu"
        self.calls = 0  # pipeline calls (tests assert a cached run makes none)
        self._images = 0

    # --- lifecycle ---------------------------------------------------------------------------------
    def preflight(self) -> None:
        model = self.config.model
        looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1
        if looks_local and not Path(model).expanduser().is_dir():
            raise ConfigError(f"diffusers: model folder not found: {model}")

    def accelerator(self) -> str | None:
        device = pick_device(str(self.settings["device"]))
        return None if device == "cpu" else device

    def load(self) -> None:
        if self.pipe is not None:
            return
        import diffusers

        self.preflight()
        self.device = pick_device(str(self.settings["device"]))
        renamed = hasattr(diffusers.utils.deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
        kwargs: dict[str, Any] = {
            "revision": self.config.revision,
            "dtype" if renamed else "torch_dtype": pick_dtype(str(self.settings["dtype"]), self.device),
        }
        if self.settings["variant"]:
            kwargs["variant"] = self.settings["variant"]
        if quantization := self.settings["quantization"]:
            kwargs["quantization_config"] = diffusers.PipelineQuantizationConfig(**quantization)
        kwargs.update(self.settings["load_options"] or {})
        self.pipe = self._pipeline_class(diffusers).from_pretrained(self.config.model, **kwargs)
        if self.settings["enable_model_cpu_offload"]:
            self.pipe.enable_model_cpu_offload(device=self.device)
        elif self.settings["enable_sequential_cpu_offload"]:
            self.pipe.enable_sequential_cpu_offload(device=self.device)
        elif not getattr(self.pipe, "hf_device_map", None):
            self.pipe.to(self.device)
        if self.settings["enable_vae_slicing"]:
            self.pipe.vae.enable_slicing()
        if self.settings["enable_vae_tiling"]:
            self.pipe.vae.enable_tiling()
        if attention := self.settings["attention"]:
            denoiser = getattr(self.pipe, "transformer", None) or getattr(self.pipe, "unet", None)
            if denoiser is None or not hasattr(denoiser, "set_attention_backend"):
                raise ConfigError(f"diffusers: {type(self.pipe).__name__} cannot set an attention backend")
            denoiser.set_attention_backend(attention)
        self.pipe.set_progress_bar_config(disable=True)
        self.accepts = frozenset(inspect.signature(self.pipe.__call__).parameters)

    def _pipeline_class(self, diffusers: Any) -> Any:
        name = self.settings["pipeline"]
        if not name:
            return _AutoOrAny(diffusers)
        cls = getattr(diffusers, str(name), None)
        if cls is None or not hasattr(cls, "from_pretrained"):
            raise ConfigError(f"diffusers: no pipeline class {name!r} in diffusers {diffusers.__version__}")
        return cls

    def close(self) -> None:
        if self.pipe is None:
            return
        self.pipe = None
        free_memory(self.device)

    def usage(self) -> dict[str, int]:
        counts = {"images": self._images} if self._images else {}
        self._images = 0
        return counts

    # --- generation --------------------------------------------------------------------------------
    def generate(self, requests: Sequence[ImageRequest]) -> list[ImageResult]:  # type: ignore[override]
        self.load()
        results: list[ImageResult | None] = [None] * len(requests)
        groups: dict[ImageParams, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.params, []).append(i)
        for params, indices in groups.items():
            arguments = {**(self.settings["call_options"] or {}), **params.as_dict()}
            refused = sorted(set(arguments) - self.accepts)
            if refused:
                error = f"{type(self.pipe).__name__} takes no {', '.join(refused)}"
                for i in indices:
                    results[i] = ImageResult(error=error)
                continue
            images = self._call([requests[i] for i in indices], arguments)
            for i, image in zip(indices, images):
                results[i] = ImageResult(image=image)
        return [r if r is not None else ImageResult(error="no result") for r in results]

    def _call(self, requests: list[ImageRequest], arguments: dict[str, Any]) -> list[Any]:
        import torch

        generators = [torch.Generator("cpu").manual_seed(int(r.seed)) for r in requests]
        prompts = [r.prompt for r in requests]
        if "negative_prompt" in arguments:
            arguments = {**arguments, "negative_prompt": [arguments["negative_prompt"]] * len(prompts)}
        try:
            with torch.inference_mode():
                self.calls += 1
                output = self.pipe(
                    prompt=prompts,
                    generator=generators,
                    num_images_per_prompt=1,
                    output_type="pil",
                    **arguments,
                )
        except torch.OutOfMemoryError as exc:
            free_memory(self.device)
            raise OutOfMemory(f"{len(requests)} images did not fit on {self.device}: {exc}") from exc
        images = list(output.images)
        if len(images) != len(requests):
            raise RuntimeError(
                f"{type(self.pipe).__name__} returned {len(images)} images for {len(requests)} prompts"
            )
        self._images += len(images)
        return images


class _AutoOrAny:
    """`AutoPipelineForText2Image`, falling back to `DiffusionPipeline` (the class `model_index.json`
    names) for a text-to-image pipeline the auto mapping does not list."""

    def __init__(self, diffusers: Any):
        self.diffusers = diffusers

    def from_pretrained(self, model: str, **kwargs: Any) -> Any:
        try:
            return self.diffusers.AutoPipelineForText2Image.from_pretrained(model, **kwargs)
        except ValueError as exc:  # "AutoPipeline can't find a pipeline linked to ..."
            log.info("AutoPipelineForText2Image: %s; loading with DiffusionPipeline", exc)
            return self.diffusers.DiffusionPipeline.from_pretrained(model, **kwargs)
