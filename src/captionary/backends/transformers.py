"""`transformers` backend: a Hugging Face vision-language model (or a text LLM) run in this process.

`AutoProcessor` + `AutoModelForImageTextToText` cover LLaVA, Qwen2/2.5-VL, Idefics3, SmolVLM,
PaliGemma, Gemma 3, Llama 3.2 Vision, BLIP-2 and Florence-2; a checkpoint that is not a vision-language
model loads as `AutoModelForCausalLM` (for `compose_caption` with a text LLM). On CUDA, MPS or CPU
(`device`), in the `dtype` asked for. Requests run as one left-padded batch per group of requests with
the same generation settings and image count; prompts go through the processor's chat template when it
has one, otherwise the model family's plain prompt (BLIP-2 "Question: ... Answer:", Florence-2 task
tokens such as `<MORE_DETAILED_CAPTION>`, whose output is post-processed the way the model expects).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from captionary.backends.base import Backend, BackendConfig, GenerationParams, OutOfMemory, Request, Result
from captionary.backends.hf_families import FAMILIES
from captionary.backends.llava_adapter import LlavaAdapter, is_adapter_folder
from captionary.errors import ConfigError

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICES = ("auto", "cuda", "mps", "cpu")
SELF_PLACING = frozenset({"blip-2", "florence2", "instructblip"})
"""Model types whose processor inserts the image tokens itself when the prompt has none."""
NEEDS_IMAGE = frozenset({"blip-2", "paligemma", "instructblip"})
"""Model types that cannot generate without an image."""
IMAGE_SEPARATOR = {"paligemma": ""}
"""What follows the image tokens in a plain (template-less) prompt; default a newline."""
TASK_TOKEN = re.compile(r"^<[A-Z_]+>$")
FLORENCE_TASK = "<MORE_DETAILED_CAPTION>"
"""Florence-2 understands only task tokens; a free-text prompt (e.g. the step's default) becomes this."""


class TransformersBackend(Backend):
    """A Hugging Face model in this process: batched, left-padded generation, chat templates."""

    name: ClassVar[str] = "transformers"
    extra: ClassVar[str] = "transformers"
    modules: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    options: ClassVar[dict[str, Any]] = {
        "device": "auto",  # auto: cuda, else mps, else cpu; or "cuda:1"
        "dtype": "auto",  # auto: bfloat16 on CUDA (float16 if unsupported), float16 on MPS, else float32
        "attn_implementation": None,  # e.g. "sdpa", "flash_attention_2"
        "trust_remote_code": False,
        "processor_options": {},  # passed to AutoProcessor.from_pretrained, e.g. {max_pixels: 802816}
        "model_options": {},  # passed to from_pretrained, e.g. {load_in_8bit: true}
        "generate_options": {},  # other model.generate arguments, e.g. {top_k: 50, repetition_penalty: 1.1}
        "vision_model": None,  # a LLaVA-style adapter folder's vision tower when it has no vision_model/
    }
    cache_options: ClassVar[tuple[str, ...]] = (
        "dtype",
        "processor_options",
        "model_options",
        "generate_options",
    )
    default_max_image_edge: ClassVar[int | None] = 1024

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        if str(self.settings["dtype"]) not in DTYPES:
            raise ConfigError(
                f"transformers: dtype must be one of {', '.join(DTYPES)}, got {self.settings['dtype']!r}"
            )
        device = str(self.settings["device"])
        if device.split(":")[0] not in DEVICES:
            raise ConfigError(
                f"transformers: device must be one of {', '.join(DEVICES)} (or cuda:N), got {device!r}"
            )
        self.model: Any = None
        self.processor: Any = None
        self.tokenizer: Any = None
        self.model_type = ""
        self.is_vlm = True
        self.family: Any = None  # a remote-code family or a LLaVA-style adapter (hf_families, llava_adapter)
        self.device = "cpu"
        self.calls = 0  # model.generate calls (tests assert a cached run makes none)

    # --- lifecycle ---------------------------------------------------------------------------------
    def preflight(self) -> None:
        model = self.config.model
        if _looks_local(model) and not Path(model).expanduser().is_dir():
            raise ConfigError(f"transformers: model folder not found: {model}")

    def accelerator(self) -> str | None:
        device = pick_device(str(self.settings["device"]))
        return None if device == "cpu" else device

    def load(self) -> None:
        if self.model is not None:
            return
        import transformers
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        from captionary.backends.hf_processors import load_processor

        self.preflight()
        self.device = pick_device(str(self.settings["device"]))
        common = {
            "revision": self.config.revision,
            "trust_remote_code": bool(self.settings["trust_remote_code"]),
        }
        kwargs = {"dtype": pick_dtype(str(self.settings["dtype"]), self.device), **common}
        if self.settings["attn_implementation"]:
            kwargs["attn_implementation"] = self.settings["attn_implementation"]
        kwargs |= self.settings["model_options"]
        if is_adapter_folder(self.config.model):  # a LLaVA-style adapter without a transformers class
            self.family = LlavaAdapter()
            self.family.load(self, common, kwargs)
            return
        config = transformers.AutoConfig.from_pretrained(self.config.model, **common)
        self.model_type = str(getattr(config, "model_type", ""))
        self.family = FAMILIES.get(self.model_type)
        if self.family is not None:  # a model that ships its own code
            self.family.load(self, common, kwargs)
            self.model.to(self.device).eval()
            return
        self.is_vlm = self.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        auto = transformers.AutoModelForImageTextToText if self.is_vlm else transformers.AutoModelForCausalLM
        self.model = auto.from_pretrained(self.config.model, **kwargs)
        if not getattr(self.model, "hf_device_map", None):
            self.model.to(self.device)
        self.model.eval()
        if self.is_vlm:
            self.processor = load_processor(self.config.model, **common, **self.settings["processor_options"])
            self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        else:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.config.model, **common)
            self.processor = self.tokenizer
        if not self.model.config.is_encoder_decoder:
            self.tokenizer.padding_side = "left"  # batched generation continues every row at its end
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def close(self) -> None:
        if self.model is None:
            return
        self.model = self.processor = self.tokenizer = self.family = None
        free_memory(self.device)

    # --- generation --------------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> list[Result]:
        self.load()
        if self.family is not None:
            return self.family.generate(self, requests)
        results: list[Result | None] = [None] * len(requests)
        groups: dict[tuple[GenerationParams, int, str | None], list[int]] = {}
        for i, request in enumerate(requests):
            if (refused := self.refuse(request)) is not None:
                results[i] = Result(error=refused)
                continue
            groups.setdefault((request.params, len(request.images), request.system), []).append(i)
        for (params, _, _), indices in groups.items():
            for i, result in zip(indices, self._generate_group([requests[i] for i in indices], params)):
                results[i] = result
        return [r if r is not None else Result(error="no result") for r in results]

    def _generate_group(self, requests: list[Request], params: GenerationParams) -> list[Result]:
        import torch

        texts = [self.prompt(r) for r in requests]
        per_request = [[img.convert("RGB") for img in r.images] for r in requests]
        if self.is_vlm and any(per_request):  # a list of images per prompt: unambiguous for every processor
            inputs = self.processor(text=texts, images=per_request, padding=True, return_tensors="pt")
        elif self.is_vlm:  # text only, e.g. compose_caption with a VLM
            inputs = self.processor(text=texts, padding=True, return_tensors="pt")
        else:
            inputs = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        kwargs = self.generation_kwargs(params)
        start = 1 if self.model.config.is_encoder_decoder else inputs["input_ids"].shape[1]
        if params.stop:
            kwargs["stopping_criteria"] = [StopOnText(params.stop, self.tokenizer, start)]
        try:
            with torch.inference_mode():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                self.calls += 1
                output = self.model.generate(**inputs, **kwargs)
        except torch.OutOfMemoryError as exc:
            del inputs
            free_memory(self.device)
            raise OutOfMemory(f"{len(requests)} requests did not fit on {self.device}: {exc}") from exc
        n = kwargs.get("num_return_sequences", 1)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        results = []
        for i, request in enumerate(requests):
            result = Result(prompt_tokens=int(prompt_tokens[i]))
            for row in output[i * n : (i + 1) * n, start:].tolist():
                text, reason, used = self.finish(row, params, request)
                result.texts.append(text)
                result.finish_reasons.append(reason)
                result.completion_tokens += used
            results.append(result)
        return results

    def refuse(self, request: Request) -> str | None:
        """Why this model cannot take this request, if it cannot."""
        if request.images and not self.is_vlm:
            return f"{self.config.model} is a text model ({self.model_type}); it reads no images"
        if self.model_type == "florence2" and len(request.images) != 1:
            return f"Florence-2 takes exactly one image per prompt, got {len(request.images)}"
        if self.model_type in NEEDS_IMAGE and not request.images:
            return f"{self.model_type} needs an image in every prompt"
        return None

    def prompt(self, request: Request) -> str:
        """The prompt text: the chat template's rendering when there is one, else the family's form."""
        if self.model_type == "florence2":
            return self.florence_task(request)
        template = getattr(self.processor, "chat_template", None) or getattr(
            self.tokenizer, "chat_template", None
        )
        if template:
            return self.processor.apply_chat_template(
                request.messages(), add_generation_prompt=True, tokenize=False
            )
        text = f"{request.system}\n{request.prompt}" if request.system else request.prompt
        image_token = getattr(self.processor, "image_token", None)
        if request.images and image_token and self.model_type not in SELF_PLACING and image_token not in text:
            text = image_token * len(request.images) + IMAGE_SEPARATOR.get(self.model_type, "\n") + text
        return text

    def generation_kwargs(self, params: GenerationParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_tokens}
        if params.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": params.temperature, "num_return_sequences": params.n}
            if params.top_p is not None:
                kwargs["top_p"] = params.top_p
        else:
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        extra = dict(self.settings["generate_options"] or {})
        if not kwargs["do_sample"]:  # sampling settings mean nothing to greedy decoding
            extra = {k: v for k, v in extra.items() if k not in ("top_k", "min_p", "typical_p")}
        return kwargs | extra

    def finish(self, tokens: list[int], params: GenerationParams, request: Request) -> tuple[str, str, int]:
        """Text, finish reason ("stop" or "length") and the number of tokens generated for one row."""
        generation_config = getattr(self.model, "generation_config", None)
        eos = getattr(generation_config, "eos_token_id", None) or self.tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        ended = next((j for j, token in enumerate(tokens) if token in eos_ids), None)
        forced = getattr(generation_config, "forced_eos_token_id", None)
        if ended == params.max_tokens - 1 and forced is not None:
            ended = None  # EOS forced in the last place (BART, Florence-2): the text was cut off
        used = (
            ended + 1 if ended is not None else len(tokens) - _trailing(tokens, self.tokenizer.pad_token_id)
        )
        text = self.decode(tokens[:used], request)
        cut = min((text.index(s) for s in params.stop if s in text), default=None)
        if cut is not None:
            text = text[:cut]
        # a row shorter than the limit ended by itself (EOS or a stop string; the batch pads it)
        reason = "stop" if ended is not None or cut is not None or used < params.max_tokens else "length"
        return text.strip(), reason, used

    def decode(self, tokens: list[int], request: Request) -> str:
        if self.model_type == "florence2" and request.images:  # Florence-2's own parsing of its output
            task = self.florence_task(request)
            raw = self.processor.decode(tokens, skip_special_tokens=False)
            parsed = self.processor.post_process_generation(raw, task=task, image_size=request.images[0].size)
            value = parsed.get(task, raw)
            return value if isinstance(value, str) else json.dumps(value)
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    @staticmethod
    def florence_task(request: Request) -> str:
        return request.prompt if TASK_TOKEN.match(request.prompt.strip()) else FLORENCE_TASK


class StopOnText:
    """Stops each row once its generated text contains a stop string (any tokenizer; transformers'
    own `stop_strings` needs a tokenizer whose tokens map to byte strings)."""

    def __init__(self, stop: Sequence[str], tokenizer: Any, start: int):
        self.stop, self.tokenizer, self.start = tuple(stop), tokenizer, start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        import torch

        tails = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        done = [any(s in tail for s in self.stop) for tail in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def pick_device(device: str) -> str:
    """`auto` -> cuda, else mps, else cpu; an explicit device that is not there is a ConfigError."""
    import torch

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"transformers: device {device!r} asked for, but torch sees no CUDA device")
    if device == "mps" and not has_mps:
        raise ConfigError("transformers: device 'mps' asked for, but torch sees no MPS device")
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device == "mps" else torch.float32


def free_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists() or model.count("/") > 1


def _trailing(tokens: list[int], value: int) -> int:
    n = 0
    while n < len(tokens) and tokens[-1 - n] == value:
        n += 1
    return n
