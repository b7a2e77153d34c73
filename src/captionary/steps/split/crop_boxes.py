"""`crop_boxes`: one new item per box of a property (e.g. `face_boxes` from `faces`), cropped from its
parent's image. Boxes are `[x0, y0, x1, y1]` fractions of the width and height, or `{"box": [...]}`."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.errors import ItemError
from captionary.pipeline.step import Child, FanOut, require
from captionary.steps.split.boxes import CROP, crop_child, crop_pixels

__all__ = ["CROP", "CropBoxes"]


class CropBoxes(FanOut):
    """One new item per box of a property such as `face_boxes`, cropped (padding, square, min_size).

    `padding`: fraction of the box added on each side; `square`: grow the shorter side (kept inside the
    image); `min_size` (px): smaller boxes are skipped; `keep_parent`: the photo goes on too."""

    name: ClassVar[str] = "crop_boxes"
    writes: ClassVar[tuple[str, ...]] = ("region", "box_index", "width", "height")

    boxes: str = "face_boxes"
    padding: float = 0.0
    square: bool = False
    min_size: int = 0
    keep_parent: bool = False

    def validate(self) -> None:
        require(self.padding >= 0, self, f"must be >= 0; got {self.padding}", param="padding")
        require(self.min_size >= 0, self, f"must be >= 0; got {self.min_size}", param="min_size")

    @property
    def reads(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.boxes, "width", "height")

    def children(self, item: Item) -> list[Child]:
        width, height = item.width, item.height
        children = []
        boxes = item.get(self.boxes) or []
        if not isinstance(boxes, list):
            raise ItemError(f"{self.boxes} must be a list of boxes [x0, y0, x1, y1]; got {boxes!r}")
        for index, value in enumerate(boxes):
            box = _box(value, self.boxes)
            left, top, right, bottom = pixels = crop_pixels(box, width, height, self.padding, self.square)
            if min(right - left, bottom - top) < max(self.min_size, 1):
                continue
            props = {"box_index": index}
            children.append(crop_child(f"{index}", pixels, width, height, props, f"box{index}"))
        return children


def _box(value: Any, prop: str) -> list[float]:
    box = value.get("box") if isinstance(value, dict) else value
    if not (
        isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
    ):
        raise ItemError(
            f"{prop}: each box must be [x0, y0, x1, y1] fractions (or {{'box': [...]}}); got {value!r}"
        )
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ItemError(f"{prop}: box {box!r} is not within 0..1 with x0 < x1 and y0 < y1")
    return [x0, y0, x1, y1]
