"""Vision-language models whose architecture transformers does not ship: they bring their own code
(`trust_remote_code`) with their own processor and generate conventions, so the transformers backend
drives them through a small `Family` each instead of AutoModelForImageTextToText:

    phi3_v   Phi-3-Vision: the tokenizer's chat template with `<|image_1|>`, `processor(prompt, [image])`,
             `model.generate(**inputs)` (prompt + new tokens)
    molmo    Molmo: `processor.process(images=[image], text=prompt)` (unbatched tensors),
             `model.generate_from_batch(batch, GenerationConfig(stop_strings="<|endoftext|>"), tokenizer=)`
    xgenmm   BLIP-3 / xGen-MM: AutoTokenizer + AutoImageProcessor(`image_aspect_ratio="anyres"`),
             `model.update_special_tokens(tokenizer)`, its `<|system|> ... <|user|>\\n<image>\\n ...` prompt,
             `model.generate(**inputs, image_size=[...])` (new tokens only), text cut at `<|end|>`

These models take one image per prompt and run one request at a time (their processors do not batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from captionary.backends.base import GenerationParams, Request, Result
from captionary.errors import ConfigError

if TYPE_CHECKING:
    from captionary.backends.transformers import TransformersBackend

XGENMM_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


class Family:
    """How one remote-code model family is loaded, prompted and run."""

    model_type: ClassVar[str] = ""
    auto_classes: ClassVar[tuple[str, ...]] = ("AutoModelForCausalLM",)

    def load(self, backend: TransformersBackend, common: dict[str, Any], kwargs: dict[str, Any]) -> None:
        """Set backend.model, .processor and .tokenizer."""
        import transformers

        backend.model = load_remote_model(backend.config.model, self.auto_classes, common, kwargs)
        backend.processor = transformers.AutoProcessor.from_pretrained(
            backend.config.model, **common, **backend.settings["processor_options"]
        )
        backend.tokenizer = backend.processor.tokenizer

    def generate(self, backend: TransformersBackend, requests: Sequence[Request]) -> list[Result]:
        results = []
        for request in requests:
            if len(request.images) != 1:
                results.append(Result(error=f"{self.model_type} takes exactly one image per prompt"))
                continue
            result = Result()
            for _ in range(request.params.n if request.params.temperature > 0 else 1):
                tokens, prompt_tokens = self.run(backend, request, request.images[0].convert("RGB"))
                text, reason, used = backend.finish(tokens, request.params, request)
                result.texts.append(self.clean(text))
                result.finish_reasons.append(reason)
                result.prompt_tokens, result.completion_tokens = (
                    prompt_tokens,
                    result.completion_tokens + used,
                )
            results.append(result)
        return results

    def run(self, backend: TransformersBackend, request: Request, image: Any) -> tuple[list[int], int]:
        """The generated token ids (new ones only) and the prompt's length in tokens."""
        raise NotImplementedError

    def clean(self, text: str) -> str:
        return text


class Phi3Vision(Family):
    model_type = "phi3_v"

    def run(self, backend: TransformersBackend, request: Request, image: Any) -> tuple[list[int], int]:
        import torch

        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": f"<|image_1|>\n{request.prompt}"})
        prompt = backend.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = backend.processor(prompt, [image], return_tensors="pt").to(backend.device)
        if inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(backend.model.dtype)
        kwargs = generate_kwargs(backend, request.params)
        with torch.inference_mode():
            backend.calls += 1
            output = backend.model.generate(**inputs, eos_token_id=backend.tokenizer.eos_token_id, **kwargs)
        start = inputs["input_ids"].shape[1]
        return output[0, start:].tolist(), start


class Molmo(Family):
    model_type = "molmo"

    def run(self, backend: TransformersBackend, request: Request, image: Any) -> tuple[list[int], int]:
        import torch
        from transformers import GenerationConfig

        text = f"{request.system}\n{request.prompt}" if request.system else request.prompt
        inputs = backend.processor.process(images=[image], text=text)
        batch = {k: v.to(backend.device).unsqueeze(0) for k, v in inputs.items()}
        if batch["images"].is_floating_point():
            batch["images"] = batch["images"].to(backend.model.dtype)
        params = request.params
        config = GenerationConfig(
            max_new_tokens=params.max_tokens,
            stop_strings="<|endoftext|>",
            do_sample=params.temperature > 0,
            temperature=params.temperature if params.temperature > 0 else None,
            top_p=params.top_p if params.temperature > 0 else None,
        )
        with torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            backend.calls += 1
            output = backend.model.generate_from_batch(batch, config, tokenizer=backend.tokenizer)
        start = batch["input_ids"].shape[1]
        return output[0, start:].tolist(), start


class XGenMM(Family):
    model_type = "xgenmm"
    auto_classes = ("AutoModelForVision2Seq", "AutoModelForImageTextToText", "AutoModelForCausalLM")

    def load(self, backend: TransformersBackend, common: dict[str, Any], kwargs: dict[str, Any]) -> None:
        import transformers

        backend.model = load_remote_model(backend.config.model, self.auto_classes, common, kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            backend.config.model, use_fast=False, legacy=False, **common
        )
        backend.tokenizer = backend.model.update_special_tokens(tokenizer)
        backend.processor = transformers.AutoImageProcessor.from_pretrained(
            backend.config.model, **common, **backend.settings["processor_options"]
        )

    def run(self, backend: TransformersBackend, request: Request, image: Any) -> tuple[list[int], int]:
        import torch

        system = request.system or XGENMM_SYSTEM
        prompt = f"<|system|>\n{system}<|end|>\n<|user|>\n<image>\n{request.prompt}<|end|>\n<|assistant|>\n"
        inputs = backend.processor([image], return_tensors="pt", image_aspect_ratio="anyres")
        inputs.update(backend.tokenizer([prompt], return_tensors="pt"))
        inputs = inputs.to(backend.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(backend.model.dtype)
        kwargs = generate_kwargs(backend, request.params) | {"num_beams": 1}
        with torch.inference_mode():
            backend.calls += 1
            output = backend.model.generate(
                **inputs, image_size=[image.size], pad_token_id=backend.tokenizer.pad_token_id, **kwargs
            )
        return output[0].tolist(), int(inputs["input_ids"].shape[1])

    def clean(self, text: str) -> str:
        return text.split("<|end|>")[0].strip()


FAMILIES: dict[str, Family] = {f.model_type: f for f in (Phi3Vision(), Molmo(), XGenMM())}


def generate_kwargs(backend: TransformersBackend, params: GenerationParams) -> dict[str, Any]:
    import torch

    kwargs = backend.generation_kwargs(params)
    kwargs.pop("num_return_sequences", None)
    if params.seed is not None:
        torch.manual_seed(params.seed)
    return kwargs


def load_remote_model(
    path: str, auto_classes: tuple[str, ...], common: dict[str, Any], kwargs: dict[str, Any]
) -> Any:
    """The model class the checkpoint's `auto_map` names for the first of `auto_classes` it lists
    (AutoModelForVision2Seq is gone from recent transformers, so the class is resolved directly)."""
    import transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    if not common.get("trust_remote_code"):
        raise ConfigError(f"{path} ships its own model code: set the option trust_remote_code: true")
    config = transformers.AutoConfig.from_pretrained(path, **common)
    auto_map = getattr(config, "auto_map", None) or {}
    for name in auto_classes:
        if name in auto_map:
            cls = get_class_from_dynamic_module(auto_map[name], path, revision=common.get("revision"))
            return cls.from_pretrained(path, **kwargs)
    raise ConfigError(f"{path}: its config.json auto_map names none of {', '.join(auto_classes)}")
