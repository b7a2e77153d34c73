"""Dataflow-Gen's pipeline files, read as they are (`captionary run configs/ImageCaption.yaml`).

Dataflow-Gen (github.com/Open-DataFlow/Dataflow-Gen) describes a run as a mapping with `meta_path`
(also read: `input_file`), `meta_folder`, `base_folder`, `save_folder`, `image_key`, `text_key` and
`steps: [{type, name, config}]`. This module maps it onto captionary's steps:

    meta_path + image_key     load_manifest (images under meta_folder; text_key read as `caption`), or
                              load_prompts (text_key as the prompt) when the first step makes images/text
    ImageCaptioner            caption (model_path; prompt; temperature, top_p, top_k; max_model_len as
                              max_tokens, as Dataflow-Gen's captioners do); writes the text
    ImageGenerator            generate_image (FLUXGenerator, StableDiffusion3Generator / StableDiffusion-
                              Generator: diffusers, bfloat16 as Dataflow-Gen loads them; ImageAPIGenerator:
                              the openai images backend) from the current text
    TextGenerator             compose_caption (APIGenerator: openai; LocalModelGenerator: a local LLM) with
                              `prompt` as the system prompt and the current text as the user message
    base_folder               the workspace (intermediate results: captionary's cache)
    save_folder               save: imagefolder (images + metadata.jsonl with text_key), or jsonl when no
                              step gives the items images

Local models run on vLLM when it is installed and torch sees a CUDA device (Dataflow-Gen's engine
settings `tensor_parallel_size`, `max_model_len`, `max_num_seqs` apply), else on transformers (they
are scheduling settings there and are left out). `device: cuda` reads as "CUDA when there is one".
Settings Dataflow-Gen itself ignores (`repeat_time`, a captioner's `repetition_penalty`) and sampling
settings at vLLM's defaults are accepted; anything else that cannot be mapped is an error naming it.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import yaml

from captionary.errors import ConfigError, ParamError
from captionary.pipeline.pipeline import Pipeline
from captionary.pipeline.registry import STEPS

log = logging.getLogger(__name__)

TOP_LEVEL = {"meta_path", "input_file", "meta_folder", "base_folder", "save_folder", "image_key", "text_key"}
TOP_IGNORED = {"video_key"}  # read only by video steps, which are refused by name

CAPTIONER_MODELS = {
    "BLIPCaptioner": "Salesforce/blip2-opt-2.7b",
    "LLaVACaptioner": "llava-hf/llava-1.5-7b-hf",
    "LLaVANeXTCaptioner": "llava-hf/llava-v1.6-mistral-7b-hf",
    "LLaVAOneVisionCaptioner": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
    "MLLamaCaptioner": "meta-llama/Llama-3.2-11B-Vision-Instruct",
    "Phi3VCaptioner": "microsoft/Phi-3-vision-128k-instruct",
    "QwenVLCaptioner": "Qwen/Qwen2-VL-7B-Instruct",
}
"""Dataflow-Gen's local captioners and their default models (docs/image.md)."""
GENERATOR_MODELS = {
    "FLUXGenerator": "black-forest-labs/FLUX.1-dev",
    "StableDiffusionGenerator": "stabilityai/stable-diffusion-3.5-large",
    "StableDiffusion3Generator": "stabilityai/stable-diffusion-3.5-large",
}
DEFAULT_PROMPT = "What is the content of this image?"
ENGINE = ("tensor_parallel_size", "max_num_seqs")
"""vLLM engine settings (scheduling, memory): options on vLLM, left out on transformers."""
VLLM_DEFAULTS: dict[str, Any] = {
    "best_of": None,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "repetition_penalty": 1,
    "top_k": -1,
    "min_p": 0,
    "seed": None,
    "stop": None,
    "stop_token_ids": None,
    "ignore_eos": False,
    "min_tokens": 0,
    "logprobs": None,
    "prompt_logprobs": None,
    "detokenize": True,
    "skip_special_tokens": True,
    "spaces_between_special_tokens": True,
    "logits_processors": None,
    "include_stop_str_in_output": False,
    "truncate_prompt_tokens": None,
    "logit_bias": None,
    "allowed_token_ids": None,
    "stream": False,
}
"""vLLM SamplingParams fields at their defaults: accepted (they change nothing)."""
IGNORED = {"repeat_time", "download_dir", "device", "trust_remote_code"}
"""Keys Dataflow-Gen reads without effect on outputs (or captionary decides itself, e.g. device)."""


