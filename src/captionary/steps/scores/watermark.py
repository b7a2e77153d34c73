"""`watermark`: visible watermarks from an ONNX classifier the user gives, and the invisible watermark
that Stable Diffusion's reference pipelines embed.

Classifier: any ONNX image classifier (e.g. LAION's watermark detector exported to ONNX): the image
is resized to the model's input size, scaled to 0-1 and normalised with `mean`/`std`; the score is
the softmax (or sigmoid) probability of output `watermark_class`.

Invisible watermark (`invisible: true`, `pip install captionary[sd-watermark]`): decodes the DWT-DCT watermark
of Stable Diffusion 1.x/2.x (the bytes "StableDiffusionV1") and SDXL (a fixed 48-bit message) and
writes the fraction of bits that match the closer one (1.0: marked; an unmarked photo scores about
0.4-0.6). It survives only lossless copies: a JPEG re-encode or a resize erases it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, ClassVar, Literal

from captionary.core.fingerprints import model_fingerprint
from captionary.core.images import to_rgb
from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.errors import ConfigError
from captionary.pipeline.step import require
from captionary.steps.scores.image_step import ScoreImageStep

SD_MESSAGES = {
    "sd1": [int(b) for byte in b"StableDiffusionV1" for b in f"{byte:08b}"],
    "sdxl": [int(b) for b in f"{0b101100111110110010010000011110111011000110011110:048b}"],
}
"""The watermark payloads of the CompVis/Stability reference scripts and of diffusers' SDXL."""


class Watermark(ScoreImageStep):
    """Write `watermark` (the classifier's probability, when `model` is given) and `sd_watermark`
    (the invisible Stable Diffusion watermark's bit agreement, when `invisible` is true)."""

    name: ClassVar[str] = "watermark"
    version: ClassVar[int] = 1
    writes: ClassVar[tuple[str, ...]] = ("watermark", "sd_watermark")
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size", "threads", "providers", "model")

    model: str | None = None
    size: int = 256
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    watermark_class: int = 1
    output: Literal["softmax", "sigmoid"] = "softmax"
    invisible: bool = False
    batch_size: int = 16
    threads: int | None = None
    providers: list[str] | None = None

    def validate(self) -> None:
        require(
            bool(self.model) or self.invisible, self, "give `model` (an ONNX classifier) or `invisible: true`"
        )
        if self.model:
            require_module("onnxruntime", "watermark")
            require(Path(self.model).is_file(), self, f"no such file: {self.model}", param="model")
        if self.invisible:
            require_module("imwatermark", "sd-watermark", package="invisible-watermark")
        require(len(self.mean) == 3 and len(self.std) == 3, self, "mean and std take 3 values (R, G, B)")
        require(all(s > 0 for s in self.std), self, "std values must be > 0", param="std")
        require(self.size >= 8, self, f"must be >= 8; got {self.size}", param="size")
        require(self.watermark_class >= 0, self, "must be >= 0", param="watermark_class")

    def model_id(self) -> str:
        return model_fingerprint(self.model) if self.model else "sd-invisible-watermark"

    def setup(self) -> None:
        if self.model:  # the invisible watermark needs no model
            super().setup()

    def draft(self, width: int, height: int) -> float:
        return 2 * self.size / min(width, height)

    def prefetch(self, items: Sequence[Item]) -> None:
        if self.model:  # the invisible watermark needs the full-size pixels, decoded in `sd_watermark`
            super().prefetch(items)

    def load_model(self) -> Any:
        from captionary.backends.onnx import image_input, load_session

        session = load_session(self.model, self.providers, threads=self.threads)
        spec = image_input(session)
        if spec.channels != 3:
            raise ConfigError(f"{self.model}: input {spec.name!r} has {spec.channels} channels, not 3")
        return session, spec

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any]] = [{} for _ in items]
        if self.model:
            for update, score in zip(out, self.classify(items)):
                update["watermark"] = round(float(score), 5)
        if self.invisible:
            for update, item in zip(out, items):
                update["sd_watermark"] = sd_watermark(item)
        return list(out)

    def classify(self, items: Sequence[Item]) -> Any:
        import numpy as np

        session, spec = self.loaded()
        width, height = spec.width or self.size, spec.height or self.size
        mean, std = np.array(self.mean, np.float32), np.array(self.std, np.float32)
        pixels = [np.asarray(image.resize((width, height)), np.float32) for image in self.inputs(items)]
        batch = (np.stack(pixels) / 255 - mean) / std
        if spec.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        feed = np.ascontiguousarray(batch, dtype=spec.dtype)
        if spec.batch == 1:  # a model exported with a fixed batch of one
            logits = np.concatenate([session.run(None, {spec.name: row[None]})[0] for row in feed])
        else:
            logits = session.run(None, {spec.name: feed})[0]
        logits = np.asarray(logits, np.float64).reshape(len(items), -1)
        if self.watermark_class >= logits.shape[1]:
            raise ConfigError(f"{self.model} has {logits.shape[1]} outputs; no class {self.watermark_class}")
        if self.output == "sigmoid":
            return 1 / (1 + np.exp(-logits[:, self.watermark_class]))
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp[:, self.watermark_class] / exp.sum(axis=1)


def sd_watermark(item: Item) -> float:
    """Bit agreement (0-1) with the closer of Stable Diffusion's watermark messages."""
    import numpy as np
    from imwatermark import WatermarkDecoder

    image = to_rgb(item.image)
    if min(image.size) < 256:  # the decoder needs 256 px; smaller images carry no SD watermark
        return 0.0
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    best = 0.0
    for message in SD_MESSAGES.values():
        bits = WatermarkDecoder("bits", len(message)).decode(bgr, "dwtDct")
        best = max(best, sum(int(a) == b for a, b in zip(bits, message)) / len(message))
    return round(best, 4)
