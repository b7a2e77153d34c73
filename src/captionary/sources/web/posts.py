"""A post as every site adapter returns it, and what `load_booru` makes of it: ratings in one
vocabulary, tags cleaned and ordered as trainers expect."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from captionary.steps.tags.cleanup import clean_tag

RATINGS = ("general", "sensitive", "safe", "questionable", "explicit")
"""The `rating` values items get: the WD14 tagger's words, plus `safe` for three-level sites
(Moebooru, e621, older Gelbooru), whose `s` covers both general and sensitive."""

RATING_LETTERS = {"g": "general", "s": "sensitive", "q": "questionable", "e": "explicit"}
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "avif", "tif", "tiff"})
DEFAULT_TAG_ORDER = ("character", "copyright", "artist", "general")


@dataclass
class Post:
    """One post of a site, in the shape every adapter produces.

    `tags` maps a category (`general`, `character`, `copyright`, `artist`, `meta`, or a site's own,
    such as e621's `species`) to the raw tag names in the site's order. `rating` is one of `RATINGS`
    (or None). `file_url` is the original file, `sample_url` the site's large sample (None: use the
    original). `md5` is the hex digest of the original file where the site gives one."""

    id: str
    file_url: str | None
    tags: dict[str, list[str]] = field(default_factory=dict)
    rating: str | None = None
    score: int | None = None
    source: str | None = None
    md5: str | None = None
    sample_url: str | None = None
    ext: str | None = None
    width: int | None = None
    height: int | None = None
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Post:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def all_tags(self) -> Iterable[str]:
        for names in self.tags.values():
            yield from names


def rating_word(value: Any, *, three_levels: bool = False) -> str | None:
    """A site's rating (`g`, `s`, `safe`, `Questionable`, ...) as one of `RATINGS`; a three-level
    site's `s` is `safe`."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().lower()
    if text == "s" and three_levels:
        return "safe"
    text = RATING_LETTERS.get(text, text)
    return text if text in RATINGS else None


def wanted_ratings(values: Iterable[str]) -> frozenset[str]:
    """The `rating:` filter (letters or words) as words; `safe` posts match a filter naming general or
    sensitive (a three-level site cannot tell them apart)."""
    words = set()
    for value in values:
        text = value.strip().lower()
        word = RATING_LETTERS.get(text, text)
        if word not in RATINGS:
            raise ValueError(f"unknown rating {value!r} (use g, s, q, e or {', '.join(RATINGS)})")
        words.add(word)
    if words & {"general", "sensitive"}:
        words.add("safe")
    return frozenset(words)


def tag_key(name: str) -> str:
    """The spelling tags are compared in (`long_hair`, `long hair` and `long hair` match)."""
    return clean_tag(name.strip().lower().replace("\\(", "(").replace("\\)", ")"))


@dataclass(frozen=True)
class TagStyle:
    """How a post's tags become item properties."""

    order: tuple[str, ...] = DEFAULT_TAG_ORDER
    replace_underscores: bool = True
    escape_brackets: bool = False
    exclude: frozenset[str] = frozenset()  # tag_key spellings

    def name(self, raw: str) -> str:
        return clean_tag(raw, underscores=self.replace_underscores, escape=self.escape_brackets)

    def props(self, post: Post) -> dict[str, Any]:
        """`tags` (the categories of `order`, in that order) and `<category>_tags` for every category."""
        by_category = {
            category: [self.name(t) for t in names if tag_key(t) not in self.exclude]
            for category, names in post.tags.items()
        }
        ordered = [name for category in self.order for name in by_category.get(category, [])]
        props: dict[str, Any] = {"tags": list(dict.fromkeys(ordered))}
        for category, names in by_category.items():
            props[f"{category}_tags"] = names
        return props
