"""LLaVA-style adapters with no transformers class: JoyCaption Alpha (One/Two), beprepared's default
captioner. A checkpoint folder holds

    image_adapter.pt      the projector: linear1 -> GELU -> linear2 from the vision features to the
                          LLM's hidden size, plus `other_tokens` (image start, image end, end of turn)
    clip_model.pt         optional: the fine-tuned vision tower's weights (a state dict)
    text_model/           the LLM (Llama 3.1 Instruct with its chat template) and tokenizer
    vision_model/         optional: the vision tower; else the `vision_model` option (default
                          google/siglip-so400m-patch14-384, as JoyCaption loads it)

The image is resized to the vision tower's size, normalised to [-1, 1], encoded (the second-to-last
hidden state, or several layers concatenated when the projector expects that), projected, wrapped in
the start/end embeddings and inserted after the system turn of the chat template; the LLM generates
from those embeddings. One request at a time, like the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captionary.backends.base import Request, Result
from captionary.errors import ConfigError

if TYPE_CHECKING:
    from captionary.backends.transformers import TransformersBackend

DEFAULT_VISION = "google/siglip-so400m-patch14-384"
DEEP_LAYERS = (-2, 3, 7, 13, 20)
"""The vision layers JoyCaption's `deep_extract` projector concatenates."""


def is_adapter_folder(model: str) -> bool:
    path = Path(model).expanduser()
    return (path / "image_adapter.pt").is_file() and (path / "text_model").is_dir()


class LlavaAdapter:
    """A vision tower + projector + LLM assembled by hand (see the module docstring)."""

    def load(self, backend: TransformersBackend, common: dict[str, Any], kwargs: dict[str, Any]) -> None:
        import torch
        import transformers

        root = Path(backend.config.model).expanduser()
        dtype = kwargs.get("dtype")
        vision_source = root / "vision_model" if (root / "vision_model").is_dir() else None
        vision_id = str(vision_source or backend.settings.get("vision_model") or DEFAULT_VISION)
        vision = transformers.AutoModel.from_pretrained(vision_id, dtype=dtype)
        self.vision = getattr(vision, "vision_model", vision)
        if (root / "clip_model.pt").is_file():
            state = torch.load(root / "clip_model.pt", map_location="cpu", weights_only=True)
            state = {k.removeprefix("_orig_mod.module."): v for k, v in state.items()}
            self.vision.load_state_dict(state)
        adapter_state = torch.load(root / "image_adapter.pt", map_location="cpu", weights_only=True)
        hidden = self.vision.config.hidden_size
        self.adapter = ImageAdapter.from_state(adapter_state, hidden).to(dtype=dtype)
        text_root = root / "text_model"
        backend.model = transformers.AutoModelForCausalLM.from_pretrained(text_root, **kwargs)
        backend.tokenizer = backend.processor = transformers.AutoTokenizer.from_pretrained(text_root)
        if backend.tokenizer.pad_token_id is None:
            backend.tokenizer.pad_token = backend.tokenizer.eos_token
        self.vision.to(backend.device).eval()
        self.adapter.to(backend.device).eval()
        backend.model.to(backend.device).eval()
        backend.model_type = "llava_adapter"
        size = self.vision.config.image_size
        self.size = (size, size)

    def generate(self, backend: TransformersBackend, requests: Sequence[Request]) -> list[Result]:
        results = []
        for request in requests:
            if len(request.images) != 1:
                results.append(Result(error="a LLaVA-style adapter takes exactly one image per prompt"))
                continue
            result = Result()
            for _ in range(request.params.n if request.params.temperature > 0 else 1):
                tokens, prompt_tokens = self.run(backend, request)
                text, reason, used = backend.finish(tokens, request.params, request)
                result.texts.append(text)
                result.finish_reasons.append(reason)
                result.prompt_tokens, result.completion_tokens = (
                    prompt_tokens,
                    result.completion_tokens + used,
                )
            results.append(result)
        return results

    def run(self, backend: TransformersBackend, request: Request) -> tuple[list[int], int]:
        import numpy as np
        import torch

        from captionary.backends.hf_families import generate_kwargs

        image = request.images[0].convert("RGB").resize(self.size, resample=3)  # LANCZOS, as JoyCaption
        pixels = torch.tensor(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).unsqueeze(0)
        pixels = ((pixels - 0.5) / 0.5).to(backend.device, dtype=next(self.vision.parameters()).dtype)
        tokenizer, model = backend.tokenizer, backend.model
        messages = [{"role": "system", "content": request.system or "You are a helpful image captioner."}]
        messages.append({"role": "user", "content": request.prompt})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer.encode(text, add_special_tokens=False)
        end_of_turn = tokenizer.convert_tokens_to_ids("<|eot_id|>")
        if end_of_turn not in ids:
            raise ConfigError("the text model's chat template has no <|eot_id|> after the system turn")
        cut = ids.index(end_of_turn) + 1  # the image goes right after the system turn
        with torch.inference_mode():
            hidden = self.vision(pixel_values=pixels, output_hidden_states=True).hidden_states
            features = self.adapter.features(hidden)
            images = self.adapter(features)
            embed = model.get_input_embeddings()
            before = embed(torch.tensor([ids[:cut]], device=backend.device))
            after = embed(torch.tensor([ids[cut:]], device=backend.device))
            embeds = torch.cat([before, images.to(before.dtype), after], dim=1)
            input_ids = torch.tensor([ids[:cut] + [0] * images.shape[1] + ids[cut:]], device=backend.device)
            kwargs = generate_kwargs(backend, request.params)
            backend.calls += 1
            output = model.generate(
                input_ids=input_ids,
                inputs_embeds=embeds,
                attention_mask=torch.ones_like(input_ids),
                eos_token_id=[tokenizer.eos_token_id, end_of_turn],
                pad_token_id=tokenizer.pad_token_id,
                **kwargs,
            )
        start = input_ids.shape[1] if output.shape[1] > input_ids.shape[1] else 0
        return output[0, start:].tolist(), int(input_ids.shape[1])


