"""`split_persons`: one new item per person in the image (waifuc's PersonSplitAction)."""

from __future__ import annotations

from typing import ClassVar

from captionary.steps.split.detected import OneDetectorSplit


class SplitPersons(OneDetectorSplit):
    """One new item per person found, cropped out of the image.

    `detector`: `hog` (photos, offline) or a YOLO ONNX person detector (a path, or a hub repo such as
    deepghs/anime_person_detection/person_detect_v1.3_s for anime). Parameters: see DetectorSplit."""

    name: ClassVar[str] = "split_persons"
    version: ClassVar[int] = 1
    child_name: ClassVar[str] = "person"

    detector: str = "hog"
