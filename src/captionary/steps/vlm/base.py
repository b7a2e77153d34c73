"""`GenerativeStep`: what `caption`, `compose_caption` and `caption_variations` share.

A step names its model the same way for every backend (`backend`, `model`, `revision`, transport and
device settings, free-form `options`) or by a preset name (`model: qwen2.5-vl-7b`). The backend is
built (and its library checked) when the step is built (`step.resolved`), loaded once per run
(`pipeline/model_step.ModelStep`: a load failure fails every item with the reason) and released in
`teardown()`. Images are decoded ahead, while the model works on the batch before
(`ImageBatchStep`). Batches that run out of memory are halved and retried; a request that fails alone
fails only its item. Token usage is counted for the run summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from captionary.backends.base import (
    Backend,
    BackendConfig,
    GenerationParams,
    Preset,
    Request,
    Result,
    cache_identity,
    find_preset,
    generate_in_chunks,
    make_backend,
    model_label,
)
from captionary.core.item import Item
from captionary.errors import ConfigError, ItemError, ParamError
from captionary.pipeline.model_step import ImageBatchRuntime, ImageBatchStep
from captionary.pipeline.step import Runtime, require
from captionary.steps.vlm.text import render, strip_preamble, template_fields

if TYPE_CHECKING:
    from PIL.Image import Image


BACKEND_PARAMS = (
    "base_url",
    "api_key_env",
    "concurrency",
    "timeout",
    "dtype",
    "device",
    "max_image_edge",
)
"""Step parameters passed to the backend as options when set."""

GENERATION_PARAMS = ("max_tokens", "temperature", "top_p", "seed")

NOT_CACHED = ("backend", "model", "revision", "options", *BACKEND_PARAMS, "batch_size", "prompt", "system")
"""Left out of the step's plain cache params: they enter the key resolved (preset applied) instead."""


@dataclass(frozen=True)
class Resolved:
    """What `validate` resolves from a generative step's parameters (preset applied): rebuilt, not
    pickled, when the step is sent to another process."""

    config: BackendConfig
    backend: Backend  # built and preflighted; loaded by `setup`
    prompt: str
    system: str | None
    fields: tuple[str, ...]  # the properties the prompt names
    generation: GenerationParams


@dataclass
class GenerativeRuntime(ImageBatchRuntime):
    chunk: int | None = None  # requests per backend call, halved on out-of-memory (None: the batch size)
    usage: dict[str, int] = field(default_factory=dict)
    # id(item) -> (the item, its request queued on a streaming backend by `prefetch`)
    sent: dict[int, tuple[Item, Future]] = field(default_factory=dict)


