"""`generate_image`: give each item an image made from its prompt by a text-to-image model.

The prompt is a template over the item's properties (`"{prompt}"` for prompt items, `"{caption}"` to
regenerate an existing dataset's captions as synthetic pairs). Each image has a seed: the item's
`seed` property (set by prompt sources), else the step's `seed`, else one derived from the item id,
so every image can be made again alone. The image is stored as a blob (generated pixels cannot be
recomputed cheaply) and replaces the item's image; it flows on like any other (caption, score,
review, export). With `n` > 1 each prompt makes `n` child items (seeds seed, seed + 1, ...), and the
prompt item itself does not go on. The cache key holds the model (backend, id, revision, dtype,
pipeline options), the prompt, the seed and every parameter that changes pixels, never batch sizes or
transport settings.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from captionary.backends.base import BackendConfig, generate_in_chunks, model_label
from captionary.backends.images import (
    ImageBackend,
    ImageParams,
    ImageRequest,
    ImageResult,
    image_cache_identity,
    make_image_backend,
)
from captionary.core.item import Item
from captionary.errors import ConfigError, ItemError, ParamError
from captionary.pipeline.model_step import ModelRuntime, ModelStep
from captionary.pipeline.step import Child, Outcome, checked_updates, require
from captionary.steps.vlm.text import render, template_fields

log = logging.getLogger(__name__)

SEED_PROPERTY = "seed"
TRANSPORT = ("base_url", "api_key_env", "concurrency", "timeout", "device")
"""Parameters passed to the backend as options when set; they never change pixels."""
PIXEL_PARAMS = (
    "height",
    "width",
    "guidance_scale",
    "num_inference_steps",
    "negative_prompt",
    "max_sequence_length",
)


@dataclass(frozen=True)
class Resolved:
    """What `validate` resolves from the parameters: rebuilt, not pickled, in another process."""

    backend: ImageBackend  # built, not loaded: runtime.model holds it once loaded
    fields: tuple[str, ...]  # the properties the prompt template names
    params: ImageParams


@dataclass
class GenerateRuntime(ModelRuntime):
    chunk: int | None = None  # requests per backend call, halved on out-of-memory (None: the batch size)
    usage: dict[str, int] = field(default_factory=dict)


class GenerateImage(ModelStep):
    """Generate each item's image from its prompt with FLUX, SD3.5, SDXL (diffusers) or an images API."""

    name: ClassVar[str] = "generate_image"
    version: ClassVar[int | str] = 1
    reads_image: ClassVar[bool] = False

    model: str = ""  # a Hugging Face id or local folder (diffusers), or an API model name (openai)
    backend: str | None = None  # diffusers | openai; None: openai when base_url is set, else diffusers
    revision: str | None = None
    prompt: str = "{prompt}"  # a template over the item's properties
    height: int | None = None  # None: the model's default
    width: int | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    negative_prompt: str | None = None
    max_sequence_length: int | None = None
    seed: int | None = None  # for items without a `seed` property; None: derived from the item id
    n: int = 1  # images per prompt
    dtype: str | None = None
    device: str | None = None
    options: dict[str, Any] | None = (
        None  # backend options: enable_model_cpu_offload, attention, quantization...
    )
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    batch_size: int = 1

    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size", *TRANSPORT)
    runtime_type: ClassVar[type[GenerateRuntime]] = GenerateRuntime
    rebuilt_on_unpickle: ClassVar[tuple[str, ...]] = ("resolved",)  # the backend with its pipeline or clients

    # --- building ------------------------------------------------------------------------------------
    def validate(self) -> None:
        require(
            bool(self.model), self, "required: a Hugging Face id, a local folder or an API model", "model"
        )
        require(self.batch_size >= 1, self, f"must be at least 1, got {self.batch_size}", "batch_size")
        require(self.n >= 1, self, f"must be at least 1, got {self.n}", "n")
        for name in ("height", "width", "num_inference_steps", "max_sequence_length"):
            value = getattr(self, name)
            require(value is None or value >= 1, self, f"must be at least 1, got {value}", name)
        try:
            fields = template_fields(self.prompt)
        except ValueError as exc:
            raise ParamError(
                f"{self.name}.prompt: invalid template {self.prompt!r}: {exc}", param="prompt"
            ) from None
        require(bool(fields), self, f"names no property (e.g. '{{prompt}}'): {self.prompt!r}", "prompt")
        options = {k: getattr(self, k) for k in (*TRANSPORT, "dtype") if getattr(self, k) is not None}
        backend = self.backend or ("openai" if self.base_url else "diffusers")
        config = BackendConfig(backend, self.model, self.revision, {**options, **(self.options or {})})
        try:
            instance = make_image_backend(config)
            instance.preflight()
        except ConfigError as exc:
            named = exc.message.split(" (")[0]
            bad = next((k for k in (*TRANSPORT, "dtype", "options") if k in named), "backend")
            raise ParamError(f"{self.name}: {exc.message}", param=bad) from None
        self.resolved = Resolved(instance, fields, self.image_params())

    def image_params(self) -> ImageParams:
        return ImageParams(**{k: getattr(self, k) for k in PIXEL_PARAMS})

    @property
    def image_backend(self) -> ImageBackend:
        return self.resolved.backend

    @property
    def reads(self) -> tuple[str, ...]:  # the properties the prompt names, and the seed
        return (*(f for f in self.resolved.fields if f != "name"), SEED_PROPERTY)

    @property
    def writes(self) -> tuple[str, ...]:
        return ("width", "height", SEED_PROPERTY)

    @property
    def cache_params(self) -> dict[str, Any]:
        """Every parameter that changes pixels, with the model resolved (backend, id, revision, dtype,
        pipeline options); never batch sizes, devices, URLs or API keys."""
        plain = {k: v for k, v in self.params.items() if k not in self.cache_exclude}
        for name in ("backend", "model", "revision", "dtype", "options"):
            plain.pop(name)
        return {**plain, "model": image_cache_identity(self.image_backend)}

    def model_id(self) -> str:
        return model_label(self.image_backend.config)

    @property
    def size_of_batch(self) -> int:
        """`batch_size`, or the backend's `concurrency` when larger (an API runs that many at once)."""
        return max(self.batch_size, int(self.image_backend.settings.get("concurrency") or 0))

    # --- running -------------------------------------------------------------------------------------
    def load_model(self) -> ImageBackend:
        backend = self.image_backend
        if not backend.reproducible:
            log.warning(
                "%s: %s takes no seed; the stored images are what later runs reuse",
                self.name,
                self.model_id(),
            )
        backend.load()
        return backend

    def accelerator(self) -> str | None:
        return self.image_backend.accelerator()

    def usage(self) -> dict[str, int]:
        """Images, requests, retries and tokens since the last call (for the run summary); resets them."""
        state: GenerateRuntime = self.runtime
        counts, state.usage = state.usage, {}
        for key, value in self.image_backend.usage().items():
            counts[key] = counts.get(key, 0) + value
        return counts

    def item_seed(self, item: Item) -> int:
        """The item's `seed` property, else the step's `seed`, else a stable number from the item id."""
        seed = item.props.get(SEED_PROPERTY)
        if isinstance(seed, int) and not isinstance(seed, bool):
            return seed
        if seed is not None:
            raise ItemError(f"{self.name}: the item's seed must be an integer, got {seed!r}")
        if self.seed is not None:
            return self.seed
        return int.from_bytes(hashlib.sha256(item.id.encode()).digest()[:4], "big")

    def requests(self, item: Item) -> list[ImageRequest]:
        """The item's `n` images: its prompt with seeds seed, seed + 1, ..."""
        text = render(self.prompt, self.resolved.fields, item, None, self.name)
        if not text.strip():
            raise ItemError(f"{self.name}: the prompt is empty")
        seed = self.item_seed(item)
        return [ImageRequest(text, seed + k, self.resolved.params) for k in range(self.n)]

    def compute_batch(self, items: Sequence[Item]) -> list[Outcome]:
        """One outcome per item; when some items fail, the others' images are kept, so the stage's
        item-by-item retry generates nothing twice."""
        return self.outcomes_once(items, self._run)

    def _run(self, items: Sequence[Item]) -> list[Outcome | Exception]:
        backend = self.loaded()  # the remembered load error fails the batch, then each item
        outcomes: list[Outcome | Exception | None] = [None] * len(items)
        asked: list[tuple[int, list[ImageRequest]]] = []
        for position, item in enumerate(items):
            try:
                asked.append((position, self.requests(item)))
            except Exception as exc:
                outcomes[position] = exc
        results = iter(self._generate(backend, [request for _, requests in asked for request in requests]))
        for position, requests in asked:
            answers = [next(results) for _ in requests]
            try:
                outcomes[position] = self.outcome(items[position], requests, answers)
            except Exception as exc:
                outcomes[position] = exc
        return outcomes  # type: ignore[return-value]

    def outcome(self, item: Item, requests: list[ImageRequest], results: list[ImageResult]) -> Outcome:
        """The generated image stored as a blob (PNG: lossless): the item's image from now on, or with
        `n` > 1 one child item per image (the prompt item itself does not go on)."""
        usage = self.runtime.usage
        for result in results:
            for key, value in result.usage.items():
                usage[key] = usage.get(key, 0) + value
        failed = next((r for r in results if r.error is not None or r.image is None), None)
        if failed is not None:
            raise ItemError(f"{self.model_id()}: {failed.error or 'no image'}")
        if item.store is None:
            raise ItemError(f"{self.name}: the item is not attached to a blob store")
        stored = [(request, *self._store(item, result.image)) for request, result in zip(requests, results)]
        if self.n == 1:
            ((request, digest, image),) = stored
            return Outcome(
                props=checked_updates(self, self._props(request, image)), image=digest, pixels=image
            )
        children = [
            Child(key=str(k), props=checked_updates(self, self._props(request, image)), image=digest)
            for k, (request, digest, image) in enumerate(stored)
        ]
        return Outcome(children=children, dropped=f"made {self.n} images from its prompt")

    @staticmethod
    def _store(item: Item, image: Any) -> tuple[str, Any]:
        if image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return item.store.put(buffer.getvalue()), image

    @staticmethod
    def _props(request: ImageRequest, image: Any) -> dict[str, Any]:
        return {"width": image.width, "height": image.height, SEED_PROPERTY: request.seed}

    def _generate(self, backend: ImageBackend, requests: list[ImageRequest]) -> list[ImageResult]:
        """All results, in chunks of the batch size; a chunk out of memory is halved and retried."""
        return generate_in_chunks(
            backend.generate, requests, self.size_of_batch, self.runtime, self.name, self.model_id()
        )
