"""Prompt templates over item properties, and the clean-up of generated captions."""

from __future__ import annotations

import re
import string
from typing import Any

from captionary.core.item import Item
from captionary.errors import ItemError


def template_fields(template: str) -> tuple[str, ...]:
    """The property names a `{name}`-style template uses (ValueError for a malformed template)."""
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    return tuple(dict.fromkeys(f.split(".")[0].split("[")[0] for f in fields))


def render(template: str, fields: tuple[str, ...], item: Item, default: str | None, step: str) -> str:
    """Fill a template from the item's properties; lists read as `a, b, c`, `{name}` is the item name."""
    values: dict[str, Any] = {"name": item.name}
    for field in fields:
        if field == "name":
            continue
        if field in item.props:
            values[field] = _text(item.props[field])
        elif default is not None:
            values[field] = default
        else:
            raise ItemError(f"{step}: the prompt uses {{{field}}} but the item has no property {field!r}")
    return template.format_map(values)


def _text(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):  # e.g. tag -> score
        return ", ".join(map(str, value))
    return value


_KINDS = r"(?:image|picture|photo|photograph|illustration|painting|drawing|artwork|scene|render)"
_VERBS = r"(?:shows|depicts|features|displays|presents|portrays|captures|contains|showcases|is of)"
PREAMBLES = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^(?:sure|certainly|of course|okay|ok)[!,.]*\s+",
        r"^here(?:'s| is) (?:a |an |the |my )?[^:\n]{0,60}?(?:description|caption)[^:\n]{0,40}:\s*",
        rf"^(?:this|the) {_KINDS} {_VERBS}\s+",
        rf"^in (?:this|the) {_KINDS}\s*,?\s+",
        r"^(?:this|it) is (?=an? )",
    )
)


def strip_preamble(text: str) -> str:
    """Remove chatty openings ("The image shows ...", "Here is a caption: ...") and wrapping quotes;
    the rest keeps its words, with its first letter capitalised."""
    text = text.strip()
    for _ in range(4):
        before = text
        for pattern in PREAMBLES:
            text = pattern.sub("", text, count=1).lstrip()
        if text == before:
            break
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text[:1].upper() + text[1:]
