"""`crop_heads`: one new item per head in the image."""

from __future__ import annotations

from typing import ClassVar

from captionary.steps.split.detected import OneDetectorSplit


class CropHeads(OneDetectorSplit):
    """One new item per head found, cropped out of the image.

    `detector`: a YOLO ONNX head detector (default: deepghs' anime one, from the hub); for photos,
    `dlib` with `padding: 0.5, square: true` grows faces to heads. Parameters: see DetectorSplit."""

    name: ClassVar[str] = "crop_heads"
    version: ClassVar[int] = 1
    child_name: ClassVar[str] = "head"

    detector: str = "deepghs/anime_head_detection/head_detect_v2.0_s"
