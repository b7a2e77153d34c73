"""`split_persons`: one new item per person in the image (waifuc's PersonSplitAction)."""

from __future__ import annotations

from typing import ClassVar

from captionary.steps.split.detected import OneDetectorSplit


class SplitPersons(OneDetectorSplit):
    """One new item per person, cropped (`detector`: `hog` for photos, offline; or a YOLO ONNX person
    detector, e.g. deepghs/anime_person_detection/person_detect_v1.3_s for anime)."""

    name: ClassVar[str] = "split_persons"
    version: ClassVar[int] = 1
    child_name: ClassVar[str] = "person"

    detector: str = "hog"
