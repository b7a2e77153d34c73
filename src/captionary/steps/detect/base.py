"""Detectors behind one small protocol: an image in, boxes with scores and labels out.

Boxes are `[x0, y0, x1, y1]` fractions of the image's width and height (as `faces` writes
`face_boxes`), so they do not depend on the scale the detector saw the image at. A detector is named
by one string (`detector:` in the steps):

    hog                    OpenCV's bundled HOG people detector (photos of upright people; offline)
    dlib | dlib-hog        dlib's face detector, CNN (MMOD) or HOG (photo faces; offline)
    path/to/model.onnx     a YOLO-style ONNX detector on disk (or a folder holding model.onnx)
    owner/repo[/sub/path]  the same from the Hugging Face hub: `<sub/path>/model.onnx` (deepghs' layout,
                           e.g. deepghs/anime_head_detection/head_detect_v2.0_s) or a path ending .onnx

`detector_spec(name)` checks a name when the step is built; `DetectorSpec.open()` loads it (in the
step's model thread); `DetectorSpec.identity()` is what enters the cache key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from captionary.errors import ConfigError

if TYPE_CHECKING:
    from PIL.Image import Image

REPO = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:/(?P<path>[\w./-]+))?$")


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object: its box as fractions of the image, the detector's score, its label."""

    box: tuple[float, float, float, float]
    score: float
    label: str

    def as_json(self) -> dict[str, object]:
        return {"box": [round(v, 4) for v in self.box], "score": round(self.score, 4), "label": self.label}


class Detector(Protocol):
    def detect(self, image: Image) -> list[Detection]:
        """Objects in `image` (RGB), best score first."""
        ...


@dataclass(frozen=True)
class Settings:
    """What every detector is given: its score floor (None: the detector's own default), the IoU above
    which NMS drops the lesser of two boxes, how a YOLO detector fits the image into its input, the
    hub revision, and onnxruntime's providers and threads."""

    min_score: float | None = None
    iou: float = 0.5
    resize: Literal["letterbox", "stretch"] = "letterbox"
    revision: str | None = None
    providers: tuple[str, ...] | None = None
    threads: int | None = None


@dataclass(frozen=True)
class DetectorSpec:
    """A checked detector name: `kind` is hog, dlib, dlib-hog, onnx (a local file) or hub."""

    name: str
    kind: str
    path: Path | None = None  # onnx: the model file
    repo: str | None = None  # hub: the repo id and the file in it
    file: str | None = None

    def identity(self, settings: Settings) -> str:
        """The detector's part of the cache key: what it is and which weights."""
        from captionary.core.fingerprints import file_fingerprint

        if self.kind == "hog":
            import cv2

            return f"opencv-hog-people@{cv2.__version__}"
        if self.kind == "dlib":
            from captionary.steps.scores.faces import weights_path

            return f"dlib-mmod:{file_fingerprint(weights_path(None))}"
        if self.kind == "dlib-hog":
            return "dlib-hog-frontal"
        if self.kind == "onnx":
            return f"yolo:{file_fingerprint(self.path)}"
        return f"hf:{self.repo}/{self.file}@{settings.revision or 'main'}"

    def open(self, settings: Settings) -> Detector:
        """Load the detector (may download a hub model on first use)."""
        if self.kind == "hog":
            from captionary.steps.detect.opencv_people import HogPeople

            return HogPeople(settings)
        if self.kind in ("dlib", "dlib-hog"):
            from captionary.steps.detect.dlib_faces import DlibFaces

            return DlibFaces(self.kind == "dlib", settings)
        from captionary.steps.detect.yolo import YoloDetector

        path = self.path if self.kind == "onnx" else hub_file(self.repo, self.file, settings.revision)
        return YoloDetector(path, settings)


def detector_spec(name: str) -> DetectorSpec:
    """The detector a step names (see the module docstring); ConfigError naming what is wrong."""
    if name in ("hog", "dlib", "dlib-hog"):
        return DetectorSpec(name, name)
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / "model.onnx"
        if not path.is_file():
            raise ConfigError(f"no model.onnx in the folder {name}")
        return DetectorSpec(name, "onnx", path=path)
    if path.is_file():
        if path.suffix != ".onnx":
            raise ConfigError(f"{name} is not an .onnx file")
        return DetectorSpec(name, "onnx", path=path)
    match = REPO.match(name)
    if match is None or name.startswith((".", "~", "/")) or (name.endswith(".onnx") and not match["path"]):
        raise ConfigError(
            f"{name!r}: not hog, dlib or dlib-hog, no such .onnx file or folder, "
            "and not a Hugging Face repo id (owner/repo[/folder])"
        )
    inner = match["path"] or ""
    file = inner if inner.endswith(".onnx") else f"{inner}/model.onnx".lstrip("/")
    return DetectorSpec(name, "hub", repo=match["repo"], file=file)


def hub_file(repo: str | None, file: str | None, revision: str | None) -> Path:
    """A detector's model file from the Hugging Face hub (downloaded once into its cache)."""
    from captionary.core.optional import require

    hub = require("huggingface_hub", "detect")
    try:
        return Path(hub.hf_hub_download(repo, file, revision=revision))
    except Exception as exc:  # offline, unknown repo or file, no access: the hub says which
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise ConfigError(f"cannot fetch {file} from the Hugging Face repo {repo!r}: {reason}") from None
