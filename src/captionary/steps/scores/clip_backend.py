"""A CLIP or SigLIP model from transformers: normalised image and text embeddings, zero-shot scores.

Shared by `clip_embed` (images -> embeddings) and `clip_score` (embeddings + prompts -> scores).
torch and transformers are imported when a model is loaded (`pip install 'captionary[clip]'`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from captionary.errors import ConfigError
from captionary.steps.scores.models import torch_device, unit_rows

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


class ClipModel:
    """One loaded dual encoder (`kind`: `clip` or `siglip`); `logit_scale` is its learned temperature."""

    def __init__(self, model: str, revision: str | None = None, device: str = "auto", dtype: str = "auto"):
        import torch
        from transformers import AutoModel, AutoProcessor

        self.device = torch_device(device)
        if dtype == "auto":
            dtype = "float16" if self.device.startswith("cuda") else "float32"
        self.dtype = getattr(torch, dtype)
        try:
            with _quiet():
                self.processor = AutoProcessor.from_pretrained(model, revision=revision)
                self.model = AutoModel.from_pretrained(model, revision=revision, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load CLIP/SigLIP model {model!r}: {exc}") from None
        if not hasattr(self.model, "get_image_features"):
            raise ConfigError(f"{model!r} is a {type(self.model).__name__}, not a CLIP/SigLIP dual encoder")
        self.model.to(self.device).eval()
        self.kind = "siglip" if "siglip" in type(self.model).__name__.lower() else "clip"
        self.logit_scale = float(self.model.logit_scale.detach().exp())

    def embed_images(self, images: Sequence[Image]) -> np.ndarray:
        """(n, d) float32, unit length."""
        import torch

        inputs = dict(self.processor(images=list(images), return_tensors="pt"))  # SigLIP 2 adds masks
        inputs = {
            k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            features = _features(self.model.get_image_features(**inputs))
        return unit_rows(features.float().cpu().numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32, unit length (SigLIP pads to its trained length, as it expects)."""
        import torch

        options: dict[str, Any] = {"padding": True, "truncation": True}
        if self.kind == "siglip":  # trained on texts padded to the full length
            length = getattr(self.model.config.text_config, "max_position_embeddings", 64)
            options.update(padding="max_length", max_length=length)
        inputs = self.processor(text=list(texts), return_tensors="pt", **options)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            features = _features(self.model.get_text_features(**inputs))
        return unit_rows(features.float().cpu().numpy())

    def close(self) -> None:
        del self.model
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def _features(output: Any) -> Any:
    """transformers 4.x returns the projected features; 5.x a ModelOutput holding them in pooler_output."""
    return output if hasattr(output, "shape") else output.pooler_output


@contextlib.contextmanager
def _quiet():
    """Silence transformers' load-time progress bars and notices (e.g. the torchvision fallback)."""
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()
