"""Image transforms: resize to cover the bucket, center or random crop, horizontal flip, normalise."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from captionary.errors import ConfigError
from captionary.loader.buckets import BucketChoice

if TYPE_CHECKING:
    from PIL.Image import Image

INTERPOLATIONS = ("lanczos", "bicubic", "bilinear", "box", "nearest")
CROPS = ("center", "random")


@dataclass(frozen=True)
class ImageTransform:
    """How an image becomes a training tensor: resized to the bucket's `resized_size` (so it covers the
    bucket), cropped to the bucket (`center` or `random`), flipped with probability `flip_p`, and
    scaled to [-1, 1] (`normalize`) or [0, 1]."""

    crop: str = "center"
    flip_p: float = 0.0
    normalize: bool = True
    interpolation: str = "lanczos"

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ConfigError(f"image.crop must be one of {CROPS}; got {self.crop!r}")
        if not 0.0 <= self.flip_p <= 1.0:
            raise ConfigError(f"image.flip_p must be within 0..1; got {self.flip_p}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"image.interpolation must be one of {INTERPOLATIONS}; got {self.interpolation!r}"
            )

    @property
    def is_random(self) -> bool:
        """True when two epochs may see different pixels of the same image."""
        return self.crop == "random" or 0.0 < self.flip_p < 1.0

    def settings(self) -> dict[str, Any]:
        return asdict(self)

    def geometry(self, size: tuple[int, int], choice: BucketChoice, rng: random.Random) -> dict[str, Any]:
        """Where to crop and whether to flip (the random part, decided before any pixel is touched)."""
        trim_x = max(0, choice.resized_size[0] - choice.reso[0])
        trim_y = max(0, choice.resized_size[1] - choice.reso[1])
        if self.crop == "random":
            left, top = rng.randint(0, trim_x), rng.randint(0, trim_y)
        else:
            left, top = trim_x // 2, trim_y // 2
        flip = self.flip_p > 0 and rng.random() < self.flip_p
        return {
            "original_size": tuple(size),
            "resized_size": tuple(choice.resized_size),
            "bucket": tuple(choice.reso),
            "crop_top_left": (top, left),
            "flipped": flip,
        }

    def pixels(self, image: Image, geometry: dict[str, Any]) -> Image:
        """The cropped, flipped PIL image of the bucket's size."""
        from PIL import Image as PILImage

        resample = getattr(PILImage.Resampling, self.interpolation.upper())
        resized = geometry["resized_size"]
        if image.size != resized:
            image = image.resize(resized, resample)
        top, left = geometry["crop_top_left"]
        width, height = geometry["bucket"]
        image = image.crop((left, top, left + width, top + height))
        if geometry["flipped"]:
            image = image.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
        return image

    def to_tensor(self, image: Image) -> Any:
        """A float32 CxHxW tensor in [-1, 1] (or [0, 1] without `normalize`)."""
        import numpy as np
        import torch

        array = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # one copy, writable
        if self.normalize:
            return array.float().div_(127.5).sub_(1.0)
        return array.float().div_(255.0)


def to_pil(tensor: Any, normalized: bool = True) -> Image:
    """The inverse of `ImageTransform.to_tensor`, for previews."""
    from PIL import Image

    values = (
        (tensor.detach().float().cpu() + 1.0) * 127.5 if normalized else tensor.detach().float().cpu() * 255
    )
    array = values.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")
