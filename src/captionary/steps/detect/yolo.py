"""A YOLO-style ONNX detector (Ultralytics exports; deepghs' anime person / half-body / head / face
detectors): input `1 x 3 x H x W` RGB in 0-1, output decoded by `yolo_decode`.

The input size is the model's when fixed, else its `imgsz` metadata (Ultralytics writes it), else 640.
Labels come from the model's `names` metadata (`{0: 'person'}`), else `class0`, `class1`, ... An image
is letterboxed into the input (Ultralytics' way) unless the step says `resize: stretch` (imgutils
resizes deepghs' models to the input without padding); the boxes come back right either way, only
what the network sees differs slightly.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import TYPE_CHECKING

from captionary.backends.onnx import image_input, load_session
from captionary.errors import ConfigError
from captionary.steps.detect.base import Detection, Settings
from captionary.steps.detect.yolo_decode import decode, fit, input_tensor

if TYPE_CHECKING:
    from PIL.Image import Image

DEFAULT_SIZE = 640
DEFAULT_MIN_SCORE = 0.3  # imgutils' person default; its head and face detectors use 0.25-0.4


class YoloDetector:
    def __init__(self, path: Path, settings: Settings):
        self.path = path
        self.settings = settings
        providers = list(settings.providers) if settings.providers else None
        self.session = load_session(path, providers, threads=settings.threads)
        spec = image_input(self.session)
        if spec.layout != "NCHW" or spec.channels != 3:
            raise ConfigError(f"{path}: input {spec.name!r} is not 1 x 3 x H x W (a YOLO detector's)")
        if spec.batch not in (None, 1):
            raise ConfigError(f"{path}: fixed batch size {spec.batch}; a detector takes one image")
        self.input_name, self.dtype = spec.name, spec.dtype
        meta = self.session.get_modelmeta().custom_metadata_map
        if spec.width and spec.height:
            self.input_size = (spec.width, spec.height)
        else:
            self.input_size = _imgsz(meta.get("imgsz"), path)
        self.labels = _names(meta.get("names"), path)
        self.output = self.session.get_outputs()[0].name

    def detect(self, image: Image) -> list[Detection]:
        geometry = fit(image.size, self.input_size, self.settings.resize)
        tensor = input_tensor(image, geometry, self.input_size).astype(self.dtype, copy=False)
        (output,) = self.session.run([self.output], {self.input_name: tensor})
        labels = self.labels
        min_score = self.settings.min_score
        boxes, scores, classes = decode(
            output,
            len(labels) if labels else None,
            DEFAULT_MIN_SCORE if min_score is None else min_score,
            self.settings.iou,
        )
        fractions = geometry.to_image(boxes)
        out = []
        for box, score, cls in zip(fractions, scores, classes):
            if box[2] <= box[0] or box[3] <= box[1]:
                continue  # entirely in the padding
            label = labels[int(cls)] if labels and int(cls) < len(labels) else f"class{int(cls)}"
            out.append(Detection(tuple(float(v) for v in box), float(score), label))
        return out


def _imgsz(value: str | None, path: Path) -> tuple[int, int]:
    """Ultralytics' `imgsz` metadata (`[h, w]` or one int) as (w, h); 640 x 640 when absent."""
    if not value:
        return DEFAULT_SIZE, DEFAULT_SIZE
    try:
        parsed = json.loads(value)
        height, width = (parsed, parsed) if isinstance(parsed, int) else parsed
        return int(width), int(height)
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: cannot read its imgsz metadata {value!r}") from None


def _names(value: str | None, path: Path) -> list[str]:
    """Ultralytics' `names` metadata (a Python dict literal `{0: 'person'}`) as a list by index."""
    if not value:
        return []
    try:
        names = ast.literal_eval(value)
        return [str(names[i]) for i in range(len(names))]
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise ConfigError(f"{path}: cannot read its names metadata {value[:80]!r}") from None
