"""`clip_embed`: CLIP / SigLIP image embeddings, stored as arrays (blobs), not JSON."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar

from captionary.core.fingerprints import model_fingerprint
from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.pipeline.step import require
from captionary.steps.scores.clip_backend import ClipModel
from captionary.steps.scores.image_step import ScoreImageStep

DEFAULT_MODEL = "openai/clip-vit-large-patch14"
"""ViT-L/14: what the LAION aesthetic predictor was trained on."""
DRAFT_SHORT_EDGE = 512


class ClipEmbed(ScoreImageStep):
    """Unit-length image embeddings in `clip_embedding` (a float32 array reference).

    `model` is a Hugging Face id or a local folder of a transformers CLIPModel or SiglipModel;
    `device` is `auto` (GPU when present), `cpu` or `cuda[:n]`.
    """

    name: ClassVar[str] = "clip_embed"
    version: ClassVar[int] = 1
    writes: ClassVar[tuple[str, ...]] = ("clip_embedding",)
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size", "device", "model", "revision")

    model: str = DEFAULT_MODEL
    revision: str | None = None
    batch_size: int = 16
    device: str = "auto"

    def validate(self) -> None:
        require_module("torch", "clip")
        require_module("transformers", "clip")
        require(self.batch_size >= 1, self, f"must be >= 1; got {self.batch_size}", param="batch_size")

    def model_id(self) -> str:
        return self.fingerprint

    @cached_property
    def fingerprint(self) -> str:
        return model_fingerprint(self.model, self.revision)

    def draft(self, width: int, height: int) -> float:
        return DRAFT_SHORT_EDGE / min(width, height)  # CLIP/SigLIP inputs are 224-448 px

    def load_model(self) -> ClipModel:
        return ClipModel(self.model, self.revision, self.device)

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        clip: ClipModel = self.loaded()
        embeddings = clip.embed_images(self.inputs(items))
        return [{"clip_embedding": row} for row in embeddings]
