"""`caption_variations`: N rewordings of a caption per image, for caption augmentation."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.backends.base import Request, Result
from captionary.core.item import Item
from captionary.errors import ItemError
from captionary.steps.vlm.base import GenerativeStep


class CaptionVariations(GenerativeStep):
    """Write `n` (default 4) rewordings of `source` (default `caption`) to `target` as a list.

    Sampled with temperature 0.8 unless set; text only, so the cache depends on the caption alone.
    """

    name: ClassVar[str] = "caption_variations"
    reads_image: ClassVar[bool] = False
    preset_prompts: ClassVar[bool] = False
    default_prompt: ClassVar[str] = (
        "Reword this image caption. Keep every fact, change the wording and the order. Answer with "
        "the new caption only.\nCaption: {source}"
    )
    default_temperature: ClassVar[float] = 0.8
    default_n: ClassVar[int] = 4

    target: str = "caption_variations"
    source: str = "caption"

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.source, *(f for f in super().reads if f != "source"))))

    def request(self, item: Item) -> Request:
        if self.source not in item.props:
            raise ItemError(f"{self.name}: the item has no property {self.source!r} to reword")
        return super().request(
            Item(
                item.id, item.image_hash, {**item.props, "source": item[self.source]}, item.source, item.name
            )
        )

    def updates(self, result: Result) -> dict[str, Any]:
        updates = super().updates(result)
        if self.generation.n == 1:
            updates[self.target] = [updates[self.target]]
        return updates
