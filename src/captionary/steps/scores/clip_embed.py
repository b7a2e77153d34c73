"""`clip_embed`: CLIP / SigLIP image embeddings, stored as arrays (blobs), not JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from captionary.core.fingerprints import model_fingerprint
from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.pipeline.step import require
from captionary.steps.scores.clip_backend import ClipModel
from captionary.steps.scores.image_step import ImageBatchStep
from captionary.steps.scores.models import loaded

DEFAULT_MODEL = "openai/clip-vit-large-patch14"
"""ViT-L/14: what the LAION aesthetic predictor was trained on."""
DRAFT_SHORT_EDGE = 512


class ClipEmbed(ImageBatchStep):
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
        if "_model_id" not in self.__dict__:
            self.__dict__["_model_id"] = model_fingerprint(self.model, self.revision)
        return self.__dict__["_model_id"]

    def setup(self) -> None:
        self.clip()

    def draft(self, width: int, height: int) -> float:
        return DRAFT_SHORT_EDGE / min(width, height)  # CLIP/SigLIP inputs are 224-448 px

    def clip(self) -> ClipModel:
        return loaded(self, lambda: ClipModel(self.model, self.revision, self.device))

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        clip = self.clip()
        embeddings = clip.embed_images(self.images(items))
        return [{"clip_embedding": row} for row in embeddings]
