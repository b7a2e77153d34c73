"""`text_area`: the fraction of an image covered by text (captions, watermarks, signs, overlays).

Text is found with PaddleOCR's PP-OCR text detector as shipped in the `rapidocr` wheel (Apache-2.0
code and weights; onnxruntime; headless OpenCV), detection only: no recognition, so it is fast and
language-independent. The detected quadrilaterals are filled on a mask; the covered fraction is the
score. On textured photos (wood grain, gravel, fur) the detector also returns large, near-square
blobs covering most of the image; a text line is a thin band, so regions thicker than
`max_line_height` (a fraction of the image's short side) are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.pipeline.step import require
from captionary.steps.scores.image_step import ScoreImageStep

if TYPE_CHECKING:
    from PIL.Image import Image


class TextArea(ScoreImageStep):
    """Write `text_area` (0-1: the fraction of the image inside detected text regions) and
    `text_regions` (how many). Images are scaled to `max_edge` first (the fraction does not depend
    on scale; small text below about 8 px at that size is missed). Filter with
    `filter: {expr: "text_area < 0.05"}`.
    """

    name: ClassVar[str] = "text_area"
    version: ClassVar[int] = 1
    writes: ClassVar[tuple[str, ...]] = ("text_area", "text_regions")
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size",)

    max_edge: int = 960
    min_score: float = 0.5
    max_line_height: float = 0.2
    batch_size: int = 8

    def validate(self) -> None:
        require_module("rapidocr", "ocr")
        require_module("onnxruntime", "ocr")
        require(self.max_edge >= 64, self, f"must be >= 64; got {self.max_edge}", param="max_edge")
        require(0 <= self.min_score < 1, self, f"must be in [0, 1); got {self.min_score}", "min_score")
        require(0 < self.max_line_height <= 1, self, "must be in (0, 1]", param="max_line_height")

    def model_id(self) -> str:
        from importlib.metadata import version

        return f"rapidocr-det@{version('rapidocr')}"

    def draft(self, width: int, height: int) -> float:
        return self.max_edge / max(width, height)

    def load_model(self) -> Any:
        from rapidocr import RapidOCR

        params = {"Global.use_cls": False, "Global.use_rec": False, "Global.log_level": "error"}
        params.update({"Det.limit_type": "max", "Det.limit_side_len": self.max_edge})
        params["Det.box_thresh"] = self.min_score
        return RapidOCR(params=params)

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        engine = self.loaded()
        return [self.measure(engine, image) for image in self.inputs(items)]

    def measure(self, engine: Any, image: Image) -> dict[str, Any]:
        import numpy as np
        from PIL import Image as PILImage
        from PIL import ImageDraw

        if max(image.size) > self.max_edge:
            image = image.copy()
            image.thumbnail((self.max_edge, self.max_edge))
        result = engine(np.asarray(image), use_det=True, use_cls=False, use_rec=False)
        limit = self.max_line_height * min(image.size)
        boxes = [box for box in ([] if result.boxes is None else result.boxes) if _thickness(box) <= limit]
        mask = PILImage.new("1", image.size, 0)
        draw = ImageDraw.Draw(mask)
        for box in boxes:
            draw.polygon([(float(x), float(y)) for x, y in box], fill=1)
        covered = np.count_nonzero(np.asarray(mask)) / (image.width * image.height)
        return {"text_area": round(float(covered), 5), "text_regions": len(boxes)}


def _thickness(box: Any) -> float:
    """The shorter side of a detected quadrilateral (a text line's height)."""
    import numpy as np

    return float(min(np.linalg.norm(box[1] - box[0]), np.linalg.norm(box[2] - box[1])))
