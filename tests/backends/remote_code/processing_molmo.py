"""Tiny Molmo processor: `processor.process(images=[image], text=prompt)` returns UNBATCHED tensors
(the caller adds the batch dimension), as the real one does."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoTokenizer


class MolmoProcessor:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoProcessor"):  # what ProcessorMixin offers
        pass

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls(AutoTokenizer.from_pretrained(path, **kwargs))

    def process(self, images=None, text="", **kwargs):
        image = images[0].convert("RGB").resize((16, 16))
        pixels = torch.tensor(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).unsqueeze(0)
        ids = [5] * 4 + self.tokenizer(" User: " + text + " Assistant:", add_special_tokens=False)[
            "input_ids"
        ]
        return {
            "input_ids": torch.tensor(ids),
            "images": pixels,  # (crops, 3, H, W)
            "image_input_idx": torch.arange(4).unsqueeze(0),
            "image_masks": torch.ones(1, 4),
        }
