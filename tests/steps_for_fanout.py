"""Steps the fan-out tests use (a module, so pool workers and Ray actors can import them)."""

from __future__ import annotations

import hashlib
import io
from typing import ClassVar

from captionary import BatchStep, Child, FanOut, Map, Outcome
from captionary.pipeline.step import PerItemStep


class TBoxes(Map):
    """Stand-in for a detector: two boxes per image, placed by a hash of the item id (stable)."""

    name: ClassVar[str] = "t_fanout_boxes"
    writes: ClassVar[tuple[str, ...]] = ("face_boxes",)
    reads_image: ClassVar[bool] = False

    def apply(self, item):
        h = hashlib.sha256(item.id.encode()).digest()
        x, y = h[0] / 255 * 0.4, h[1] / 255 * 0.4
        return {
            "face_boxes": [
                {"box": [round(x, 3), round(y, 3), round(x + 0.5, 3), round(y + 0.5, 3)], "score": 0.9},
                [0.1, 0.55, 0.45, 0.95],
            ]
        }


class TPaint(PerItemStep):
    """Stand-in for an image generator: a solid image whose colour comes from the prompt and seed,
    stored as a blob (what `generate_image` does)."""

    name: ClassVar[str] = "t_paint"
    kind: ClassVar[str] = "map"
    reads: ClassVar[tuple[str, ...]] = ("prompt", "seed")
    writes: ClassVar[tuple[str, ...]] = ("width", "height")
    reads_image: ClassVar[bool] = False

    def compute(self, item, store):
        from PIL import Image

        h = hashlib.sha256(f"{item['prompt']}|{item['seed']}".encode()).digest()
        buffer = io.BytesIO()
        Image.new("RGB", (48, 32), tuple(h[:3])).save(buffer, "PNG")
        return Outcome(props={"width": 48, "height": 32}, image=store.put(buffer.getvalue()))


class TBatchSplit(BatchStep):
    """Stand-in for a detector that crops in the same step: a batch step whose outcomes carry
    children (the left and right halves), the parent not kept."""

    name: ClassVar[str] = "t_batch_split"
    writes: ClassVar[tuple[str, ...]] = ("region", "width", "height", "halves")

    batch_size: int = 4

    def compute_batch(self, items):
        from captionary.steps.split.crop_boxes import CROP

        out = []
        for item in items:
            half = item.width // 2
            children = [
                Child(
                    side,
                    {"region": region, "width": w, "height": item.height},
                    transform=(CROP, {"region": region}),
                )
                for side, region, w in (
                    ("left", [0.0, 0.0, half / item.width, 1.0], half),
                    ("right", [half / item.width, 0.0, 1.0, 1.0], item.width - half),
                )
            ]
            out.append(Outcome(props={"halves": 2}, dropped="split in halves", children=children))
        return out


class TNestedSplit(FanOut):
    """Stand-in for a three-stage split in one step: the left half (not kept), and inside it its top
    and bottom halves, the top one split again into its left and right halves."""

    name: ClassVar[str] = "t_nested_split"
    writes: ClassVar[tuple[str, ...]] = ("region",)

    def children(self, item):
        from captionary.steps.split.crop_boxes import CROP

        def crop(key, region, children=None, keep=True):
            return Child(key, {"region": region}, (CROP, {"region": region}), children=children, keep=keep)

        top = crop(
            "top", [0.0, 0.0, 1.0, 0.5], [crop("l", [0.0, 0.0, 0.5, 1.0]), crop("r", [0.5, 0.0, 1.0, 1.0])]
        )
        return [crop("left", [0.0, 0.0, 0.5, 1.0], [top, crop("bottom", [0.0, 0.5, 1.0, 1.0])], keep=False)]
