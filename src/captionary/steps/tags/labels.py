"""`selected_tags.csv`: the tag list of a WD14-style tagger, one row per model output.

Columns `tag_id,name,category,count`; only `name` and `category` are used. Category 9 is a rating
(general, sensitive, questionable, explicit), 4 a character, 0 a general tag; other categories are
ignored, as in the reference tagger.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from captionary.errors import ConfigError

RATING, CHARACTER, GENERAL = 9, 4, 0


@dataclass(frozen=True)
class TagLabels:
    """Tag names and categories in model output order, with the indexes of each category."""

    names: tuple[str, ...]
    categories: tuple[int, ...]

    def indexes(self, category: int) -> list[int]:
        return [i for i, c in enumerate(self.categories) if c == category]

    def __len__(self) -> int:
        return len(self.names)


def read_labels(path: Path) -> TagLabels:
    """Parse a tag CSV; a ConfigError names the file and line of the first bad row."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read tag list {path}: {exc}") from None
    import csv

    rows = csv.DictReader(text.splitlines())
    missing = {"name", "category"} - set(rows.fieldnames or ())
    if missing:
        header = ",".join(rows.fieldnames or ()) or "nothing"
        raise ConfigError(f"{path}:1: needs columns name and category (found {header})")
    names: list[str] = []
    categories: list[int] = []
    for row in rows:
        where = f"{path}:{rows.line_num}"
        name = (row.get("name") or "").strip()
        if not name:
            raise ConfigError(f"{where}: empty tag name")
        try:
            categories.append(int(row.get("category") or ""))
        except ValueError:
            raise ConfigError(f"{where}: category {row.get('category')!r} is not an integer") from None
        names.append(name)
    if not names:
        raise ConfigError(f"{path}: no tags")
    return TagLabels(tuple(names), tuple(categories))
