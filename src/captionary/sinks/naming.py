"""Output names: each item's stem, inside the output folder, stable across runs, unique in one output."""

from __future__ import annotations

from collections.abc import Callable

from captionary.core.item import Item
from captionary.sinks.paths import safe_relative


class Names:
    """Gives each item its output stem (a path without extension under the output folder): from the
    source's relative name (checked by `safe_relative`, made unique if another item holds it), the item
    id, or a number given at first sight that stays with the image in later runs. `claims` (stem -> item
    id) are the stems earlier runs gave out; `key(item, name)` turns a checked source name into a stem,
    `place(item, stem)` puts an id or number where the format wants it (e.g. kohya's `10_dog/`)."""

    def __init__(
        self,
        naming: str,
        claims: dict[str, str],
        key: Callable[[Item, str], str],
        place: Callable[[Item, str], str],
    ):
        self.naming = naming
        self.claims = claims
        self.key = key
        self.place = place
        if naming == "sequential":  # numbers go on from the highest given out
            self.stem_of = {item: stem for stem, item in claims.items()}
            numbers = [int(n) for stem in claims if (n := stem.rpartition("/")[2]).isdigit()]
            self.next_number = max(numbers, default=-1) + 1

    def stem(self, item: Item) -> str:
        if self.naming == "id":
            return self.place(item, item.id[:16])
        if self.naming == "sequential":
            if item.id not in self.stem_of:
                self.stem_of[item.id] = self.place(item, f"{self.next_number:06d}")
                self.next_number += 1
            return self.stem_of[item.id]
        name = self.key(item, safe_relative(item.name or item.id[:16]))
        owner = self.claims.setdefault(name, item.id)
        if owner == item.id:
            return name
        stem = f"{name}-{item.id[:8]}"
        self.claims.setdefault(stem, item.id)
        return stem
