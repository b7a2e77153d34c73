"""Output names: each item's stem, stable across runs and unique within one output."""

from __future__ import annotations

from collections.abc import Callable

from captionary.core.item import Item


class Names:
    """Gives each item its output stem: the source's relative name (made unique if another item holds
    it), the item id, or a number given at first sight that stays with the image in later runs.
    `claims` (stem -> item id) are the stems earlier runs gave out; `key` turns a source name into the
    format's key (e.g. WebDataset keys without dots)."""

    def __init__(self, naming: str, claims: dict[str, str], key: Callable[[str], str] = str):
        self.naming = naming
        self.claims = claims
        self.key = key
        self.stem_of = {item: stem for stem, item in claims.items()}
        numbers = [int(stem) for stem in claims if stem.isdigit()]
        self.next_number = max(numbers, default=-1) + 1

    def stem(self, item: Item) -> str:
        if self.naming == "id":
            return item.id[:16]
        if self.naming == "sequential":
            if item.id not in self.stem_of:
                self.stem_of[item.id] = f"{self.next_number:06d}"
                self.next_number += 1
            return self.stem_of[item.id]
        name = self.key(item.name)
        owner = self.claims.setdefault(name, item.id)
        if owner == item.id:
            return name
        stem = f"{name}-{item.id[:8]}"
        self.claims.setdefault(stem, item.id)
        return stem
