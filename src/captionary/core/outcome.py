"""Outcome: what one step did to one item. Child: one new item a fan-out step made from it.

Plain data, so the cache (core) and every floor above can hold them without knowing the steps.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from captionary.core.item import RecipeEntry


@dataclass(slots=True)
class Child:
    """One item a fan-out step makes from its input (the parent).

    key        unique among one parent's children (an index, a region: "0", "box2", "flip")
    props      property updates on top of what the child inherits (declared in the step's `writes`;
               give `width`/`height` when the image changes size, e.g. a crop)
    transform  (image step, the properties it reads): the child's image is the parent's with this
               step applied (a crop, a flip): a derived image, never stored, replayed from the recipe
    image      or a stored blob hash (generated pixels): the child's image starts from it
    inherit    start from the parent's properties (False: only `parent` and `props`)
    name       the suffix of the child's name (`<parent name>_<name>`; default: the key)
    children   children of this child, made from it (relative to its image): a three-stage split
               (person -> upper body -> head) in one step; their `parent` is this child
    keep       False: this child does not go on itself, only its children do

    Neither transform nor image: the child shows the parent's image as it is.
    """

    key: str
    props: dict[str, Any] | None = None
    transform: RecipeEntry | None = None
    image: str | None = None
    inherit: bool = True
    name: str | None = None
    children: list[Child] | None = None
    keep: bool = True


@dataclass(slots=True)
class Outcome:
    """What one step did to one item: property updates, a new image, a drop reason, or children.

    `image` is a blob hash, or a derived id (`~...`) for an image step's output, which is recomputed
    from the item's recipe when needed instead of being stored. `pixels` carries the new image to the
    next step in the same process only; it is never stored or sent. `children` (fan-out steps) are new
    items made from this one; the item itself goes on unless `dropped` is set.
    """

    props: dict[str, Any] | None = None
    image: str | None = None
    dropped: str | None = None
    pixels: Any = None
    children: list[Child] | None = None


PARENT_PROPERTY = "parent"
"""The id of the item a child was made from (set on every child)."""


def child_id(parent_id: str, step_prefix: bytes, key: str) -> str:
    """A child's id: sha256 of (parent id, the fan-out step's cache prefix, the child's key), so a
    re-run gives the same id, and a different step configuration a different one."""
    return hashlib.sha256(f"{parent_id}\0{step_prefix.hex()}\0{key}".encode()).hexdigest()
