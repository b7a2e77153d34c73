"""Tag names as trainers expect them: spaces for underscores (kaomoji kept), escaped parentheses."""

from __future__ import annotations

KAOMOJI = frozenset(
    {
        "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9",
        ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||",
    }
)  # fmt: skip
"""Danbooru tags whose underscores are part of the face (the list the WD14 taggers use)."""


def clean_tag(name: str, *, underscores: bool = True, escape: bool = False) -> str:
    """`long_hair` -> `long hair` (not `^_^`); with `escape`, `(` -> `\\(` and `)` -> `\\)`."""
    if underscores and name not in KAOMOJI:
        name = name.replace("_", " ")
    if escape:
        name = name.replace("(", "\\(").replace(")", "\\)")
    return name
