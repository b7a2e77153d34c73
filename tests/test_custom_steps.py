"""`filter` (a safe expression, or a function by dotted path) and `apply`, from Python and YAML."""

from __future__ import annotations

import pytest

from captionary import Apply, FilterWhere, Load, ParamError, Workspace, load_pipeline
from captionary.core.expression import Expression


def t_custom_is_dog(item):
    return item.name.startswith("dog/")


def t_custom_brightness(item):
    grey = item.image.convert("L").resize((8, 8))
    return {"brightness": round(sum(grey.tobytes()) / 64 / 255, 3)}


@pytest.mark.parametrize(
    ("text", "props", "expected"),
    [
        ("width >= 512 and height >= 512", {"width": 640, "height": 600}, True),
        ("'dog' in tags and not blurry", {"tags": ["dog"], "blurry": False}, True),
        ("len(caption) < 5 or score > 0.8", {"caption": "a long caption", "score": 0.5}, False),
        ("missing is None", {}, True),
        ("lower(caption) == 'a dog'", {"caption": "A Dog"}, True),
        ("1 < width / height <= 2", {"width": 300, "height": 200}, True),
    ],
)
def test_expressions(text, props, expected):
    assert bool(Expression(text)(props)) is expected


@pytest.mark.parametrize("text", ["__import__('os')", "item.__class__", "open('x')", "[x for x in y]", "a ="])
def test_expressions_refuse_anything_else(text):
    with pytest.raises(ValueError):
        Expression(text)


def test_filter_expression_reads_only_its_names(photos, ws_path):
    step = FilterWhere(expr="width >= 500 and caption")
    assert step.reads == ("width", "caption") and step.reads_image is False
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> step, progress=False)
        kept = sorted(item.name for item in ws.items())
    assert kept == ["dog/00", "dog/01", "dog/02"]
    assert summary.step("filter").dropped == 9


def test_filter_and_apply_functions_from_yaml(photos, tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"workspace: ws\nsteps:\n  - load: {{path: {photos}}}\n"
        f"  - filter: {{function: test_custom_steps.t_custom_is_dog}}\n"
        f"  - apply: {{function: 'test_custom_steps:t_custom_brightness', writes_properties: [brightness]}}\n"
    )
    spec = load_pipeline(pipeline)
    with Workspace(spec.workspace) as ws:
        ws.run(spec.pipeline, progress=False)
        items = list(ws.items())
    assert len(items) == 5 and all(0 < item["brightness"] < 1 for item in items)


def test_bad_custom_steps_fail_before_work(tmp_path):
    with pytest.raises(ParamError, match="exactly one of expr or function"):
        FilterWhere()
    with pytest.raises(ParamError, match="Attribute is not allowed"):
        FilterWhere(expr="caption.lower")
    with pytest.raises(ParamError, match=r"cannot load 'nowhere\.fn'"):
        Apply(function="nowhere.fn", writes_properties=["x"])
