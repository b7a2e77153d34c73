"""`crop_faces`: one new item per face in the image."""

from __future__ import annotations

from typing import ClassVar

from captionary.steps.split.detected import OneDetectorSplit


class CropFaces(OneDetectorSplit):
    """One new item per face found, cropped out of the image.

    `detector`: `dlib` (CNN) or `dlib-hog` (photos, offline), or a YOLO ONNX face detector (e.g.
    deepghs/anime_face_detection/face_detect_v1.4_s for anime). Parameters: see DetectorSplit."""

    name: ClassVar[str] = "crop_faces"
    version: ClassVar[int] = 1
    child_name: ClassVar[str] = "face"

    detector: str = "dlib"
    max_edge: int = 640  # dlib's CNN costs 1-3 s per 640 px image on one core
