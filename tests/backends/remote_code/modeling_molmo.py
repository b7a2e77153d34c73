"""Tiny Molmo: `MolmoForCausalLM.generate_from_batch(batch, GenerationConfig, tokenizer=...)` where
`batch` holds input_ids, images, image_input_idx, image_masks; returns prompt + new tokens."""

from __future__ import annotations

import torch

from .tiny_core import TinyVLMBase, TinyVLMConfig


class MolmoConfig(TinyVLMConfig):
    model_type = "molmo"

    def __init__(self, **kwargs):  # remote configs define __init__ (transformers keeps it)
        super().__init__(**kwargs)


class MolmoForCausalLM(TinyVLMBase):
    config_class = MolmoConfig

    def generate(self, *args, **kwargs):
        raise TypeError("Molmo generates with generate_from_batch(batch, generation_config, tokenizer=...)")

    @torch.no_grad()
    def generate_from_batch(self, batch, generation_config=None, tokenizer=None, **kwargs):
        assert {"input_ids", "images", "image_input_idx", "image_masks"} <= set(batch), sorted(batch)
        config = generation_config
        features = self.image_features(batch["images"][:, 0])
        stop = config.stop_strings
        eos = tokenizer.convert_tokens_to_ids(stop) if isinstance(stop, str) else tokenizer.eos_token_id
        new = self.decode(
            batch["input_ids"],
            features,
            max_new_tokens=config.max_new_tokens,
            eos_token_id=eos,
            do_sample=bool(config.do_sample),
            temperature=config.temperature,
            pad_token_id=tokenizer.pad_token_id,
        )
        return torch.cat([batch["input_ids"], new], dim=1)
