"""Caption transforms: one caption of several per epoch, caption dropout, tag shuffle with the first
`keep_tokens` fixed, per-tag dropout, a prefix (trigger word) and suffix. Seeded by the caller's rng."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from captionary.errors import ConfigError


@dataclass(frozen=True)
class CaptionTransform:
    """kohya-style caption augmentation.

    choice: one of an image's captions is picked at random (each epoch anew).
    dropout: probability that the whole caption (prefix included) is empty.
    shuffle_tags / keep_tokens: tags (split on `separator`) are shuffled, except the first `keep_tokens`.
    tag_dropout: probability that each tag after the kept ones is left out.
    prefix / suffix: put before / after the (shuffled) tags; never shuffled or dropped on their own.
    """

    dropout: float = 0.0
    shuffle_tags: bool = False
    keep_tokens: int = 0
    tag_dropout: float = 0.0
    prefix: str = ""
    suffix: str = ""
    separator: str = ","

    def __post_init__(self) -> None:
        for name in ("dropout", "tag_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"caption.{name} must be within 0..1; got {value}")
        if self.keep_tokens < 0:
            raise ConfigError(f"caption.keep_tokens must be >= 0; got {self.keep_tokens}")
        if not self.separator:
            raise ConfigError("caption.separator must not be empty")

    @property
    def is_random(self) -> bool:
        """True when the same captions may give different text in two epochs."""
        return self.dropout > 0 or self.shuffle_tags or self.tag_dropout > 0

    def settings(self) -> dict[str, Any]:
        return asdict(self)

    def variants(self, captions: Sequence[str]) -> set[str]:
        """Every text a deterministic transform can give for these captions (plus "" with dropout)."""
        texts = {self._affix(c) for c in captions} or {self._affix("")}
        return texts | {""} if self.dropout > 0 else texts

    def _affix(self, caption: str) -> str:
        parts = [p for p in (self.prefix, caption, self.suffix) if p]
        return (self.separator + " ").join(parts)

    def __call__(self, captions: Sequence[str], rng: random.Random) -> str:
        caption = rng.choice(captions) if len(captions) > 1 else (captions[0] if captions else "")
        if self.dropout > 0 and rng.random() < self.dropout:
            return ""
        if self.shuffle_tags or self.tag_dropout > 0:
            tags = [t.strip() for t in caption.split(self.separator) if t.strip()]
            kept, rest = tags[: self.keep_tokens], tags[self.keep_tokens :]
            if self.tag_dropout > 0:
                rest = [t for t in rest if rng.random() >= self.tag_dropout]
            if self.shuffle_tags:
                rng.shuffle(rest)
            caption = (self.separator + " ").join(kept + rest)
        return self._affix(caption)
