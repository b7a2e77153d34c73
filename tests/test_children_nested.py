"""Children of children in one outcome (`Child.children`): made into items under their parent child,
and cached as nested JSON that reads back the same (with generated blobs found for `gc`)."""

from __future__ import annotations

from captionary.core.children import child_blobs, children_json, make_children, parse_children
from captionary.core.item import Item
from captionary.core.outcome import Child, child_id
from captionary.steps.split.boxes import CROP


def test_nested_children_become_items_under_their_own_parent_and_cache_round_trip():
    head = Child("head0", {"region": [0.25, 0.0, 0.75, 0.5]}, (CROP, {"region": [0.25, 0.0, 0.75, 0.5]}))
    generated = Child("gen", {}, image="b" * 64)
    person = Child("person0", {"region": [0.2, 0.2, 0.8, 0.8]}, (CROP, {"region": [0.2, 0.2, 0.8, 0.8]}))
    person.children = [head, generated]
    parent = Item("a" * 64, props={"caption": "x"}, name="dog/00")
    prefix = b"\x01" * 8
    items = make_children(parent, prefix, [person])
    assert [i.name for i in items] == ["dog/00_person0", "dog/00_person0_head0", "dog/00_person0_gen"]
    made_person, made_head, made_gen = items
    assert made_person.id == child_id(parent.id, prefix, "person0")
    assert made_head.id == child_id(made_person.id, prefix, "head0") and made_head["parent"] == made_person.id
    assert len(made_head.recipe) == 2 and made_head["caption"] == "x"
    assert made_gen.base == "b" * 64 and made_gen.recipe == ()
    text = children_json([person])
    back = parse_children(text, {})
    assert children_json(back) == text
    assert [i.id for i in make_children(parent, prefix, back)] == [i.id for i in items]
    assert child_blobs(text) == ["b" * 64]
