"""Tiny Phi-3-Vision: `Phi3VForCausalLM.generate(input_ids, attention_mask, pixel_values, image_sizes,
eos_token_id, max_new_tokens, ...)` returns the prompt followed by the new tokens, as the real one."""

from __future__ import annotations

import torch

from .tiny_core import TinyVLMBase, TinyVLMConfig


class Phi3VConfig(TinyVLMConfig):
    model_type = "phi3_v"

    def __init__(self, **kwargs):  # remote configs define __init__ (transformers keeps it)
        super().__init__(**kwargs)


class Phi3VForCausalLM(TinyVLMBase):
    config_class = Phi3VConfig

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, pixel_values=None, image_sizes=None, **kwargs):
        assert pixel_values is not None and image_sizes is not None, (
            "Phi-3-V expects pixel_values and image_sizes"
        )
        features = self.image_features(pixel_values[:, 0])  # (batch, crops, 3, H, W): the global crop
        new = self.decode(input_ids, features, **kwargs)
        return torch.cat([input_ids, new], dim=1)