def is_dataflow_gen(root: yaml.Node) -> bool:
    """A Dataflow-Gen file: top-level `meta_path`/`input_file`/`save_folder`, or steps with a `type`."""
    if not isinstance(root, yaml.MappingNode):
        return False
    keys = {k.value: v for k, v in root.value}
    if keys.keys() & {"meta_path", "input_file", "save_folder", "base_folder"}:
        return True
    steps = keys.get("steps")
    return (
        isinstance(steps, yaml.SequenceNode)
        and bool(steps.value)
        and all(
            isinstance(s, yaml.MappingNode) and {k.value for k, _ in s.value} >= {"type", "name"}
            for s in steps.value
        )
    )


def convert(root: yaml.Node, base: Path) -> tuple[Path, Pipeline]:
    """The workspace folder and the pipeline a Dataflow-Gen file stands for (ConfigError naming the
    key or step that cannot be mapped)."""
    lines = {k.value: k.start_mark.line + 1 for k, _ in root.value}
    doc = yaml.safe_load(yaml.serialize(root)) or {}
    unknown = sorted(set(doc) - TOP_LEVEL - TOP_IGNORED - {"steps"})
    if unknown:
        raise ConfigError(f"Dataflow-Gen key {unknown[0]!r} cannot be mapped", line=lines[unknown[0]])
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError("`steps` must be a non-empty list of {type, name, config}", line=lines.get("steps"))
    step_lines = [s.start_mark.line + 1 for k, v in root.value if k.value == "steps" for s in v.value]
    meta = doc.get("meta_path") or doc.get("input_file")
    if not meta:
        raise ConfigError("missing `meta_path` (the JSONL/CSV/Parquet file of the inputs)", line=1)
    mapper = _Mapper(doc, base)
    built = [mapper.source(steps[0].get("type") if isinstance(steps[0], dict) else None)]
    for index, (spec, line) in enumerate(zip(steps, step_lines)):
        try:
            built.append(mapper.step(spec))
        except (ConfigError, ParamError) as exc:
            label = f"steps[{index}]" + (
                f" ({spec.get('type')} {spec.get('name')})" if isinstance(spec, dict) else ""
            )
            raise ConfigError(f"{label}: {getattr(exc, 'message', exc)}", line=line) from None
    if doc.get("save_folder"):
        built.append(mapper.sink())
    workspace = base / str(doc.get("base_folder") or "intermediate_results")
    return workspace, Pipeline(built)


