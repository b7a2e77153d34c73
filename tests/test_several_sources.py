"""Several sources merged in order; the same bytes from two sources are one item with both origins."""

from __future__ import annotations

import json
import shutil

import pytest

from captionary import ConfigError, Load, LoadManifest, Resize, Save, Workspace, concat
from captionary.pipeline.yaml_loader import parse_pipeline
from conftest import tree


@pytest.fixture
def two_folders(photos, tmp_path):
    """a/: the dogs; b/: the cats plus a renamed copy of dog/01 (the same bytes)."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(photos / "dog", a)
    shutil.copytree(photos / "cat", b)
    shutil.copy(photos / "dog" / "01.jpg", b / "same_dog.jpg")
    return a, b


def test_two_folders_merge_in_order_and_a_duplicate_is_one_item_with_two_origins(two_folders, tmp_path):
    a, b = two_folders
    pipeline = Load(a) + Load(b) >> Resize(max_edge=64) >> Save(tmp_path / "out")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(pipeline, workers=0, progress=False)
        items = {item.source: item for item in ws.items()}
        again = ws.run(pipeline, workers=0, progress=False)
    first, second = summary.step("load"), summary.step("load#2")
    assert (first.n_in, first.n_out) == (5, 5)
    assert (second.n_in, second.n_out, second.dropped) == (4, 3, 1)
    assert summary.step("resize").n_in == 8 and again.computed == 0
    assert len(items) == 8 and str(b / "same_dog.jpg") not in items  # one item, its first source's
    dog = items[str(a / "01.jpg")]
    assert dog["origins"] == [
        {"step": "load", "source": str(a / "01.jpg")},
        {"step": "load#2", "source": str(b / "same_dog.jpg")},
    ]
    assert items[str(b / "04.jpg")]["origins"] == [{"step": "load#2", "source": str(b / "04.jpg")}]
    assert len([p for p in tree(tmp_path / "out") if p.endswith(".jpg")]) == 8


def test_concat_of_a_folder_and_a_manifest_and_yaml(two_folders, tmp_path):
    a, b = two_folders
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(json.dumps({"image": str(p), "caption": "listed"}) + "\n" for p in sorted(b.glob("*.jpg")))
    )
    with Workspace(tmp_path / "ws") as ws:
        ws.run(concat(Load(a), LoadManifest(manifest)) >> Resize(max_edge=32), workers=0, progress=False)
        captions = {item.source: item.get("caption") for item in ws.items()}
    assert len(captions) == 8 and captions[f"{manifest}::{b / '04.jpg'}"] == "listed"
    spec = parse_pipeline(
        f"workspace: ws\nsteps:\n  - load: {{path: {a}}}\n  - load_manifest: {{path: {manifest}}}\n"
        "  - set_caption: {template: x}\n",
        base=tmp_path,
    )
    assert [s.name for s in spec.pipeline] == ["load", "load_manifest", "set_caption"]
    with pytest.raises(ConfigError, match=r"line 5.*can only come at the start"):
        parse_pipeline(
            f"workspace: ws\nsteps:\n  - load: {{path: {a}}}\n  - set_caption: {{template: x}}\n"
            f"  - load: {{path: {b}}}\n",
            base=tmp_path,
        )


def test_dropping_the_second_source_forgets_its_origins(two_folders, tmp_path):
    a, b = two_folders
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(a) + Load(b), progress=False)
        assert len(ws.origins(next(i.id for i in ws.items() if i.source == str(a / "01.jpg")))) == 2
        ws.run(Load(a), progress=False)
        assert [i.get("origins") for i in ws.items()] == [None] * 5
