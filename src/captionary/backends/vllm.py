"""`vllm` backend: the offline `vllm.LLM` engine on GPUs, with the model's chat template and images.

Requests go to `LLM.chat` (the model's own chat template places the images) or, for models without a
chat template (BLIP-2, Florence-2), to `LLM.generate` with the prompt and its `multi_modal_data`; vLLM
batches them continuously. `tensor_parallel_size` splits one model over GPUs; when more GPUs are
visible than one engine uses, one engine runs per group of GPUs, each in a process of its own (data
parallel), and each batch is split among them. Engines run in child processes by default (vLLM
versions before 0.10.2 refuse to start outside the main thread, and only a process that exits is sure
to give back all GPU memory when the step is done). Images per prompt are bounded by `limit_mm_per_prompt`
and their size by `max_image_edge` (the step downscales) and `mm_processor_kwargs` (e.g. Qwen's
`max_pixels`). A request the engine rejects (a bad image, a prompt too long) is isolated by splitting
the batch and retrying the halves, so it fails alone.

Everything that decides what is sent (engine arguments, GPU groups, conversations, sampling settings,
batch splitting, result conversion) is a plain function, tested without vLLM; vLLM is imported only
when an engine starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from captionary.backends.base import (
    Backend,
    BackendConfig,
    GenerationParams,
    Request,
    Result,
    is_out_of_memory,
)
from captionary.errors import ConfigError

Runner = Callable[[Sequence[Request]], list[Result]]

ENGINE_OPTIONS = (
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "max_num_seqs",
    "limit_mm_per_prompt",
    "mm_processor_kwargs",
    "dtype",
    "enforce_eager",
    "load_format",
    "trust_remote_code",
    "seed",
)
"""Backend options passed to `vllm.LLM(...)` under the same name (when not None)."""


class VllmBackend(Backend):
    """vLLM engines (one per GPU group), fed whole batches; rejected requests isolated."""

    name: ClassVar[str] = "vllm"
    extra: ClassVar[str] = "vllm"
    modules: ClassVar[tuple[str, ...]] = ("vllm",)
    options: ClassVar[dict[str, Any]] = {
        "tensor_parallel_size": 1,
        "data_parallel": "auto",  # auto: one engine per tensor_parallel_size GPUs visible; or an int
        "gpu_memory_utilization": 0.9,
        "max_model_len": None,
        "max_num_seqs": None,
        "limit_mm_per_prompt": {"image": 1},
        "mm_processor_kwargs": {},  # e.g. {max_pixels: 802816} for Qwen2.5-VL
        "dtype": "auto",
        "enforce_eager": False,
        "load_format": "auto",  # "dummy": random weights from the config (benchmarks)
        "trust_remote_code": False,
        "seed": 0,
        "engine_options": {},  # any other vllm.LLM argument
        "chat_template": None,  # a Jinja template overriding the model's
        "sampling_options": {},  # other vllm.SamplingParams fields, e.g. {top_k: 50, repetition_penalty: 1.1}
        "engine_process": True,  # run the engine in a child process (frees all GPU memory on close)
    }
    cache_options: ClassVar[tuple[str, ...]] = (
        "mm_processor_kwargs",
        "dtype",
        "load_format",
        "chat_template",
        "sampling_options",
    )
    default_max_image_edge: ClassVar[int | None] = 1024

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        tp = self.settings["tensor_parallel_size"]
        if not isinstance(tp, int) or tp < 1:
            raise ConfigError(f"vllm: tensor_parallel_size must be a positive integer, got {tp!r}")
        dp = self.settings["data_parallel"]
        if dp != "auto" and (not isinstance(dp, int) or dp < 1):
            raise ConfigError(f"vllm: data_parallel must be 'auto' or a positive integer, got {dp!r}")
        self.engines: list[Any] = []

    def accelerator(self) -> str | None:
        return "cuda"  # every GPU its engines are given

    def gpus_per_model(self) -> int | None:
        return engine_gpus(self.settings)

    def load(self) -> None:
        if self.engines:
            return
        plan = plan_engines(self.config, self.settings, visible_gpus())
        if plan.in_process:
            self.engines = [LocalEngine(plan.kwargs, plan.chat_template, plan.sampling)]
            return
        from captionary.backends.vllm_pool import EngineProcess

        self.engines = [EngineProcess(g, plan.kwargs, plan.chat_template, plan.sampling) for g in plan.groups]
        for engine in self.engines:
            engine.wait_ready()

    def close(self) -> None:
        engines, self.engines = self.engines, []
        for engine in engines:
            engine.close()

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        self.load()
        limit = int((self.settings["limit_mm_per_prompt"] or {}).get("image", 1))
        return dispatch(requests, self.engines, limit)


class LocalEngine:
    """One `vllm.LLM` in this process."""

    def __init__(
        self, kwargs: dict[str, Any], chat_template: str | None = None, sampling: dict[str, Any] | None = None
    ):
        import vllm

        self.vllm = vllm
        self.llm = vllm.LLM(**kwargs)
        self.chat_template = chat_template
        self.sampling = dict(sampling or {})
        self.use_chat: bool | None = None  # decided on the first batch: does the model have a template?
        self._pending: list[Request] = []

    def submit(self, requests: Sequence[Request]) -> None:
        self._pending = list(requests)

    def collect(self) -> list[Result]:
        requests, self._pending = self._pending, []
        return run_isolated(requests, self.run)

    def run(self, requests: Sequence[Request]) -> list[Result]:
        sampling = [
            self.vllm.SamplingParams(**{**sampling_kwargs(r.params), **self.sampling}) for r in requests
        ]
        if self.use_chat is not False:
            try:
                outputs = self.llm.chat(
                    [conversation(r) for r in requests],
                    sampling_params=sampling,
                    use_tqdm=False,
                    chat_template=self.chat_template,
                )
                self.use_chat = True
                return [to_result(o) for o in outputs]
            except ValueError as exc:
                if self.use_chat or "chat template" not in str(exc).lower():
                    raise
                self.use_chat = False  # e.g. BLIP-2, Florence-2: plain prompts
        outputs = self.llm.generate(
            [plain_prompt(r) for r in requests], sampling_params=sampling, use_tqdm=False
        )
        return [to_result(o) for o in outputs]

    def close(self) -> None:
        import gc

        del self.llm
        gc.collect()
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # best effort at releasing GPU memory
            pass


# --- plain functions: what is sent, and how batches are split ---------------------------------------
def engine_kwargs(config: BackendConfig, settings: dict[str, Any]) -> dict[str, Any]:
    """Arguments of `vllm.LLM(...)` for a backend configuration."""
    kwargs: dict[str, Any] = {"model": config.model}
    if config.revision:
        kwargs |= {"revision": config.revision, "tokenizer_revision": config.revision}
    for name in ENGINE_OPTIONS:
        value = settings.get(name)
        if value is not None and value != {}:
            kwargs[name] = value
    return kwargs | dict(settings.get("engine_options") or {})


@dataclass
class EnginePlan:
    """What `load` starts: `vllm.LLM` arguments, GPU groups (one engine each), and how."""

    kwargs: dict[str, Any]
    groups: list[list[str]]
    in_process: bool
    chat_template: str | None
    sampling: dict[str, Any]


def plan_engines(config: BackendConfig, settings: dict[str, Any], gpus: Sequence[str]) -> EnginePlan:
    groups = gpu_groups(gpus, settings["tensor_parallel_size"], settings["data_parallel"])
    return EnginePlan(
        kwargs=engine_kwargs(config, settings),
        groups=groups,
        in_process=len(groups) <= 1 and not settings["engine_process"],
        chat_template=settings["chat_template"],
        sampling=dict(settings["sampling_options"] or {}),
    )


def dispatch(requests: Sequence[Request], engines: Sequence[Any], image_limit: int) -> list[Result]:
    """One result per request, in order: requests over the image limit fail at once, the others are
    split evenly among the engines (each with `submit(requests)` then `collect() -> results`; all are
    submitted before any is collected, so engines in other processes work at the same time)."""
    results: list[Result | None] = [over_limit(r, image_limit) for r in requests]
    todo = [i for i, r in enumerate(results) if r is None]
    pending = [(e, shard) for e, shard in zip(engines, split_evenly(todo, len(engines))) if shard]
    for engine, shard in pending:
        engine.submit([requests[i] for i in shard])
    for engine, shard in pending:
        for i, result in zip(shard, engine.collect()):
            results[i] = result
    return [r if r is not None else Result(error="no result") for r in results]


def engine_gpus(settings: dict[str, Any]) -> int | None:
    """GPUs the backend's engines take together when that is more than one: `tensor_parallel_size`
    each, times `data_parallel` when it is a number (with "auto" the engines fit what is visible)."""
    dp = settings["data_parallel"]
    gpus = settings["tensor_parallel_size"] * (dp if isinstance(dp, int) else 1)
    return gpus if gpus > 1 else None


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use (as `CUDA_VISIBLE_DEVICES` names them)."""
    names = os.environ.get("CUDA_VISIBLE_DEVICES")
    if names is not None:
        return [n.strip() for n in names.split(",") if n.strip() and n.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def gpu_groups(
    gpus: Sequence[str], tensor_parallel: int, data_parallel: int | str = "auto"
) -> list[list[str]]:
    """GPUs per engine: `tensor_parallel` each, as many engines as fit (or `data_parallel` of them)."""
    fit = len(gpus) // tensor_parallel
    if data_parallel != "auto":
        if int(data_parallel) > max(fit, 1):
            raise ConfigError(
                f"vllm: data_parallel={data_parallel} x tensor_parallel_size={tensor_parallel} needs "
                f"{int(data_parallel) * tensor_parallel} GPUs; {len(gpus)} visible "
                f"({', '.join(gpus) or 'none'})"
            )
        fit = int(data_parallel)
    if fit <= 1:
        return [list(gpus[:tensor_parallel])]
    return [list(gpus[i * tensor_parallel : (i + 1) * tensor_parallel]) for i in range(fit)]


def split_evenly(indices: Sequence[int], parts: int) -> list[list[int]]:
    """`indices` in `parts` contiguous runs whose lengths differ by at most one."""
    parts = max(1, parts)
    size, extra = divmod(len(indices), parts)
    out, start = [], 0
    for p in range(parts):
        end = start + size + (1 if p < extra else 0)
        out.append(list(indices[start:end]))
        start = end
    return out


def over_limit(request: Request, limit: int) -> Result | None:
    """An error result for a request with more images than the engine accepts per prompt."""
    if len(request.images) > limit:
        return Result(
            error=f"{len(request.images)} images in one prompt; the engine accepts {limit} "
            "(raise options.limit_mm_per_prompt.image)"
        )
    return None


def conversation(request: Request) -> list[dict[str, Any]]:
    """OpenAI-style chat messages with the PIL images inline, as `LLM.chat` takes them."""
    content: list[dict[str, Any]] = [{"type": "image_pil", "image_pil": image} for image in request.images]
    content.append({"type": "text", "text": request.prompt})
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": content})
    return messages


def plain_prompt(request: Request) -> dict[str, Any]:
    """A template-less prompt with its images, as `LLM.generate` takes it."""
    text = f"{request.system}\n{request.prompt}" if request.system else request.prompt
    prompt: dict[str, Any] = {"prompt": text}
    if request.images:
        images = list(request.images)
        prompt["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
    return prompt


def sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
    """`vllm.SamplingParams(...)` arguments; a seed makes each request's sampling repeatable."""
    kwargs: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "n": params.n,
    }
    if params.top_p is not None:
        kwargs["top_p"] = params.top_p
    if params.seed is not None:
        kwargs["seed"] = params.seed
    if params.stop:
        kwargs["stop"] = list(params.stop)
    return kwargs


def to_result(output: Any) -> Result:
    """A `vllm.RequestOutput` as a Result: texts, finish reasons ("length" or "stop"), token counts."""
    completions = list(output.outputs)
    return Result(
        texts=[c.text.strip() for c in completions],
        finish_reasons=["length" if c.finish_reason == "length" else "stop" for c in completions],
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=sum(len(c.token_ids) for c in completions),
    )


def run_isolated(requests: Sequence[Request], run: Runner) -> list[Result]:
    """`run(requests)`; when it raises, the halves are retried, so a request the engine rejects fails
    alone (`Result.error`). Out-of-memory errors and a dead engine are raised, not isolated."""
    if not requests:
        return []
    try:
        return run(requests)
    except Exception as exc:
        if is_out_of_memory(exc) or type(exc).__name__ == "EngineDeadError":
            raise
        if len(requests) == 1:
            return [Result(error=f"the engine rejected this request: {type(exc).__name__}: {exc}")]
        middle = len(requests) // 2
        return run_isolated(requests[:middle], run) + run_isolated(requests[middle:], run)
