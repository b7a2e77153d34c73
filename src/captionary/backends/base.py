"""The backend interface: the one narrow contract every text-generating model runtime implements.

A backend turns chat requests (a prompt, optional images, generation settings) into texts. The steps
`caption`, `compose_caption` and `caption_variations` drive it; they know no particular backend.

    backend = make_backend(config)          # cheap: imports no heavy library, loads nothing
    backend.load()                          # once per run, in the step's setup(): weights, clients
    results = backend.generate(requests)    # any number of times; one Result per Request, in order
    backend.close()                         # in the step's teardown(): free the model, GPU memory

Contract of `generate(requests) -> list[Result]`:
- `len(results) == len(requests)`, same order. Each Result holds `params.n` texts (fewer only if the
  model produced fewer) with one finish reason per text: "stop" (ended by itself) or "length" (cut
  off by `max_tokens`; the step flags these), plus the token usage of the request.
- One request that fails on its own (after the backend's own retries) gets `Result(error=...)`; the
  other results are still returned. An exception fails the whole call.
- A batch that does not fit in memory raises `OutOfMemory` (or the library's own out-of-memory
  error, see `is_out_of_memory`); the step then halves its batch and retries.
- Images arrive as PIL images, already downscaled by the step to the `max_image_edge` option, or as
  what the backend's `prepare_image` made of them (the step calls it ahead of the request, in its
  decode threads, so CPU work such as JPEG encoding never holds one of the backend's request slots).

Backends are named in `BACKENDS` (name -> "module:Class", imported on first use) and configured by a
`BackendConfig`: the backend name, a model (Hugging Face id, local path, or API model name), a
revision, and backend-specific `options` (each backend declares the names it accepts and their
defaults; every backend also takes `max_image_edge`, default `default_max_image_edge`). The steps fill
`options` from their parameters `base_url`, `api_key_env`, `concurrency`, `timeout`, `dtype`,
`device`, `max_image_edge` (those that are set) and their free-form `options` mapping (e.g.
`options: {tensor_parallel_size: 2}`). `cache_identity(config)` is what enters the cache key:
backend, model, revision and the options that change outputs (`Backend.cache_options`), never batch
sizes, concurrency or API keys.

Presets (`captionary.backends.presets.PRESETS`, a dict name -> `Preset`) name a good backend, model,
prompt and settings for common captioners, so `caption: {model: qwen2.5-vl-7b}` works.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from captionary.core.optional import require
from captionary.core.plugins import plugin_class
from captionary.errors import ConfigError, ItemError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from concurrent.futures import Future

    from PIL.Image import Image


@dataclass(frozen=True)
class GenerationParams:
    """How to sample. `n` texts per request; `seed` makes sampling repeatable where supported."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Request:
    """One generation: a user prompt with its images (in order), an optional system prompt."""

    prompt: str
    images: Sequence[Image] = ()
    system: str | None = None
    params: GenerationParams = field(default_factory=GenerationParams)

    def messages(self) -> list[dict[str, Any]]:
        """Chat messages in the shape both OpenAI and Hugging Face chat templates take: an optional
        system message, then one user message whose content lists `{"type": "image"}` placeholders
        (one per image, in order) followed by `{"type": "text", "text": prompt}`."""
        content: list[dict[str, Any]] = [{"type": "image"} for _ in self.images]
        content.append({"type": "text", "text": self.prompt})
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        messages.append({"role": "user", "content": content})
        return messages


@dataclass
class Result:
    """What one request produced: texts with their finish reasons, and token usage."""

    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)  # "stop" | "length" | ... per text
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # this request failed alone; the step fails only its item

    @property
    def truncated(self) -> bool:
        """Some text was cut off by the token limit."""
        return "length" in self.finish_reasons


class OutOfMemory(Exception):
    """A batch did not fit on the device. The step halves its batch size and tries again."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for `OutOfMemory` and the libraries' own errors (torch.OutOfMemoryError, CUDA/MPS OOM)."""
    if isinstance(exc, (OutOfMemory, MemoryError)):
        return True
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return "out of memory" in str(exc).lower()


class Chunking(Protocol):
    """Where a step keeps the request count per backend call, once halved (None: its batch size)."""

    chunk: int | None


