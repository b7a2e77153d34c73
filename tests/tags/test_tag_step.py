"""The `tag` step end to end: a tiny WD14-signature ONNX tagger on real image files and workspaces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_wd14 import build_tagger, solid

from captionary import AddTags, Load, ParamError, Save, Tag, Workspace, parse_pipeline

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@pytest.fixture
def tagger(tmp_path) -> Path:
    return build_tagger(tmp_path / "tagger")


@pytest.fixture
def colours(tmp_path) -> Path:
    folder = tmp_path / "colours"
    for name, rgb in {"red": RED, "green": GREEN, "blue": BLUE, "white": WHITE}.items():
        solid(folder / f"{name}.png", rgb)
    return folder


def tagged(ws_path: Path, source: Path, step: Tag, *extra) -> tuple[dict[str, dict], object]:
    """Run load >> [extra] >> step; return {item name: properties} and the run summary."""
    pipeline = Load(source)
    for s in (*extra, step):
        pipeline = pipeline >> s
    with Workspace(ws_path) as ws:
        summary = ws.run(pipeline, progress=False)
        props = {item.name: item.props for item in ws.items()}  # names: relative paths without suffix
    return props, summary


def assert_same(a: dict[str, dict], b: dict[str, dict]) -> None:
    """Same tags and ratings; scores equal up to float rounding (a batch sums in another order)."""
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name]["tags"], a[name]["rating"]) == (b[name]["tags"], b[name]["rating"]), name
        assert a[name]["tag_scores"] == pytest.approx(b[name]["tag_scores"], abs=2e-4), name


def test_thresholds_rating_order_and_scores(tagger, colours, ws_path):
    props, summary = tagged(ws_path, colours, Tag(model=str(tagger)))
    assert summary.step("tag").computed == 4 and summary.step("tag").failed == 0
    red = props["red"]
    # general > 0.35 and characters > 0.85, ordered by score; 'smile' (0.3), 'kagamine_rin' (0.5)
    # and the category-1 'some_artist' (0.99) stay out
    assert red["tags"] == ["red background", "hatsune miku (vocaloid)", "^_^", "solo", "long hair"]
    assert red["tag_scores"] == {
        "red background": 0.9991,
        "hatsune miku (vocaloid)": 0.9,
        "^_^": 0.8,
        "solo": 0.6,
        "long hair": 0.5,
    }
    assert red["rating"] == "sensitive"
    assert props["green"]["rating"] == "general" and props["blue"]["rating"] == "questionable"
    assert props["green"]["tags"][0] == "green background" and props["blue"]["tags"][0] == "blue background"
    assert props["white"]["tags"][0] == "white background"  # 0.9526
    assert "red background" not in props["white"]["tags"]


def test_other_thresholds_and_mcut(tagger, colours, tmp_path):
    loose, _ = tagged(
        tmp_path / "a", colours, Tag(model=str(tagger), general_threshold=0.25, character_threshold=0.4)
    )
    assert loose["red"]["tags"] == [
        "red background", "hatsune miku (vocaloid)", "^_^", "solo", "long hair", "kagamine rin", "smile",
    ]  # fmt: skip
    # MCut on red's general scores (.999 .8 .6 .5 .3 .007 ...): largest gap .3 -> .007, so smile is in;
    # characters (.9, .5): threshold .7, so only miku
    mcut, _ = tagged(tmp_path / "b", colours, Tag(model=str(tagger), general_mcut=True, character_mcut=True))
    assert mcut["red"]["tags"] == [
        "red background",
        "hatsune miku (vocaloid)",
        "^_^",
        "solo",
        "long hair",
        "smile",
    ]
    none, _ = tagged(tmp_path / "c", colours, Tag(model=str(tagger), characters=False, character_first=True))
    assert "hatsune miku (vocaloid)" not in none["red"]["tags"]
    first, _ = tagged(tmp_path / "d", colours, Tag(model=str(tagger), character_first=True, max_tags=3))
    assert first["red"]["tags"] == ["hatsune miku (vocaloid)", "red background", "^_^"]


def test_cleanup_options_exclude_and_merge(tagger, colours, tmp_path):
    raw, _ = tagged(
        tmp_path / "a",
        colours,
        Tag(
            model=str(tagger), replace_underscores=False, escape_brackets=True, exclude=["long hair", "solo"]
        ),
    )
    assert raw["red"]["tags"] == ["red_background", "hatsune_miku_\\(vocaloid\\)", "^_^"]
    escaped, _ = tagged(
        tmp_path / "e",
        colours,
        Tag(
            model=str(tagger),
            escape_brackets=True,
            exclude=["hatsune miku \\(vocaloid\\)"],
            rating_tag="first",
        ),
    )
    assert escaped["red"]["tags"] == ["sensitive", "red background", "^_^", "solo", "long hair"]
    last, _ = tagged(tmp_path / "f", colours, Tag(model=str(tagger), rating_tag="last", max_tags=2))
    assert last["green"]["tags"] == ["green background", "hatsune miku (vocaloid)", "general"]
    merged, _ = tagged(
        tmp_path / "b", colours, Tag(model=str(tagger), merge=True), AddTags(tags=["sks", "solo"])
    )
    assert merged["red"]["tags"] == [
        "sks",
        "solo",
        "red background",
        "hatsune miku (vocaloid)",
        "^_^",
        "long hair",
    ]
    assert "sks" not in merged["red"]["tag_scores"]  # scores are the model's only
    replaced, _ = tagged(tmp_path / "c", colours, Tag(model=str(tagger), force=True), AddTags(tags=["sks"]))
    assert "sks" not in replaced["red"]["tags"] and replaced["red"]["tags"][0] == "red background"
    # the default: an item that has tags (a web source's) keeps them; only untagged items are tagged
    kept, _ = tagged(tmp_path / "d", colours, Tag(model=str(tagger)), AddTags(tags=["sks"]))
    assert kept["red"]["tags"] == ["sks"] and "tag_scores" not in kept["red"]
    gaps, _ = tagged(tmp_path / "g", colours, Tag(model=str(tagger)))
    assert gaps["red"]["tags"][0] == "red background"
    with pytest.raises(ParamError, match="merge and force"):
        Tag(model=str(tagger), merge=True, force=True)


def test_batching_keeps_each_image_with_its_own_scores(tagger, colours, photos, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(photos, mixed)
    shutil.copytree(colours, mixed / "colours")
    one, s1 = tagged(tmp_path / "a", mixed, Tag(model=str(tagger), batch_size=1))
    five, s5 = tagged(tmp_path / "b", mixed, Tag(model=str(tagger), batch_size=5))
    assert s1.step("tag").computed == s5.step("tag").computed == 16
    assert_same(one, five)
    assert five["colours/red"]["rating"] == "sensitive"
    assert five["colours/green"]["tags"][0] == "green background"
    fixed = build_tagger(tmp_path / "fixed", batch=1, names=("input", "output"))  # one image a run, v3 names
    single, _ = tagged(tmp_path / "c", mixed, Tag(model=str(fixed), batch_size=5))
    assert_same(single, five)


def test_second_run_computes_nothing_and_loads_no_model(tagger, colours, ws_path, monkeypatch):
    first, _ = tagged(ws_path, colours, Tag(model=str(tagger)))
    import captionary.steps.tags.tag as tag_module

    loads = []
    real = tag_module.load_session
    monkeypatch.setattr(tag_module, "load_session", lambda *a, **k: loads.append(a) or real(*a, **k))
    again, summary = tagged(ws_path, colours, Tag(model=str(tagger), batch_size=3, threads=1))
    assert (summary.step("tag").computed, summary.step("tag").cached) == (0, 4)
    assert again == first and loads == []
    moved = tagger.rename(tagger.parent / "moved")  # same files elsewhere: same cache
    _, summary = tagged(ws_path, colours, Tag(model=str(moved)))
    assert summary.step("tag").computed == 0
    _, summary = tagged(ws_path, colours, Tag(model=str(moved), general_threshold=0.5))
    assert summary.step("tag").computed == 4 and len(loads) == 1
    build_tagger(moved, extra_outputs=0, size=224)  # a different model in the same folder
    _, summary = tagged(ws_path, colours, Tag(model=str(moved)))
    assert summary.step("tag").computed == 4


def test_tags_reach_kohya_metadata(tagger, colours, ws_path, tmp_path):
    out = tmp_path / "out"
    with Workspace(ws_path) as ws:
        ws.run(Load(colours) >> Tag(model=str(tagger)) >> Save(out, format="kohya_json"), progress=False)
    entries = json.loads((tmp_path / "out.json").read_text())  # kohya's --in_json, beside the folder
    red = entries["red"]
    assert red["tags"] == "red background, hatsune miku (vocaloid), ^_^, solo, long hair"


def test_bad_model_paths_fail_before_any_work(tagger, tmp_path):
    with pytest.raises(ParamError, match=r"tag\.model: no such folder or file.*'nowhere'"):
        Tag(model="nowhere")
    with pytest.raises(ParamError, match=r"tag\.model: no such folder or file.*does-not-exist"):
        Tag(model=str(tmp_path / "does-not-exist"))
    (tagger / "selected_tags.csv").unlink()
    with pytest.raises(ParamError, match=r"tagger file not found: .*selected_tags\.csv"):
        Tag(model=str(tagger))
    (tagger / "selected_tags.csv").write_text("tag_id,name,category,count\n1,solo,zero,5\n")
    with pytest.raises(ParamError, match=r"selected_tags\.csv:2: category 'zero' is not an integer"):
        Tag(model=str(tagger))
    with pytest.raises(ParamError, match=r"tag\.general_threshold: must be between 0 and 1"):
        Tag(model="SmilingWolf/wd-vit-tagger-v3", general_threshold=35)
    with pytest.raises(ParamError, match=r"tag\.providers: \['NoSuchExecutionProvider'\] not available"):
        Tag(model="SmilingWolf/wd-vit-tagger-v3", providers=["NoSuchExecutionProvider"])


def test_hub_repo_ids_are_keyed_by_revision_without_downloading():
    a = Tag(model="SmilingWolf/wd-vit-tagger-v3")
    b = Tag(model="SmilingWolf/wd-vit-tagger-v3", revision="v2.0")
    assert a.model_id() == "hf:SmilingWolf/wd-vit-tagger-v3@main"
    assert b.model_id() == "hf:SmilingWolf/wd-vit-tagger-v3@v2.0" and a.cache_prefix != b.cache_prefix


def test_unloadable_or_mismatched_model_fails_each_item_with_the_file_named(tagger, colours, tmp_path):
    (tagger / "model.onnx").write_bytes(b"\x00garbage, not an onnx file")
    _, summary = tagged(tmp_path / "a", colours, Tag(model=str(tagger)))
    assert summary.step("tag").failed == 4
    assert all(
        "cannot load ONNX model" in e["reason"] and "model.onnx" in e["reason"] for e in summary.errors
    )
    wrong = build_tagger(tmp_path / "wrong", extra_outputs=2)
    _, summary = tagged(tmp_path / "b", colours, Tag(model=str(wrong)))
    assert summary.step("tag").failed == 4
    assert "outputs 17 scores but" in summary.errors[0]["reason"]
    assert "selected_tags.csv lists 15 tags" in summary.errors[0]["reason"]
    nchw = build_tagger(tmp_path / "nchw", channels_first=True)
    _, summary = tagged(tmp_path / "c", colours, Tag(model=str(nchw)))
    assert summary.step("tag").failed == 4
    assert "input 'input_1:0' is not NHWC with 3 channels" in summary.errors[0]["reason"]


def test_yaml_pipeline_with_tag_step(tagger, colours, tmp_path):
    text = f"""
