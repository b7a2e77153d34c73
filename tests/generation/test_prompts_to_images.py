"""`load_prompts >> generate_image >> save` on a tiny random FLUX-shaped pipeline: prompt items get
images of the asked size, written by `save`; the same seed gives identical pixels; a re-run computes
nothing; a changed `guidance_scale` regenerates; `n` images per prompt are child items (fan-out)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

import numpy as np
from PIL import Image

from captionary import GenerateImage, Save, Workspace
from captionary.sources.prompts import LoadPrompts, derived_seed

FLUX = {"height": 32, "width": 48, "num_inference_steps": 2, "max_sequence_length": 32, "guidance_scale": 3.5}
PROMPTS = ["a dog sitting on the grass", "a red backpack on a wooden floor", "a teapot on a table"]


def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("# prompts\n" + "\n".join(PROMPTS) + "\n")
    return path


def pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_prompts_become_images(tmp_path: Path, pipelines) -> None:
    out = tmp_path / "out"

    def pipeline(**changes: object):
        step = GenerateImage(model=str(pipelines["flux"]), batch_size=2, **{**FLUX, **changes})
        return LoadPrompts(prompts_file(tmp_path)) >> step >> Save(str(out))

    ws = Workspace(tmp_path / "ws")
    first = ws.run(pipeline())
    assert (first.steps[1].computed, first.steps[1].failed) == (3, 0), first.errors
    images = pngs(out)
    assert sorted(images) == ["prompts_00001", "prompts_00002", "prompts_00003"]
    assert {a.shape for a in images.values()} == {(32, 48, 3)}
    assert (out / "prompts_00001.txt").read_text().strip() == ""  # no caption yet (missing_caption: empty)
    items = {item.name: item for item in ws.items()}
    assert items["prompts_00001"]["prompt"] == PROMPTS[0] and items["prompts_00001"].has_image

    again = ws.run(pipeline())
    assert (again.steps[1].computed, again.steps[1].cached) == (0, 3)
    assert pngs(out).keys() == images.keys()

    changed = ws.run(pipeline(guidance_scale=6.0))
    assert (changed.steps[1].computed, changed.steps[1].cached) == (3, 0)
    after = pngs(out)
    assert all(after[k].shape == (32, 48, 3) and not np.array_equal(after[k], images[k]) for k in images)


def test_the_same_seed_gives_identical_pixels(tmp_path: Path, pipelines) -> None:
    rows = [
        {"prompt": "a cat lying on a sofa", "seed": 5, "copy": "a"},
        {"prompt": "a cat lying on a sofa", "seed": 5, "copy": "b"},
        {"prompt": "a cat lying on a sofa", "seed": 6, "copy": "c"},
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    step = GenerateImage(model=str(pipelines["flux"]), batch_size=3, **FLUX)
    Workspace(tmp_path / "ws").run(LoadPrompts(path) >> step >> Save(str(tmp_path / "out")))
    images = pngs(tmp_path / "out")
    a, b, c = (images[f"p_0000{i}"] for i in (1, 2, 3))
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1


def test_n_images_per_prompt_are_children(tmp_path: Path, pipelines) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("a dog\na cat\n")
    step = GenerateImage(model=str(pipelines["flux"]), n=3, batch_size=4, **FLUX)
    out = tmp_path / "out"
    ws = Workspace(tmp_path / "ws")
    summary = ws.run(LoadPrompts(path) >> step >> Save(str(out), format="jsonl", image_format="png"))
    stats = summary.steps[1]
    assert (stats.n_in, stats.n_out, stats.computed, stats.failed) == (2, 6, 2, 0), summary.errors
    assert stats.usage == {"images": 6}
    items = sorted(ws.items(), key=lambda item: item.name)
    assert [item.name for item in items] == [f"prompts_0000{r}_{k}" for r in (1, 2) for k in range(3)]
    by_prompt = {}
    for item in items:
        assert item.has_image and (item.width, item.height) == (48, 32) and item["parent"]
        by_prompt.setdefault(item["prompt"], []).append(item["seed"])
    seeds = {p: derived_seed(p, 0) for p in ("a dog", "a cat")}  # the prompt items' seeds
    assert by_prompt == {p: [s, s + 1, s + 2] for p, s in seeds.items()}
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert len({ws.blobs.get(item.base) for item in items}) == 6  # six different images

    ws.gc()  # generated images are referenced by the cached children: gc keeps them
    again = ws.run(LoadPrompts(path) >> step >> Save(str(out), format="jsonl", image_format="png"))
    assert (again.steps[1].computed, again.steps[1].cached, again.steps[1].n_out) == (0, 2, 6)
    assert all(ws.blobs.get(item.base)[:4] == b"\x89PNG" for item in ws.items())