def _module() -> Any:
    import torch
    from torch import nn

    class Adapter(nn.Module):
        """JoyCaption's ImageAdapter: (deep-extracted) vision features -> LLM embeddings, wrapped in
        learned image start/end tokens (optionally layer-normed, with learned positions)."""

        def __init__(self, in_features: int, out_features: int, ln1: bool, positions: int | None, deep: bool):
            super().__init__()
            self.deep = deep
            width = in_features * (len(DEEP_LAYERS) if deep else 1)
            self.ln1 = nn.LayerNorm(width) if ln1 else nn.Identity()
            self.pos_emb = nn.Parameter(torch.zeros(positions, width)) if positions else None
            self.linear1 = nn.Linear(width, out_features)
            self.activation = nn.GELU()
            self.linear2 = nn.Linear(out_features, out_features)
            self.other_tokens = nn.Embedding(3, out_features)

        @classmethod
        def from_state(cls, state: dict[str, Any], vision_hidden: int) -> Any:
            """The adapter a state dict describes (Alpha One: linear1/linear2 only; Alpha Two: also
            other_tokens, and ln1, pos_emb and deep-extracted features where the shapes say so)."""
            out_features, width = state["linear1.weight"].shape
            deep = width == vision_hidden * len(DEEP_LAYERS)
            positions = state["pos_emb"].shape[0] if "pos_emb" in state else None
            adapter = cls(vision_hidden, out_features, "ln1.weight" in state, positions, deep)
            if "other_tokens.weight" not in state:  # Alpha One: no start/end tokens
                adapter.other_tokens = None
            adapter.load_state_dict(state)
            return adapter

        def features(self, hidden_states: Sequence[Any]) -> Any:
            if self.deep:
                return torch.cat([hidden_states[i] for i in DEEP_LAYERS], dim=-1)
            return hidden_states[-2]

        def forward(self, features: Any) -> Any:
            x = self.ln1(features)
            if self.pos_emb is not None:
                x = x + self.pos_emb
            x = self.linear2(self.activation(self.linear1(x)))
            if self.other_tokens is None:
                return x
            ends = self.other_tokens(torch.tensor([0, 1], device=x.device).expand(x.shape[0], -1))
            return torch.cat([ends[:, :1], x, ends[:, 1:]], dim=1)

    return Adapter


class _LazyAdapter:
    """`ImageAdapter.from_state(...)` without importing torch when this module is imported."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_module(), name)


ImageAdapter: Any = _LazyAdapter()
