"""`crop_boxes`: one new item per box of a property (e.g. `face_boxes` from `faces`), cropped from its
parent's image. Boxes are `[x0, y0, x1, y1]` fractions of the width and height, or `{"box": [...]}`."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.errors import ItemError
from captionary.pipeline.step import Child, FanOut, require
from captionary.steps.transforms.region import CropRegion

CROP = CropRegion()


class CropBoxes(FanOut):
    """One new item per box in a property (`face_boxes`, ...), cropped: `padding` (fraction of the box
    added on each side), `square`, `min_size` (px; smaller boxes are skipped)."""

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
            left, top, right, bottom = self._pixels(_box(value, self.boxes), width, height)
            if min(right - left, bottom - top) < max(self.min_size, 1):
                continue
            region = [
                round(left / width, 6),
                round(top / height, 6),
                round(right / width, 6),
                round(bottom / height, 6),
            ]
            key = f"{index}:" + ",".join(f"{v:.6f}" for v in region)
            props = {"region": region, "box_index": index, "width": right - left, "height": bottom - top}
            children.append(Child(key, props, transform=(CROP, {"region": region}), name=f"box{index}"))
        return children

    def _pixels(self, box: list[float], width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels: padded, made square when asked, kept inside the image."""
        x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
        pad_x, pad_y = (x1 - x0) * self.padding, (y1 - y0) * self.padding
        x0, y0, x1, y1 = x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y
        if self.square:
            side = min(max(x1 - x0, y1 - y0), width, height)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            x0 = min(max(cx - side / 2, 0), width - side)
            y0 = min(max(cy - side / 2, 0), height - side)
            x1, y1 = x0 + side, y0 + side
        left, top = max(round(x0), 0), max(round(y0), 0)
        return left, top, min(round(x1), width), min(round(y1), height)


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