class GenerativeStep(ImageBatchStep):
    """Base of the steps that generate text with a backend. A subclass sets `name`, `reads_image` and
    the `default_*` values; it may override `request(item)` (what to ask) or `updates(result)` (what
    to write)."""

    version: ClassVar[int | str] = 1
    runtime_type: ClassVar[type[Runtime]] = GenerativeRuntime
    rebuilt_on_unpickle: ClassVar[tuple[str, ...]] = ("resolved",)  # the backend with its clients and threads
    default_prompt: ClassVar[str] = ""
    default_temperature: ClassVar[float] = 0.0
    default_max_tokens: ClassVar[int] = 256
    default_n: ClassVar[int] = 1
    preset_prompts: ClassVar[bool] = True  # a preset's prompt and sampling (made for captioning) apply

    model: str = ""  # a Hugging Face id, a local folder, an API model name, or a preset name
    # openai | transformers | vllm; None: the preset's, else openai when base_url is set, else transformers
    backend: str | None = None
    revision: str | None = None
    prompt: str | None = None  # a template over the item's properties: "Tags: {tags}. Describe ..."
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    n: int | None = None  # texts per item; more than one writes a list
    target: str = "caption"
    strip_preamble: bool = False  # drop "The image shows ..." and the like
    on_truncated: Literal["flag", "fail", "keep"] = "flag"  # a text cut off by max_tokens
    default: str | None = None  # for a property the prompt names but the item lacks; None: the item fails
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    dtype: str | None = None
    device: str | None = None
    max_image_edge: int | None = None
    options: dict[str, Any] | None = None  # other backend options, e.g. {tensor_parallel_size: 2}
    batch_size: int = 8

    # --- building ------------------------------------------------------------------------------------
    def validate(self) -> None:
        require(bool(self.model), self, "required: a model id, a local folder or a preset name", "model")
        require(bool(self.target), self, "must name a property", "target")
        require(self.batch_size >= 1, self, f"must be at least 1, got {self.batch_size}", "batch_size")
        preset = find_preset(self.model)
        options = {k: getattr(self, k) for k in BACKEND_PARAMS if getattr(self, k) is not None}
        if preset is not None:
            backend = self.backend or preset.backend
            config = BackendConfig(
                backend,
                preset.model,
                self.revision or preset.revision,
                {**preset.options, **options, **(self.options or {})},
            )
        else:
            backend = self.backend or ("openai" if self.base_url else "transformers")
            config = BackendConfig(backend, self.model, self.revision, {**options, **(self.options or {})})
        try:
            instance = make_backend(config)
            instance.preflight()
        except ParamError:
            raise
        except ConfigError as exc:
            named = exc.message.split(" (")[0]
            bad = next((k for k in (*BACKEND_PARAMS, "options") if k in named), "backend")
            raise ParamError(f"{self.name}: {exc.message}", param=bad) from None
        if not self.preset_prompts:  # a text step takes only the preset's model, not its prompt
            preset_prompt = None if preset is None else Preset(preset.backend, preset.model)
        else:
            preset_prompt = preset
        prompt = self.prompt or (preset_prompt and preset_prompt.prompt) or self.default_prompt
        try:
            fields = template_fields(prompt)
        except ValueError as exc:
            fields = ()
            require(False, self, f"invalid prompt template {prompt!r}: {exc}", "prompt")
        params = GenerationParams(
            max_tokens=_first(
                self.max_tokens, preset_prompt.max_tokens if preset_prompt else None, self.default_max_tokens
            ),
            temperature=_first(
                self.temperature,
                preset_prompt.temperature if preset_prompt else None,
                self.default_temperature,
            ),
            top_p=self.top_p if self.top_p is not None else (preset_prompt and preset_prompt.top_p),
            seed=self.seed,
            n=_first(self.n, self.default_n),
        )
        require(params.n >= 1, self, f"must be at least 1, got {params.n}", "n")
        require(params.max_tokens >= 1, self, f"must be at least 1, got {params.max_tokens}", "max_tokens")
        self.resolved = Resolved(
            config=config,
            backend=instance,
            prompt=prompt,
            system=self.system or (preset_prompt and preset_prompt.system) or None,
            fields=fields,
            generation=params,
        )

    @property
    def backend_config(self) -> BackendConfig:
        return self.resolved.config

    @property
    def prompt_template(self) -> str:
        """The prompt in use (the step's, else the preset's, else the step's default)."""
        return self.resolved.prompt

    @property
    def generation(self) -> GenerationParams:
        return self.resolved.generation

    @property
    def reads(self) -> tuple[str, ...]:  # the properties the prompt names are this step's inputs
        return tuple(f for f in self.resolved.fields if f != "name")

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.target, f"{self.target}_truncated")

    @property
    def cache_params(self) -> dict[str, Any]:
        """Step settings plus the resolved model, prompt and generation params (preset applied);
        never batch size, concurrency, timeouts or API keys."""
        plain = {k: v for k, v in self.params.items() if k not in NOT_CACHED and k not in GENERATION_PARAMS}
        plain.pop("n", None)
        return {
            **plain,
            "model": cache_identity(self.backend_config),
            "prompt": self.resolved.prompt,
            "system": self.resolved.system,
            "generation": self.generation.as_dict(),
        }

    def model_id(self) -> str:
        return model_label(self.backend_config)

    @property
    def size_of_batch(self) -> int:
        """`batch_size`, or the backend's `concurrency` when larger (so that many requests can run); twice
        that for a streaming backend, so the queued batches hold more requests than its slots."""
        backend = self._backend_instance
        concurrency = int(backend.settings.get("concurrency") or 0)
        return max(self.batch_size, 2 * concurrency if backend.streams else concurrency)

    # --- running -------------------------------------------------------------------------------------
    def load_model(self) -> Backend:
        self._backend_instance.load()
        return self._backend_instance

    def load_error(self, exc: Exception) -> str:
        return f"could not load {self.model_id()}: {type(exc).__name__}: {exc}"

    def teardown(self) -> None:
        ready = self.runtime.ready
        super().teardown()  # stops the decoding threads, closes the backend if it loaded
        if not ready:
            self._backend_instance.close()  # one whose load failed half-way

    def prefetch(self, items: Sequence[Item]) -> None:
        """Decode and prepare the queued batch's images (see ImageBatchStep). With a streaming backend
        (an API), each item's request is also queued on it now, in item order: a slot freed by a quick
        answer takes the next item even while the batch before waits for a slow one, so the backend's
        `concurrency` slots stay full across batch boundaries."""
        super().prefetch(items)
        backend = self._backend_instance
        if not backend.streams:
            return
        try:
            self.loaded()  # an API client: cheap to open here
        except ItemError:
            return  # every batch reports the load error
        sent = self.runtime.sent
        for item in items:
            sent[id(item)] = (item, backend.submit(QueuedRequest(self, item)))

    def accelerator(self) -> str | None:
        return self._backend_instance.accelerator()

    def gpus_per_model(self) -> int | None:
        return self._backend_instance.gpus_per_model()

    def usage(self) -> dict[str, int]:
        """Tokens and requests since the last call (for the run summary); resets the counters."""
        state: GenerativeRuntime = self.runtime
        counts, state.usage = state.usage, {}
        return counts

    @property
    def _backend_instance(self) -> Backend:
        return self.resolved.backend

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        """One update per item. When some items fail, their errors and the others' results are kept,
        so the stage's item-by-item retry costs no second request."""
        return self.outcomes_once(items, self._run)

    def _run(self, items: Sequence[Item]) -> list[dict[str, Any] | Exception]:
        try:
            self.loaded()
        except ItemError as exc:  # the load failed: every item says why
            return [exc for _ in items]
        outcomes: list[dict[str, Any] | Exception | None] = [None] * len(items)
        requests, positions = [], []
        answered: list[tuple[int, Result]] = []
        sent = self.runtime.sent
        for position, item in enumerate(items):
            entry = sent.pop(id(item), None)
            request = _answer_or_error(entry[1]) if entry is not None else self._request_or_error(item)
            if isinstance(request, Exception):
                outcomes[position] = request
            elif isinstance(request, Result):
                answered.append((position, request))
            else:
                requests.append(request)
                positions.append(position)
        for position, result in [*answered, *zip(positions, self._generate(requests))]:
            self._count(result)
            try:
                outcomes[position] = self.updates(result)
            except ItemError as exc:
                outcomes[position] = exc
        return outcomes  # type: ignore[return-value]

    def _request_or_error(self, item: Item) -> Request | Exception:
        try:
            return self.request(item)
        except Exception as exc:
            return exc

    def request(self, item: Item) -> Request:
        resolved = self.resolved
        prompt = render(resolved.prompt, resolved.fields, item, self.default, self.name)
        images = self.inputs([item]) if self.reads_image else []  # prefetched when it was queued
        return Request(prompt, images, resolved.system, self.generation)

    def draft_scale(self, width: int, height: int) -> float | None:
        """A JPEG is decoded at a reduced DCT scale when the backend's max_image_edge allows it."""
        edge = self._backend_instance.settings.get("max_image_edge")
        return edge / max(width, height) if edge else None

    def prepare(self, image: Image, item: Item) -> Any:
        """The item's image as RGB, downscaled to the backend's max_image_edge, in the form the backend
        takes (`Backend.prepare_image`: the openai backend's JPEG data URL is encoded here, in a decoding
        thread, not in one of its request slots)."""
        edge = self._backend_instance.settings.get("max_image_edge")
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        if edge and max(rgb.size) > edge:
            rgb = rgb.copy() if rgb is image else rgb  # thumbnail() works in place: not on the item's pixels
            rgb.thumbnail((edge, edge))
        return self._backend_instance.prepare_image(rgb)

    def _generate(self, requests: list[Request]) -> list[Result]:
        """All results, in chunks of the batch size; a chunk out of memory is halved and retried."""
        backend = self._backend_instance
        return generate_in_chunks(
            backend.generate, requests, self.size_of_batch, self.runtime, self.name, self.model_id()
        )

    def _count(self, result: Result) -> None:
        usage = self.runtime.usage
        for key, value in (
            ("requests", 1),
            ("prompt_tokens", result.prompt_tokens),
            ("completion_tokens", result.completion_tokens),
        ):
            usage[key] = usage.get(key, 0) + value

    def updates(self, result: Result) -> dict[str, Any]:
        if result.error:
            raise ItemError(f"{self.model_id()}: {result.error}")
        texts = [t.strip() for t in result.texts]
        if self.strip_preamble:
            texts = [strip_preamble(t) for t in texts]
        if not texts or not all(texts):
            raise ItemError(f"{self.model_id()} returned an empty text")
        truncated = result.truncated
        if truncated and self.on_truncated == "fail":
            raise ItemError(
                f"{self.model_id()}: text cut off at max_tokens={self.generation.max_tokens} "
                "(finish reason 'length'); raise max_tokens or set on_truncated: flag"
            )
        updates: dict[str, Any] = {self.target: texts[0] if self.generation.n == 1 else texts}
        if self.on_truncated == "flag":
            updates[f"{self.target}_truncated"] = truncated
        return updates


@dataclass(frozen=True)
class QueuedRequest:
    """An item's request, built when its slot comes (`Backend.submit`); `ready()` once its image is
    prepared, so building it does not wait."""

    step: GenerativeStep
    item: Item

    def __call__(self) -> Request:
        return self.step.request(self.item)

    def ready(self) -> bool:
        if not self.step.reads_image:
            return True
        entry = self.step.runtime.queued.get(id(self.item))
        return entry is not None and entry[1].done()


def _answer_or_error(sent: Future[Result]) -> Result | Exception:
    """The answer to a request `prefetch` queued, or why it could not be built or sent."""
    try:
        return sent.result()
    except Exception as exc:
        return exc


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)
