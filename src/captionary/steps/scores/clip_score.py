"""`clip_score`: how well each image matches text prompts (zero-shot), from its `clip_embedding`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from functools import cached_property
from typing import Any, ClassVar

from captionary.core.arrays import items_matrix
from captionary.core.fingerprints import model_fingerprint
from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.errors import ItemError
from captionary.pipeline.model_step import ModelStep
from captionary.pipeline.step import require
from captionary.steps.scores.clip_backend import ClipModel
from captionary.steps.scores.clip_embed import DEFAULT_MODEL


class ClipScore(ModelStep):
    """Score images against `prompts` (e.g. "a photo of a dog") and optional `negatives` ("a drawing").

    Writes `clip_score` (the best cosine similarity to a prompt), `clip_label` (the best matching
    prompt or negative) and, when negatives are given, `clip_match`: the probability that the image is
    a prompt rather than a negative (softmax over all of them at the model's temperature). Reads the
    `clip_embedding` of `clip_embed`, which must come from the same `model`. Filter with
    `filter: {expr: "clip_match >= 0.5"}`.
    """

    name: ClassVar[str] = "clip_score"
    version: ClassVar[int] = 1
    reads: ClassVar[tuple[str, ...]] = ("clip_embedding",)
    reads_image: ClassVar[bool] = False
    writes: ClassVar[tuple[str, ...]] = ("clip_score", "clip_label", "clip_match")
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size", "device", "model", "revision")

    prompts: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    model: str = DEFAULT_MODEL
    revision: str | None = None
    batch_size: int = 256
    device: str = "auto"

    def validate(self) -> None:
        require_module("torch", "clip")
        require_module("transformers", "clip")
        require(bool(self.prompts), self, "give at least one prompt", param="prompts")
        texts = [*self.prompts, *self.negatives]
        blank = [t for t in texts if not t.strip()]
        require(not blank, self, "prompts must not be empty strings", param="prompts")
        require(len(set(texts)) == len(texts), self, "a prompt is listed twice", param="prompts")

    def model_id(self) -> str:
        return self.fingerprint

    @cached_property
    def fingerprint(self) -> str:
        return model_fingerprint(self.model, self.revision)

    def load_model(self) -> tuple[ClipModel, Any]:
        """The model and the prompts' embeddings (computed once)."""
        clip = ClipModel(self.model, self.revision, self.device)
        return clip, clip.embed_texts([*self.prompts, *self.negatives])

    def teardown(self) -> None:
        self.reset_runtime()  # (model, texts): nothing to close

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        clip, texts = self.loaded()
        expected = self.model_id()
        images = items_matrix(items, "clip_embedding")
        for item in items:
            made_by = item["clip_embedding"].get("model")
            if made_by != expected:
                raise ItemError(
                    f"{item.name}: clip_embedding was computed by {made_by!r}, "
                    f"but clip_score uses {expected!r} (give both steps the same model)"
                )
        cosine = images @ texts.T
        labels = [*self.prompts, *self.negatives]
        n = len(self.prompts)
        out: list[dict[str, Any] | None] = []
        match = _softmax(clip.logit_scale * cosine) if self.negatives else None
        for row, similarity in enumerate(cosine):
            update: dict[str, Any] = {
                "clip_score": round(float(similarity[:n].max()), 6),
                "clip_label": labels[int(similarity.argmax())],
            }
            if match is not None:
                update["clip_match"] = round(float(match[row, :n].sum()), 6)
            out.append(update)
        return out


def _softmax(logits: Any) -> Any:
    """Row-wise softmax."""
    import numpy as np

    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)
