"""YOLO detector inputs and outputs in numpy: the letterbox (or stretch) that fits an image into the
network's input, and the decoding of its output back to boxes in the image, with NMS.

Supported output forms (the batch dimension first, batch of one):

- raw YOLOv8 / YOLO11 (Ultralytics' default ONNX export, deepghs' anime detectors): `[1, 4 + nc, N]`,
  rows `cx, cy, w, h` in input pixels then one score per class (already sigmoid); decoded here:
  score threshold, then per-class NMS;
- end-to-end (Ultralytics `export(nms=True)`, YOLOv10, YOLO26): `[1, N, 6]`, rows `x0, y0, x1, y1,
  score, class` in input pixels, already suppressed; thresholded here (and NMS'd again: harmless).

Not supported: YOLOv5-style outputs with an objectness column (`[1, N, 5 + nc]`), several outputs
(boxes and scores apart), RT-DETR's normalised `[1, N, 4 + nc]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from captionary.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

PAD_VALUE = 114  # Ultralytics' letterbox grey


@dataclass(frozen=True, slots=True)
class Fit:
    """How an image of `size` was put into the network input: scaled by (`sx`, `sy`), then shifted by
    (`dx`, `dy`) input pixels (the letterbox's padding)."""

    size: tuple[int, int]
    sx: float
    sy: float
    dx: float
    dy: float

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes `x0, y0, x1, y1` in input pixels -> fractions of the image's width and height, clipped."""
        import numpy as np

        width, height = self.size
        out = np.empty_like(boxes, dtype=np.float64)
        out[:, [0, 2]] = (boxes[:, [0, 2]] - self.dx) / self.sx / width
        out[:, [1, 3]] = (boxes[:, [1, 3]] - self.dy) / self.sy / height
        return np.clip(out, 0.0, 1.0)


def fit(size: tuple[int, int], input_size: tuple[int, int], mode: Literal["letterbox", "stretch"]) -> Fit:
    """The geometry that puts an image of `size` (w, h) into `input_size` (w, h): `letterbox` keeps the
    aspect ratio and pads both sides evenly (Ultralytics), `stretch` resizes to the input (imgutils)."""
    (width, height), (in_w, in_h) = size, input_size
    if mode == "stretch":
        return Fit(size, in_w / width, in_h / height, 0.0, 0.0)
    scale = min(in_w / width, in_h / height)
    new_w, new_h = round(width * scale), round(height * scale)
    return Fit(size, new_w / width, new_h / height, (in_w - new_w) / 2, (in_h - new_h) / 2)


def input_tensor(image: Image, geometry: Fit, input_size: tuple[int, int]) -> np.ndarray:
    """The network input for `image` placed as `geometry` says: `1 x 3 x H x W` float32 RGB in 0-1."""
    import numpy as np
    from PIL import Image as PILImage

    in_w, in_h = input_size
    new_w, new_h = round(image.width * geometry.sx), round(image.height * geometry.sy)
    resized = image.convert("RGB").resize((new_w, new_h), PILImage.Resampling.BILINEAR)
    canvas = PILImage.new("RGB", (in_w, in_h), (PAD_VALUE,) * 3)
    canvas.paste(resized, (round(geometry.dx - 0.1), round(geometry.dy - 0.1)))
    pixels = np.asarray(canvas, dtype=np.float32) / 255.0
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def decode(
    output: np.ndarray, n_labels: int | None, min_score: float, iou: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes `x0, y0, x1, y1` in input pixels, scores, class indexes) above `min_score`, after NMS,
    best first. `n_labels` None: read from the shape (raw when it is `[4 + nc, N]` with N > 4 + nc).
    ConfigError for an output of another form (see the module docstring)."""
    import numpy as np

    output = np.asarray(output, dtype=np.float32)
    if output.ndim == 3 and output.shape[0] == 1:
        output = output[0]
    if output.ndim != 2:
        raise ConfigError(f"detector output of shape {list(output.shape)}: {_FORMS}")
    if n_labels is None:
        raw = output.shape[1] != 6 and 4 < output.shape[0] < output.shape[1]
        n_labels = output.shape[0] - 4 if raw else int(output[:, 5].max(initial=0)) + 1
    if output.shape[0] == 4 + n_labels and output.shape[1] != 6:  # raw: [4 + nc, N]
        rows = output.T
        class_scores = rows[:, 4:]
        classes = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(rows)), classes]
        cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    elif output.shape[1] == 6:  # end-to-end: [N, 6]
        boxes, scores, classes = output[:, :4], output[:, 4], output[:, 5].round().astype(np.int64)
        if len(classes) and (classes.min() < 0 or classes.max() >= max(n_labels, 1)):
            top = int(classes.max())
            raise ConfigError(f"detector output names class {top}, but it has {n_labels} labels")
    else:
        raise ConfigError(f"detector output of shape {list(output.shape)} for {n_labels} labels: {_FORMS}")
    keep = scores >= min_score
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    order = nms(boxes, scores, classes, iou)
    return boxes[order], scores[order], classes[order]


_FORMS = (
    "expected [1, 4 + classes, N] (raw YOLOv8/11) or [1, N, 6] (end-to-end: x0, y0, x1, y1, score, class)"
)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Indexes of the boxes kept by greedy non-maximum suppression within each class (a box is
    dropped when it overlaps a better one of its class by more than `iou`), best score first."""
    import numpy as np

    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    # boxes of different classes never overlap once shifted apart by more than any coordinate
    offset = classes[:, None].astype(np.float64) * (float(np.abs(boxes).max()) + 1.0) * 2
    shifted = boxes.astype(np.float64) + offset
    x0, y0, x1, y1 = shifted.T
    areas = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores, kind="stable")
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        w = np.maximum(np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]), 0)
        h = np.maximum(np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]), 0)
        inter = w * h
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-12)
        order = rest[overlap <= iou]
    return np.array(kept, dtype=np.int64)
