"""Tiny Phi-3-Vision processor: `processor(prompt, [image], return_tensors="pt")` where the prompt
holds `<|image_1|>`; image tokens become negative ids (-1), as in the real processor."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature


class Phi3VProcessor:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoProcessor"):  # what ProcessorMixin offers
        pass

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls(AutoTokenizer.from_pretrained(path, **kwargs))

    def __call__(self, text, images=None, return_tensors="pt"):
        assert isinstance(text, str), "Phi-3-V's processor takes one prompt"
        images = images or []
        parts = text.split("<|image_1|>")
        ids = self.tokenizer(parts[0], add_special_tokens=False)["input_ids"]
        for part in parts[1:]:
            ids += [-1] * 4 + self.tokenizer(part, add_special_tokens=False)["input_ids"]
        data = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        if images:
            arrays = [np.asarray(im.convert("RGB").resize((16, 16)), dtype=np.float32) / 255 for im in images]
            pixel = torch.tensor(np.stack(arrays)).permute(0, 3, 1, 2).unsqueeze(1)  # (n, crops=1, 3, 16, 16)
            data |= {
                "pixel_values": pixel,
                "image_sizes": torch.tensor([[im.height, im.width] for im in images]),
            }
        return BatchFeature(data)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)
