"""Tiny BLIP-3 (xGen-MM): `XGenMMModelForConditionalGeneration.generate(pixel_values, input_ids,
attention_mask, image_size=[...], ...)` returns only the NEW tokens; `update_special_tokens(tok)`."""

from __future__ import annotations

import torch

from .tiny_core import TinyVLMBase, TinyVLMConfig


class XGenMMConfig(TinyVLMConfig):
    model_type = "xgenmm"

    def __init__(self, **kwargs):  # remote configs define __init__ (transformers keeps it)
        super().__init__(**kwargs)


class XGenMMModelForConditionalGeneration(TinyVLMBase):
    config_class = XGenMMConfig

    def update_special_tokens(self, tokenizer):
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
        return tokenizer

    @torch.no_grad()
    def generate(self, pixel_values, input_ids, attention_mask=None, image_size=None, **kwargs):
        assert image_size is not None, "xGen-MM's generate needs image_size"
        kwargs.pop("num_beams", None)
        kwargs.pop("top_p", None)
        kwargs.setdefault(
            "eos_token_id", self.config.eos_token_id
        )  # the real one reads its generation config
        return self.decode(input_ids, self.image_features(pixel_values[:, 0]), **kwargs)
