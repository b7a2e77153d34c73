"""`set_caption`: write the caption from a template over the item's properties."""

from __future__ import annotations

import string
from typing import ClassVar

from captionary.core.item import Item
from captionary.errors import ItemError
from captionary.pipeline.step import Map, require


class SetCaption(Map):
    """Set `caption` from a template, e.g. "photo of sks dog, {caption}" ({name} and properties)."""

    name: ClassVar[str] = "set_caption"
    writes: ClassVar[tuple[str, ...]] = ("caption",)
    reads_image: ClassVar[bool] = False

    template: str
    default: str | None = None  # used for a property the item lacks; None: the item fails

    def validate(self) -> None:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.template) if f]
        except ValueError as exc:
            fields = []
            require(False, self, f"invalid template {self.template!r}: {exc}", param="template")
        names = dict.fromkeys(f.split(".")[0].split("[")[0] for f in fields)
        self.fields = tuple(f for f in names if f != "name")

    @property
    def reads(self) -> tuple[str, ...]:  # the properties the template names are this step's inputs
        return self.fields

    def apply(self, item: Item) -> dict[str, str]:
        values = {"name": item.name}
        for field in self.reads:
            if field in item.props:
                values[field] = item.props[field]
            elif self.default is not None:
                values[field] = self.default
            else:
                raise ItemError(f"set_caption: the item has no property {field!r} (set default: to allow)")
        return {"caption": self.template.format_map(values)}
