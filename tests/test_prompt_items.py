"""Items without pixels yet: prompts flow through text steps, pixel steps refuse them per item, and a
step that stores an image turns them into ordinary image items."""

from __future__ import annotations

import pytest

from captionary import (
    FilterWhere,
    ItemError,
    LoadPrompts,
    MapCaption,
    ParamError,
    Resize,
    SetCaption,
    Workspace,
)
from captionary.core.item import NO_IMAGE_ERROR
from captionary.sources.prompts import derived_seed
from steps_for_fanout import TPaint
from steps_for_ray import TRayMeanColour


def test_prompts_from_txt_get_stable_seeds_and_flow_through_text_steps(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog on a beach\n# a comment\n\n  a red teapot  \n")
    pipeline = (
        LoadPrompts(prompts, n=2)
        >> SetCaption(template="{prompt}, photo")
        >> MapCaption(replace={"photo": "photograph"})
        >> FilterWhere(expr="prompt != 'a red teapot'")
    )
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(pipeline, progress=False)
        items = {item.name: item for item in ws.items(include_dropped=True)}
        again = ws.run(pipeline, progress=False)
    assert not summary.errors and again.computed == 0
    assert sorted(items) == ["prompts_00001_0", "prompts_00001_1", "prompts_00002_0", "prompts_00002_1"]
    assert items["prompts_00002_1"]["dropped_by"] == "filter" and "dropped_by" not in items["prompts_00001_1"]
    first = items["prompts_00001_0"]
    assert first["prompt"] == "a dog on a beach" and first["caption"] == "a dog on a beach, photograph"
    assert first["seed"] == derived_seed("a dog on a beach", 0) != items["prompts_00001_1"]["seed"]
    assert not first.has_image and first.source.endswith("prompts.txt:1#0")
    with pytest.raises(ItemError, match="no image yet"):
        _ = first.image


def test_jsonl_and_csv_prompts_keep_their_seeds_and_columns(tmp_path):
    (tmp_path / "p.jsonl").write_text(
        '{"prompt": "a cat", "seed": 7, "style": "oil"}\n{"prompt": "a cat", "seed": 7, "style": "oil"}\n'
        '{"seed": 3}\nnot json\n'
    )
    (tmp_path / "p.csv").write_text("prompt,seed,negative\na boat,12,blurry\n")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(
            LoadPrompts(tmp_path / "p.jsonl", n=3) + LoadPrompts(tmp_path / "p.csv"), progress=False
        )
        items = {item.name: item for item in ws.items()}
    assert [items[f"p_00001_{k}"]["seed"] for k in range(3)] == [7, 8, 9]
    assert items["p_00001_0"]["style"] == "oil"
    boat = items["p_00001"].props
    assert {k: boat[k] for k in ("prompt", "seed", "negative")} == {
        "prompt": "a boat",
        "seed": 12,
        "negative": "blurry",
    }
    assert boat["origins"] == [{"step": "load_prompts#2", "source": "p.csv:2"}]
    reasons = sorted(e["reason"] for e in summary.errors)
    assert reasons == ["p.jsonl:3: no 'prompt' text in this row", "p.jsonl:4: invalid JSON: Expecting value"]
    assert summary.step("load_prompts").dropped == 3  # the repeated row: exact duplicates


def test_pixel_steps_refuse_prompt_items_with_a_clear_error(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog\na cat\n")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(
            LoadPrompts(prompts) >> Resize(max_edge=64) >> SetCaption(template="x"), workers=2, progress=False
        )
        batch = ws.run(LoadPrompts(prompts) >> TRayMeanColour(log=str(tmp_path / "log")), progress=False)
    assert summary.step("resize").failed == 2 and summary.step("set_caption").n_in == 0
    assert {e["reason"] for e in summary.errors} == {f"resize reads pixels: {NO_IMAGE_ERROR}"}
    assert batch.step("t_ray_mean_colour").failed == 2
    assert {e["reason"] for e in batch.errors} == {f"t_ray_mean_colour reads pixels: {NO_IMAGE_ERROR}"}
    assert not (tmp_path / "log").exists()  # the model was never loaded for items it cannot read


def test_a_step_that_stores_an_image_makes_them_image_items(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog\na cat\n")
    pipeline = LoadPrompts(prompts, n=2) >> TPaint() >> Resize(max_edge=24)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(pipeline, workers=0, progress=False)
        items = list(ws.items())
        again = ws.run(pipeline, workers=0, progress=False)
    assert not summary.errors and again.computed == 0
    assert all(item.has_image for item in items) and len({item.base for item in items}) == 4
    assert {item.image.size for item in items} == {(24, 16)}


def test_load_prompts_checks_its_file(tmp_path):
    with pytest.raises(ParamError, match="file not found"):
        LoadPrompts(tmp_path / "missing.txt")
    (tmp_path / "p.yaml").write_text("x")
    with pytest.raises(ParamError, match=r"use a \.txt, \.jsonl or \.csv"):
        LoadPrompts(tmp_path / "p.yaml")


def test_the_training_loader_skips_items_without_pixels(tmp_path, photos):
    from captionary import Load
    from captionary.loader.readers.workspace import read_workspace

    (tmp_path / "prompts.txt").write_text("a dog\n")
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) + LoadPrompts(tmp_path / "prompts.txt"), progress=False)
        assert len(list(ws.items())) == 13
    assert len(read_workspace(tmp_path / "ws")) == 12
