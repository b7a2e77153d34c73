"""Boxes to crops, for every step that crops regions out of an image (`crop_boxes`, the detector
splits): a fractional box grown by `padding`, made square, kept inside the image, in pixels; and the
children (`Child`) those crops become."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from captionary.pipeline.step import Child
from captionary.steps.transforms.region import CropRegion

CROP = CropRegion()


def crop_pixels(
    box: Sequence[float], width: int, height: int, padding: float = 0.0, square: bool = False
) -> tuple[int, int, int, int]:
    """`box` ([x0, y0, x1, y1] fractions) in pixels of a `width` x `height` image: `padding` (a fraction
    of the box's size) added on each side, made square when asked (as large as the longer side allows
    inside the image, moved inside rather than cut), clipped to the image."""
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    pad_x, pad_y = (x1 - x0) * padding, (y1 - y0) * padding
    x0, y0, x1, y1 = x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y
    if square:
        side = min(max(x1 - x0, y1 - y0), width, height)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        x0 = min(max(cx - side / 2, 0), width - side)
        y0 = min(max(cy - side / 2, 0), height - side)
        x1, y1 = x0 + side, y0 + side
    left, top = max(round(x0), 0), max(round(y0), 0)
    return left, top, min(round(x1), width), min(round(y1), height)


def region_of(pixels: tuple[int, int, int, int], width: int, height: int) -> list[float]:
    """A pixel box as the fractional `region` `crop_region` reads (6 decimals: exact back to pixels)."""
    left, top, right, bottom = pixels
    return [round(v, 6) for v in (left / width, top / height, right / width, bottom / height)]


def crop_child(
    key_prefix: str,
    pixels: tuple[int, int, int, int],
    width: int,
    height: int,
    props: dict[str, Any],
    name: str,
) -> Child:
    """The child that crops `pixels` out of its parent's `width` x `height` image: it gets `region`,
    `width`, `height` and `props`; its key names the region, so another box is another child."""
    region = region_of(pixels, width, height)
    left, top, right, bottom = pixels
    key = f"{key_prefix}:" + ",".join(f"{v:.6f}" for v in region)
    props = {"region": region, "width": right - left, "height": bottom - top, **props}
    return Child(key, props, transform=(CROP, {"region": region}), name=name)
