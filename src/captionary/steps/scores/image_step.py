"""`ScoreImageStep`: the base of score steps that read pixels (`pipeline/model_step.ImageBatchStep`:
model loaded once, the next batch decoded in threads), with the `fast_decode` parameter they share."""

from __future__ import annotations

from captionary.pipeline.model_step import ImageBatchStep


class ScoreImageStep(ImageBatchStep):
    """A model step over RGB images: implement `load_model`, `draft` and `apply_batch` (using
    `self.inputs(items)` and `self.loaded()`).

    `fast_decode` lets a JPEG original be decoded at a reduced DCT scale that still gives the model
    the pixels it needs (`draft`); it is part of the cache key, as the pixels differ slightly.
    """

    fast_decode: bool = True

    def draft(self, width: int, height: int) -> float | None:
        """The smallest scale of the upright `width` x `height` image this step needs; None: full."""
        return None

    def draft_scale(self, width: int, height: int) -> float | None:
        return self.draft(width, height) if self.fast_decode else None