workspace: ws
steps:
  - load: {{path: {colours}}}
  - tag: {{model: {tagger}, general_threshold: 0.5, exclude: [solo]}}
"""
    plan = parse_pipeline(text, base=tmp_path)
    with Workspace(plan.workspace) as ws:
        ws.run(plan.pipeline, progress=False)
        red = next(item for item in ws.items() if item.name.startswith("red"))
    assert red["tags"] == ["red background", "hatsune miku (vocaloid)", "^_^"]
    bad = text.replace("general_threshold: 0.5", "general_threshold: high")
    with pytest.raises(ParamError, match=r"line 5: tag\.general_threshold: expected float"):
        parse_pipeline(bad, base=tmp_path)


def test_hub_repo_id_is_read_from_the_hugging_face_cache_offline(tagger, colours, tmp_path, monkeypatch):
    """The hub path through huggingface_hub itself: a standard cache layout, HF_HUB_OFFLINE."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-cache" / "models--SmilingWolf--wd-vit-tagger-v3"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tagger, repo / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    props, summary = tagged(tmp_path / "a", colours, Tag(model="SmilingWolf/wd-vit-tagger-v3"))
    assert summary.step("tag").computed == 4
    assert props["red"]["tags"][0] == "red background" and props["red"]["rating"] == "sensitive"
    _, summary = tagged(tmp_path / "b", colours, Tag(model="SmilingWolf/not-cached"))
    assert summary.step("tag").failed == 4
    assert (
        "'SmilingWolf/not-cached' is not a local folder and cannot be fetched" in summary.errors[0]["reason"]
    )