def generate_in_chunks(
    generate: Callable[[list[Any]], list[Any]],
    requests: list[Any],
    size: int,
    state: Chunking,
    step: str,
    model: str,
) -> list[Any]:
    """Every result of `generate` over `requests`, `size` at a time (or the size `state.chunk` was
    halved to earlier); a call out of memory is halved and tried again (kept in `state.chunk`); an
    answer of the wrong length is an ItemError naming `model`."""
    results: list[Any] = []
    start = 0
    while start < len(requests):
        chunk = requests[start : start + (state.chunk or size)]
        try:
            answer = generate(chunk)
        except Exception as exc:
            if not is_out_of_memory(exc) or len(chunk) == 1:
                raise
            state.chunk = max(1, len(chunk) // 2)
            log.warning("%s: out of memory at batch size %d; trying %d", step, len(chunk), len(chunk) // 2)
            continue
        if len(answer) != len(chunk):
            raise ItemError(f"{model} returned {len(answer)} results for {len(chunk)} requests")
        results += answer
        start += len(chunk)
    return results


@dataclass(frozen=True)
class BackendConfig:
    """Which backend runs which model, and its backend-specific options."""

    backend: str
    model: str
    revision: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Backend:
    """Base class of backends. Subclasses set the class attributes and implement the three methods.

    name           registry name ("openai", "transformers", "vllm")
    extra          the pip extra that installs what it needs (`pip install 'captionary[extra]'`)
    modules        modules it imports (checked when a step is built, so a missing one fails early)
    options        backend-specific option names -> defaults (`self.settings` holds the merged values)
    cache_options  the options that change generated text (part of the cache key; `max_image_edge`
                   always is)
    default_max_image_edge  the default of the `max_image_edge` option every backend takes
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str] = ""
    modules: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict[str, Any]] = {}
    cache_options: ClassVar[tuple[str, ...]] = ()
    default_max_image_edge: ClassVar[int | None] = None
    streams: ClassVar[bool] = False
    """True when `submit` sends one request at once (a concurrent API client): the step then sends
    each item's request as soon as its image is ready, so batch boundaries never empty the slots."""

    def __init__(self, config: BackendConfig):
        check_options(type(self), config)
        self.config = config
        self.settings: dict[str, Any] = {
            "max_image_edge": self.default_max_image_edge,
            **self.options,
            **config.options,
        }

    def preflight(self) -> None:
        """Cheap checks needing no model (credentials, local paths), run when a step is built; raise
        ConfigError. Called again by nothing else: `load` must not rely on it having run."""

    def load(self) -> None:
        """Load the model / open clients. Called once before the first `generate`."""

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the model and its memory. The backend may be loaded again afterwards."""

    def submit(self, request: Request | Callable[[], Request]) -> Future[Result]:
        """Queue one request without waiting (backends with `streams = True`); loads if needed. A
        function that builds the request is called in the request's slot, in its turn (so requests go
        out in the order submitted); what it raises becomes the result's exception. It is called in a
        helper thread, as it may wait (for its image to be decoded), unless it has a `ready()` method
        that answers True: then it will not block and is called where the request is sent."""
        raise NotImplementedError

    def prepare_image(self, image: Image) -> Any:
        """The image as `generate` wants it (e.g. an encoded data URL), made ahead of the request in
        the step's decode threads; `generate` must accept both this and a PIL image. Default: as is."""
        return image

    def accelerator(self) -> str | None:
        """The device `load()` puts the model on (`cuda`, `cuda:1`, `mps`), or None (CPU, a remote
        service). Two model steps on the same kind of device never hold their models at once."""
        return None

    def gpus_per_model(self) -> int | None:
        """GPUs one copy of the model needs when more than one (see `BatchStep.gpus_per_model`)."""
        return None

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BACKENDS: dict[str, str] = {
    "openai": "captionary.backends.openai:OpenAIBackend",
    "transformers": "captionary.backends.transformers:TransformersBackend",
    "vllm": "captionary.backends.vllm:VllmBackend",
}
"""Backend name -> "module:Class", imported on first use (so `import captionary` stays light)."""


def backend_class(name: str) -> type[Backend]:
    """The backend class registered as `name`, or named by import path (`"my_pkg.backends:MyBackend"`,
    for a runtime of your own: it is imported wherever the step runs, pool workers and Ray actors
    included); ConfigError naming close matches on a miss."""
    return plugin_class(name, BACKENDS, Backend, "backend", "captionary.backends.Backend")


def check_config(config: BackendConfig) -> type[Backend]:
    """Fail early (ConfigError) on an unknown backend, unknown options or a missing library."""
    return check_options(backend_class(config.backend), config)


def check_options(cls: type[Backend], config: BackendConfig) -> type[Backend]:
    """ConfigError on a missing model, options `cls` does not take, or a library it needs missing."""
    if not config.model:
        raise ConfigError(f"backend {config.backend!r} needs a model")
    unknown = sorted(set(config.options) - set(cls.options) - {"max_image_edge"})
    if unknown:
        valid = ", ".join(sorted({*cls.options, "max_image_edge"}))
        raise ConfigError(
            f"backend {config.backend!r} does not take option(s) {', '.join(unknown)} (its options: {valid})"
        )
    for module in cls.modules:
        require(module, cls.extra)
    return cls


def make_backend(config: BackendConfig) -> Backend:
    """A backend for `config`, not loaded yet."""
    return check_config(config)(config)


def cache_identity(config: BackendConfig) -> dict[str, Any]:
    """What about a backend configuration changes outputs: backend, model, revision and the options in
    `cache_options` (with their defaults filled in, so spelling out a default keeps the cache)."""
    cls = backend_class(config.backend)
    merged = settings(config)
    return {
        "backend": config.backend,
        "model": config.model,
        "revision": config.revision,
        "options": {name: merged.get(name) for name in ("max_image_edge", *cls.cache_options)},
    }


def settings(config: BackendConfig) -> dict[str, Any]:
    """The backend's options with defaults filled in."""
    cls = backend_class(config.backend)
    return {"max_image_edge": cls.default_max_image_edge, **cls.options, **config.options}


def model_label(config: BackendConfig) -> str:
    """A readable model id, e.g. `openai:gpt-4o-mini` or `transformers:./my-model@abc123`."""
    return f"{config.backend}:{config.model}" + (f"@{config.revision}" if config.revision else "")


@dataclass(frozen=True)
class Preset:
    """Good settings for a known captioner. A step's own parameters override these."""

    backend: str
    model: str
    revision: str | None = None
    prompt: str | None = None
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    vllm: bool | None = None  # vLLM supports the architecture (`backend: vllm` runs it); None: not checked


def find_preset(name: str) -> Preset | None:
    """The preset called `name`, or None (then `name` is a plain model id)."""
    try:
        presets = importlib.import_module("captionary.backends.presets")
    except ModuleNotFoundError as exc:
        if exc.name != "captionary.backends.presets":
            raise
        return None
    return getattr(presets, "PRESETS", {}).get(name)
