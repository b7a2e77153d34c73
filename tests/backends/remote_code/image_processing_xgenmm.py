"""Tiny BLIP-3 image processor: `processor([image], return_tensors="pt", image_aspect_ratio="anyres")`
-> {"pixel_values": (n, patches, 3, H, W)}."""

from __future__ import annotations

import numpy as np
import torch
from transformers import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor


class XGenMMImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values"]

    def preprocess(self, images, return_tensors="pt", image_aspect_ratio="anyres", **kwargs):
        arrays = [np.asarray(im.convert("RGB").resize((16, 16)), dtype=np.float32) / 255 for im in images]
        pixels = torch.tensor(np.stack(arrays)).permute(0, 3, 1, 2).unsqueeze(1)
        return BatchFeature({"pixel_values": pixels})
