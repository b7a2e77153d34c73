"""The image-generation backend interface: prompts in, PIL images out.

    backend = make_image_backend(config)     # cheap: imports no heavy library, loads nothing
    backend.load()                           # once per run, in the step's setup()
    results = backend.generate(requests)     # one ImageResult per ImageRequest, in order
    backend.close()                          # in the step's teardown(): free the pipeline, GPU memory

Contract of `generate(requests) -> list[ImageResult]`:
- `len(results) == len(requests)`, same order; each result holds one image or an `error` (that request
  failed alone, after the backend's own retries). An exception fails the whole call.
- Every request carries its own `seed`: a backend that can seed generates the image exactly as it would
  alone (a per-request random generator), so any image can be made again by itself.
- A batch that does not fit in memory raises `OutOfMemory` (or the library's own error, see
  `is_out_of_memory`); the step then halves its batch and tries again.

Backends are named in `IMAGE_BACKENDS` (name -> "module:Class", imported on first use) and configured
by the same `BackendConfig` as the text backends (backend, model, revision, options).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from captionary.backends.base import Backend, BackendConfig, check_options
from captionary.core.plugins import plugin_class

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class ImageParams:
    """How to generate. None: the model's own default (a pipeline's `height`, steps, guidance...)."""

    height: int | None = None
    width: int | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    negative_prompt: str | None = None
    max_sequence_length: int | None = None
    extra: tuple[tuple[str, Any], ...] = ()  # other call arguments, e.g. (("true_cfg_scale", 4.0),)

    def as_dict(self) -> dict[str, Any]:
        """The set parameters (None left out), `extra` merged in."""
        plain = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra" and v is not None}
        return {**plain, **dict(self.extra)}


@dataclass
class ImageRequest:
    """One image: a prompt, its seed, and how to generate it."""

    prompt: str
    seed: int
    params: ImageParams = field(default_factory=ImageParams)


@dataclass
class ImageResult:
    """One generated image, or why this request failed; `usage` counts what a paid API reports."""

    image: Image | None = None
    error: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


class ImageBackend(Backend):
    """Base class of image backends (a `Backend` whose `generate` takes `ImageRequest`s)."""

    reproducible: ClassVar[bool] = True  # False: the service takes no seed (the same request may differ)

    def generate(self, requests: Sequence[ImageRequest]) -> list[ImageResult]:  # type: ignore[override]
        raise NotImplementedError

    def usage(self) -> dict[str, int]:
        """Counters since the last call (requests, retries, tokens), for the run summary; resets them."""
        return {}


IMAGE_BACKENDS: dict[str, str] = {
    "diffusers": "captionary.backends.diffusers:DiffusersBackend",
    "openai": "captionary.backends.openai_images:OpenAIImagesBackend",
}
"""Image backend name -> "module:Class", imported on first use."""


def image_backend_class(name: str) -> type[ImageBackend]:
    """The image backend registered as `name` (or a "module:Class" of your own); ConfigError on a miss."""
    return plugin_class(
        name, IMAGE_BACKENDS, ImageBackend, "image backend", "captionary.backends.images.ImageBackend"
    )


def make_image_backend(config: BackendConfig) -> ImageBackend:
    """An image backend for `config`, not loaded yet (ConfigError on unknown options, missing library)."""
    cls = image_backend_class(config.backend)
    check_options(cls, config)
    return cls(config)


def image_cache_identity(backend: ImageBackend) -> dict[str, Any]:
    """What about an image backend changes pixels: backend, model, revision, its `cache_options`."""
    config: BackendConfig = backend.config
    return {
        "backend": config.backend,
        "model": config.model,
        "revision": config.revision,
        "options": {name: backend.settings.get(name) for name in backend.cache_options},
    }
