"""Children of fan-out steps: made into items, and written to / read from the cache as JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from captionary.core.hashing import cache_key, canonical_json
from captionary.core.item import Item
from captionary.core.outcome import PARENT_PROPERTY, Child, child_id
from captionary.core.recipes import entry_json, parse_entry

if TYPE_CHECKING:
    from captionary.core.item import ImageTransform


def make_children(parent: Item, step_prefix: bytes, children: list[Child]) -> list[Item]:
    """The items a fan-out step's children become (see `core.outcome.Child`)."""
    out = []
    for child in children:
        props = dict(parent.props) if child.inherit else {}
        if child.props:
            props.update(child.props)
        props[PARENT_PROPERTY] = parent.id
        item = Item(
            child_id(parent.id, step_prefix, child.key),
            parent.image_hash,
            props,
            parent.source,
            f"{parent.name}_{child.name or child.key}",
            parent.store,
            parent.format,
            parent.base,
            parent.recipe,
        )
        if child.transform is not None:
            step, read = child.transform
            reads = canonical_json([read.get(name) for name in step.reads]) if step.reads else ""
            item.image_hash = "~" + cache_key(step.cache_prefix, parent.image_hash, reads).hex()
            item.recipe = (*parent.recipe, (step, read))
        elif child.image is not None:
            item.image_hash = item.base = child.image
            item.recipe = ()
        out.append(item)
    return out


def children_json(children: list[Child] | None) -> str | None:
    """Children as JSON for the cache row: `[[key, name, props, transform, image, inherit], ...]`."""
    if children is None:
        return None
    parts = []
    for c in children:
        transform = entry_json(c.transform) if c.transform is not None else "null"
        parts.append(
            f"[{canonical_json(c.key)},{canonical_json(c.name)},{canonical_json(c.props)},{transform},"
            f"{canonical_json(c.image)},{'true' if c.inherit else 'false'}]"
        )
    return "[" + ",".join(parts) + "]"


def parse_children(text: str | None, steps: dict[str, ImageTransform]) -> list[Child] | None:
    if text is None:
        return None
    return [
        Child(key, props, parse_entry(transform, steps) if transform else None, image, inherit, name)
        for key, name, props, transform, image, inherit in json.loads(text)
    ]


def child_blobs(text: str) -> list[str]:
    """The stored blobs (generated pixels) a cached children JSON refers to (kept by `gc`)."""
    return [image for *_, image, _ in json.loads(text) if image and not image.startswith("~")]
