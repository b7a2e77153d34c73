"""Children of fan-out steps: made into items, and written to / read from the cache as JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from captionary.core.hashing import cache_key, canonical_json
from captionary.core.item import Item, as_run
from captionary.core.outcome import PARENT_PROPERTY, Child, child_id
from captionary.core.recipes import entry_json, parse_entry

if TYPE_CHECKING:
    from captionary.core.item import ImageTransform


def make_children(parent: Item, step_prefix: bytes, children: list[Child]) -> list[Item]:
    """The items a fan-out step's children become (see `core.outcome.Child`): each child (unless
    `keep` is False), then the items of its own children, made from it."""
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
            item.recipe = (*parent.recipe, (as_run(step, parent), read))
        elif child.image is not None:
            item.image_hash = item.base = child.image
            item.recipe = ()
        if child.keep:
            out.append(item)
        if child.children:
            out.extend(make_children(item, step_prefix, child.children))
    return out


def children_json(children: list[Child] | None) -> str | None:
    """Children as JSON for the cache row: `[[key, name, props, transform, image, inherit], ...]`, a
    child with children of its own or `keep: false` followed by `[children], keep`."""
    if children is None:
        return None
    parts = []
    for c in children:
        transform = entry_json(c.transform) if c.transform is not None else "null"
        nested = (
            "" if c.children is None and c.keep else f",{children_json(c.children or [])},{_bool(c.keep)}"
        )
        parts.append(
            f"[{canonical_json(c.key)},{canonical_json(c.name)},{canonical_json(c.props)},{transform},"
            f"{canonical_json(c.image)},{_bool(c.inherit)}{nested}]"
        )
    return "[" + ",".join(parts) + "]"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def parse_children(text: str | None, steps: dict[str, ImageTransform]) -> list[Child] | None:
    if text is None:
        return None
    return _parse(json.loads(text), steps)


def _parse(values: list, steps: dict[str, ImageTransform]) -> list[Child]:
    out = []
    for key, name, props, transform, image, inherit, *nested in values:
        entry = parse_entry(transform, steps) if transform else None
        child = Child(key, props, entry, image, inherit, name)
        if nested:
            child.children, child.keep = _parse(nested[0], steps) or None, nested[1]
        out.append(child)
    return out


def child_blobs(text: str) -> list[str]:
    """The stored blobs (generated pixels) a cached children JSON refers to (kept by `gc`)."""
    return list(_blobs(json.loads(text)))


def _blobs(values: list):
    for _key, _name, _props, _transform, image, _inherit, *nested in values:
        if image and not image.startswith("~"):
            yield image
        if nested:
            yield from _blobs(nested[0])