class _Mapper:
    """Builds captionary steps from Dataflow-Gen's, keeping track of which property holds the text."""

    def __init__(self, doc: dict[str, Any], base: Path):
        self.doc = doc
        self.base = base
        self.text = "caption"  # the property the current text is in
        self.has_images = True

    def path(self, value: Any) -> Path:
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else self.base / path

    def source(self, first_type: str | None) -> Any:
        meta = self.path(self.doc.get("meta_path") or self.doc.get("input_file"))
        text_key = str(self.doc.get("text_key") or "text")
        if first_type == "ImageCaptioner":
            params: dict[str, Any] = {
                "path": meta,
                "image_column": str(self.doc.get("image_key") or "image"),
                "caption_column": text_key,
            }
            if self.doc.get("meta_folder"):
                params["image_root"] = self.path(self.doc["meta_folder"])
            return _build("load_manifest", params)
        self.text, self.has_images = "prompt", False
        return _build("load_prompts", {"path": meta, "prompt_column": text_key})

    def step(self, spec: Any) -> Any:
        if not isinstance(spec, dict) or not {"type", "name"} <= spec.keys():
            raise ConfigError("a step is {type: ..., name: ..., config: {...}}")
        extra = sorted(set(spec) - {"type", "name", "config"})
        if extra:
            raise ConfigError(f"unknown step key {extra[0]!r}")
        config = dict(spec.get("config") or {})
        kind, name = spec["type"], str(spec["name"])
        if kind == "ImageCaptioner":
            return self.captioner(name, config)
        if kind == "ImageGenerator":
            return self.generator(name, config)
        if kind == "TextGenerator":
            return self.text_generator(name, config)
        mapped = "ImageCaptioner, ImageGenerator, TextGenerator"
        raise ConfigError(f"step type {kind!r} cannot be mapped (captionary maps {mapped})")

    def sink(self) -> Any:
        params: dict[str, Any] = {"path": self.path(self.doc["save_folder"]), "caption_property": self.text}
        if self.has_images:
            params |= {"format": "imagefolder", "caption_column": str(self.doc.get("text_key") or "text")}
        else:
            params["format"] = "jsonl"
        return _build("save", params)

    # --- steps ------------------------------------------------------------------------------------
    def captioner(self, name: str, config: dict[str, Any]) -> Any:
        if not self.has_images:
            raise ConfigError("an ImageCaptioner needs images: the inputs are prompts")
        take = _Taker(config)
        if name in ("GPTCaptioner", "ImageAPICaptioner"):
            params = self.api(take, "model", "gpt-4o")
            params |= {"system": take.get("sys_prompt"), "max_tokens": take.get("max_tokens")}
        elif name in CAPTIONER_MODELS:
            params = self.local(take, CAPTIONER_MODELS[name], ("top_k",))
        else:
            raise ConfigError(
                f"unknown captioner {name!r} (known: {', '.join([*CAPTIONER_MODELS, 'GPTCaptioner'])})"
            )
        params |= {"prompt": take.get("prompt", DEFAULT_PROMPT), "temperature": take.get("temperature")}
        params |= {"top_p": take.get("top_p"), "batch_size": take.get("batch_size", 16), "target": "caption"}
        take.ignore("repetition_penalty")  # Dataflow-Gen's captioners never pass it on
        take.done()
        self.text = "caption"
        return _build("caption", _set(params))

    def generator(self, name: str, config: dict[str, Any]) -> Any:
        take = _Taker(config)
        params: dict[str, Any] = {"prompt": "{" + self.text + "}", "batch_size": take.get("batch_size", 1)}
        if name == "ImageAPIGenerator":
            model = str(take.get("model", "openai:dall-e-3"))
            provider, _, model_name = model.rpartition(":")
            if provider not in ("", "openai"):
                raise ConfigError(f"model {model!r}: captionary's images backend speaks the OpenAI API only")
            params |= {"backend": "openai", "model": model_name}
            if take.get("api_url"):
                params["base_url"] = take.get("api_url")
            take.secret("api_key")
            extra_body = {"quality": take.get("quality")} if take.has("quality") else {}
            options = {"extra_body": extra_body}
            if take.has("retry_count"):
                options["max_retries"] = take.get("retry_count")
            if take.has("retry_gap"):
                options["retry_backoff"] = take.get("retry_gap")
            params["options"] = options
        elif name in GENERATOR_MODELS:
            params |= {"backend": "diffusers", "model": str(take.get("model_path", GENERATOR_MODELS[name]))}
            params |= {"dtype": "bfloat16"}  # Dataflow-Gen loads the pipeline in bfloat16
            for key in ("guidance_scale", "num_inference_steps", "max_sequence_length"):
                params[key] = take.get(key)
        else:
            known = ", ".join([*GENERATOR_MODELS, "ImageAPIGenerator"])
            raise ConfigError(f"unknown image generator {name!r} (known: {known})")
        params["height"] = take.get("height")
        params["width"] = take.get("width", take.get("weight"))  # Dataflow-Gen's configs spell it `weight`
        take.done()
        self.has_images = True
        return _build("generate_image", _set(params))

    def text_generator(self, name: str, config: dict[str, Any]) -> Any:
        take = _Taker(config)
        if name == "APIGenerator":
            params = self.api(take, "model_id", "openai:gpt-4o")
            extra = {k: take.get(k) for k in ("presence_penalty", "frequency_penalty") if take.get(k)}
            if extra:
                params["options"] = {"extra_body": extra}
        elif name == "LocalModelGenerator":
            params = self.local(take, "Qwen/Qwen2.5-1.5B-Instruct", ("top_k", "repetition_penalty", "min_p"))
        else:
            raise ConfigError(f"unknown text generator {name!r} (known: APIGenerator, LocalModelGenerator)")
        params |= {"system": take.get("prompt"), "prompt": "{" + self.text + "}", "target": "caption"}
        params |= {"temperature": take.get("temperature"), "top_p": take.get("top_p"), "n": take.get("n")}
        params |= {"max_tokens": take.get("max_tokens"), "seed": take.get("seed")}
        params["batch_size"] = take.get("batch_size", 16)
        if take.get("stop"):
            raise ConfigError("`stop` cannot be mapped (captionary's compose_caption has no stop strings)")
        take.done()
        self.text = "caption"
        return _build("compose_caption", _set(params))

    def api(self, take: _Taker, key: str, default: str) -> dict[str, Any]:
        model = str(take.get(key, default))
        provider, _, name = model.rpartition(":")
        if provider not in ("", "openai"):
            raise ConfigError(f"{key} {model!r}: captionary speaks OpenAI-compatible APIs only")
        params: dict[str, Any] = {"backend": "openai", "model": name}
        for url_key in ("base_url", "api_url"):
            if take.get(url_key):
                params["base_url"] = str(take.get(url_key)).rstrip("/")
        take.secret("api_key")
        return params

    def local(self, take: _Taker, default_model: str, sampling_keys: tuple[str, ...]) -> dict[str, Any]:
        """A local model: vLLM with Dataflow-Gen's engine settings where it can run, else transformers.
        `sampling_keys`: the SamplingParams fields Dataflow-Gen passes on for this kind of step."""
        params: dict[str, Any] = {"model": str(take.get("model_path", default_model))}
        sampling = {k: take.get(k) for k in sampling_keys if take.has(k)}
        sampling = {k: v for k, v in sampling.items() if v != VLLM_DEFAULTS[k]}
        max_model_len = take.get("max_model_len")
        if max_model_len is not None:
            params["max_tokens"] = max_model_len  # Dataflow-Gen's captioners generate up to max_model_len
        if _vllm_runs():
            options = {k: take.get(k) for k in ENGINE if take.has(k)}
            if max_model_len is not None:
                options["max_model_len"] = max_model_len
            options |= {"trust_remote_code": bool(take.get("trust_remote_code", False))}
            params |= {"backend": "vllm", "options": {**options, "sampling_options": sampling}}
        else:
            for key in ENGINE:
                take.ignore(key)
            options = {"generate_options": sampling}
            if take.get("trust_remote_code"):
                options["trust_remote_code"] = True
            params |= {"backend": "transformers", "options": options}
        return params


class _Taker:
    """Reads a step's `config`, remembering what was used; `done()` refuses the rest."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.config

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        value = self.config.get(key)
        return default if value is None else value

    def ignore(self, key: str) -> None:
        if key in self.config:
            self.used.add(key)

    def secret(self, key: str) -> None:
        if self.config.get(key) not in (None, "", "api_key", "your_api_key_here"):
            log.warning("Dataflow-Gen config: %s in the file is not used; set it in the environment", key)
        self.used.add(key)

    def done(self) -> None:
        for key in set(self.config) - self.used:
            if key in IGNORED:
                continue
            if key in VLLM_DEFAULTS and self.config[key] == VLLM_DEFAULTS[key]:
                continue
            raise ConfigError(f"config key {key!r} = {self.config[key]!r} cannot be mapped")


def _set(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _build(name: str, params: dict[str, Any]) -> Any:
    return STEPS.get(name)(**params)


def _vllm_runs() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
