"""Recipes as JSON: the image steps that reproduce a derived image, written to the database and built
again when read back.

Core knows no step classes: the pipeline floor registers how to build a step from its name and
parameters (`set_step_builder`, done when `captionary.pipeline.registry` is imported).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from captionary.core.hashing import canonical_json
from captionary.core.item import ImageTransform, RecipeEntry

_build: Callable[[str, dict[str, Any]], ImageTransform] | None = None


def set_step_builder(build: Callable[[str, dict[str, Any]], ImageTransform]) -> None:
    """Register how a recipe's step is built from its name and parameters (the step registry)."""
    global _build
    _build = build


def build_step(name: str, params: dict[str, Any]) -> ImageTransform:
    if _build is None:
        raise RuntimeError("no step builder registered: import captionary first")
    return _build(name, params)


def entry_json(entry: RecipeEntry) -> str:
    """One recipe entry as JSON: `[step, params, read properties]`."""
    step, read = entry
    return f"[{step.recipe_json},{canonical_json(read)}]"


def recipe_json(recipe: tuple[RecipeEntry, ...]) -> str | None:
    """A recipe as JSON (`[[step, params, read properties], ...]`), for `Workspace.items()`."""
    if not recipe:
        return None
    return "[" + ",".join(entry_json(entry) for entry in recipe) + "]"


def parse_entry(value: list, steps: dict[str, ImageTransform]) -> RecipeEntry:
    """A recipe entry from its JSON value; `steps` memoises built steps (each distinct one built once)."""
    name, params, read = value
    key = name + json.dumps(params, sort_keys=True)
    if key not in steps:
        steps[key] = build_step(name, params)
    return steps[key], read


def parse_recipe(text: str | None, steps: dict[str, ImageTransform]) -> tuple[RecipeEntry, ...]:
    """Rebuild a stored recipe's steps so derived images can be recomputed."""
    if not text:
        return ()
    return tuple(parse_entry(value, steps) for value in json.loads(text))
