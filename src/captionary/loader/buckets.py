"""Aspect-ratio buckets with kohya-ss/sd-scripts' rules (`make_bucket_resolutions`, `BucketManager`).

Settings keep kohya's names: `resolution` (the target area is its square, or width x height),
`min_bucket_reso`, `max_bucket_reso`, `bucket_reso_steps`, `bucket_no_upscale`.

- Predefined buckets (the default): the square of the area, then for every width from min to max in
  steps, the largest height in steps (<= max) that keeps the area, both ways round. An image goes to
  the bucket of its own size if there is one, else to the bucket with the closest aspect ratio; it is
  scaled (up or down) to cover the bucket, then cropped.
- `bucket_no_upscale`: no predefined list. An image larger than the area is scaled down to it (keeping
  its aspect ratio; the edge that rounds to steps with the smaller aspect error decides); the bucket is
  that size rounded down to steps, so smaller images are only cropped, never enlarged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from captionary.errors import ConfigError


class BucketChoice(NamedTuple):
    reso: tuple[int, int]  # the bucket (width, height): the size of the training image
    resized_size: tuple[int, int]  # the image is resized to this, then cropped to `reso`
    ar_error: float  # bucket aspect ratio minus image aspect ratio


@dataclass(frozen=True)
class BucketConfig:
    """kohya's bucket settings; `enable=False` sends every image to one `resolution` square."""

    resolution: int | tuple[int, int] = 512
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False
    enable: bool = True

    def __post_init__(self) -> None:
        res = self.resolution
        if isinstance(res, list):
            object.__setattr__(self, "resolution", res := tuple(res))
        width, height = self.max_reso
        if width <= 0 or height <= 0:
            raise ConfigError(f"buckets.resolution must be positive; got {res!r}")
        if self.bucket_reso_steps <= 0:
            raise ConfigError(f"buckets.bucket_reso_steps must be positive; got {self.bucket_reso_steps}")
        if self.enable and not self.bucket_no_upscale:
            if self.min_bucket_reso > min(width, height):
                raise ConfigError(
                    f"buckets.min_bucket_reso ({self.min_bucket_reso}) must be <= the resolution ({res!r})"
                )
            if self.max_bucket_reso < max(width, height):
                raise ConfigError(
                    f"buckets.max_bucket_reso ({self.max_bucket_reso}) must be >= the resolution ({res!r})"
                )

    @property
    def max_reso(self) -> tuple[int, int]:
        res = self.resolution
        return (res, res) if isinstance(res, int) else (int(res[0]), int(res[1]))

    def settings(self) -> dict[str, Any]:
        return asdict(self)


def make_bucket_resolutions(
    max_reso: tuple[int, int], min_size: int = 256, max_size: int = 1024, divisible: int = 64
) -> list[tuple[int, int]]:
    """The predefined buckets for an area of max_reso[0] * max_reso[1], sorted."""
    area = max_reso[0] * max_reso[1]
    side = int(math.sqrt(area) // divisible) * divisible
    resos = {(side, side)}
    for width in range(min_size, max_size + 1, divisible):
        height = min(max_size, int(area // width // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
    return sorted(resos)


class Buckets:
    """Assigns image sizes to buckets (`select`)."""

    def __init__(self, config: BucketConfig):
        self.config = config
        self.steps = config.bucket_reso_steps
        self.max_area = config.max_reso[0] * config.max_reso[1]
        if not config.enable:
            self.predefined: list[tuple[int, int]] = [config.max_reso]
        elif config.bucket_no_upscale:
            self.predefined = []
        else:
            self.predefined = make_bucket_resolutions(
                config.max_reso, config.min_bucket_reso, config.max_bucket_reso, self.steps
            )
        self._set = set(self.predefined)
        self._ratios = [w / h for w, h in self.predefined]

    def select(self, width: int, height: int) -> BucketChoice:
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive; got {width}x{height}")
        ratio = width / height
        if self.predefined:
            reso = (width, height) if (width, height) in self._set else self._closest(ratio)
            scale = reso[1] / height if ratio > reso[0] / reso[1] else reso[0] / width
            resized = (int(width * scale + 0.5), int(height * scale + 0.5))
        else:
            resized = self._downscaled(width, height, ratio)
            reso = (resized[0] - resized[0] % self.steps, resized[1] - resized[1] % self.steps)
            if reso[0] == 0 or reso[1] == 0:
                raise ValueError(
                    f"image {width}x{height} is smaller than one bucket step ({self.steps} px) "
                    "with bucket_no_upscale"
                )
        return BucketChoice(reso, resized, reso[0] / reso[1] - ratio)

    def _closest(self, ratio: float) -> tuple[int, int]:
        errors = [abs(r - ratio) for r in self._ratios]
        return self.predefined[errors.index(min(errors))]  # first of equals, as numpy's argmin

    def _round(self, x: float) -> int:
        x = int(x + 0.5)
        return x - x % self.steps

    def _downscaled(self, width: int, height: int, ratio: float) -> tuple[int, int]:
        if width * height <= self.max_area:
            return width, height
        new_width = math.sqrt(self.max_area * ratio)
        new_height = self.max_area / new_width
        by_width = self._round(new_width)
        by_height = self._round(new_height)
        error_width = abs(by_width / self._round(by_width / ratio) - ratio)
        error_height = abs(self._round(by_height * ratio) / by_height - ratio)
        if error_width < error_height:
            return by_width, int(by_width / ratio + 0.5)
        return int(by_height * ratio + 0.5), by_height