def test_tags_a_resized_image(tagger, colours, ws_path):
    from captionary import Resize

    props, _ = tagged(ws_path, colours, Tag(model=str(tagger)), Resize(max_edge=16))
    assert props["red"]["width"] == 16 and props["red"]["tags"][0] == "red background"


@pytest.mark.gpu
def test_cuda_provider_is_used_when_present(tagger):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    from captionary.backends.onnx import load_session

    assert load_session(tagger / "model.onnx").get_providers()[0] == "CUDAExecutionProvider"


def test_apply_batch_without_prefetch_matches_the_run(tagger, colours, ws_path):
    """Called directly (no stage queued the batch ahead), the step prepares images itself."""
    props, _ = tagged(ws_path, colours, Tag(model=str(tagger)))
    step = Tag(model=str(tagger), force=True)  # the items already have the run's tags: tag them again
    with Workspace(ws_path) as ws:
        items = sorted(ws.items(), key=lambda item: item.name)
        step.setup()
        try:
            updates = step.apply_batch(items)
        finally:
            step.teardown()
    assert [u["tags"] for u in updates] == [props[item.name]["tags"] for item in items]
    assert [u["rating"] for u in updates] == [props[item.name]["rating"] for item in items]


def test_fast_decode_tags_large_photos_like_the_reference(tagger, photos, tmp_path):
    from PIL import Image

    big = tmp_path / "big"
    big.mkdir()
    for i, path in enumerate(sorted(photos.rglob("*.jpg"))[:4]):  # 4x upscaled: JPEG DCT scaling applies
        with Image.open(path) as image:
            image.convert("RGB").resize((image.width * 4, image.height * 4)).save(
                big / f"{i}.jpg", quality=92
            )
    exact, _ = tagged(tmp_path / "a", big, Tag(model=str(tagger)))
    fast, summary = tagged(tmp_path / "b", big, Tag(model=str(tagger), fast_decode=True))
    assert summary.step("tag").computed == 4  # its own cache entries: the pixels differ slightly
    for name in exact:
        assert fast[name]["tag_scores"] == pytest.approx(exact[name]["tag_scores"], abs=0.02)
        assert fast[name]["rating"] == exact[name]["rating"]
    with Workspace(tmp_path / "a") as ws:
        items = list(ws.items())
        raw_exact = Tag(model=str(tagger)).scores(items)
        raw_fast = Tag(model=str(tagger), fast_decode=True).scores(items)
    assert not np.array_equal(raw_exact, raw_fast)  # the JPEGs were decoded at another scale
    assert np.allclose(raw_exact, raw_fast, atol=0.02)
