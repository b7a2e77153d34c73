"""The cache's promises: a re-run computes nothing; a change recomputes only what depends on it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from captionary import FilterBySize, Load, Map, Resize, Save, Workspace, step
from conftest import mtimes, tree


@step(writes=("caption",), reads=("caption",), reads_image=False)
def t_rerun_trigger(item, word: str = "sks"):
    """Prefix the caption with a trigger word."""
    return {"caption": f"{word}, {item.get('caption') or 'photo'}"}


class TRerunCaptionLength(Map):
    """Reads only the caption: must stay cached when pixels change."""

    name: ClassVar[str] = "t_rerun_caption_length"
    reads: ClassVar[tuple[str, ...]] = ("caption",)
    writes: ClassVar[tuple[str, ...]] = ("caption_length",)
    reads_image: ClassVar[bool] = False

    def apply(self, item):
        return {"caption_length": len(item["caption"])}


class TRerunMeanColour(Map):
    """Reads pixels: must recompute when the image changes."""

    name: ClassVar[str] = "t_rerun_mean_colour"
    writes: ClassVar[tuple[str, ...]] = ("mean",)

    def apply(self, item):
        pixels = item.image.convert("L").resize((8, 8))
        return {"mean": round(sum(pixels.tobytes()) / 64, 3)}


def pipeline(photos: Path, out: Path, *, word: str = "sks", max_edge: int = 320):
    return (
        Load(photos)
        >> FilterBySize(min_edge=512)
        >> t_rerun_trigger(word=word)
        >> Resize(max_edge=max_edge)
        >> TRerunCaptionLength()
        >> TRerunMeanColour()
        >> Save(out, json_sidecar=True)
    )


def counts(summary, field: str) -> dict[str, int]:
    return {s.name: getattr(s, field) for s in summary.steps}


def test_second_run_computes_nothing_and_output_is_identical(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    with Workspace(ws_path) as ws:
        first = ws.run(pipeline(photos, out), progress=False)
        assert first.step("load").computed == 12
        assert first.step("filter_by_size").dropped == 1  # duck_toy/01.jpg is 400 px
        assert first.step("save").computed == 11
        files, stamps = tree(out), mtimes(out)

        second = ws.run(pipeline(photos, out), progress=False)

    assert counts(second, "computed") == {s.name: 0 for s in second.steps}
    assert counts(second, "cached") == counts(first, "computed")
    assert counts(second, "n_out") == counts(first, "n_out")
    assert tree(out) == files
    assert mtimes(out) == stamps  # nothing was even rewritten
    assert len([f for f in files if f.endswith(".jpg")]) == 11


def test_changed_parameter_recomputes_only_that_step_and_its_readers(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    with Workspace(ws_path) as ws:
        ws.run(pipeline(photos, out), progress=False)
        captions = {p.name: p.read_text() for p in out.rglob("*.txt")}

        resized = ws.run(pipeline(photos, out, max_edge=256), progress=False)
        assert counts(resized, "computed") == {
            "load": 0,
            "filter_by_size": 0,
            "t_rerun_trigger": 0,
            "resize": 11,  # the changed step
            "t_rerun_caption_length": 0,  # reads only the caption: kept
            "t_rerun_mean_colour": 11,  # reads the pixels resize wrote
            "save": 11,  # new images to write
        }
        assert {p.name: p.read_text() for p in out.rglob("*.txt")} == captions

        reworded = ws.run(pipeline(photos, out, word="ohwx", max_edge=256), progress=False)
        assert counts(reworded, "computed") == {
            "load": 0,
            "filter_by_size": 0,
            "t_rerun_trigger": 11,  # the changed step
            "resize": 0,  # pixels unchanged
            "t_rerun_caption_length": 11,  # reads the caption it wrote
            "t_rerun_mean_colour": 0,
            "save": 11,  # captions changed (images stay as they are)
        }
        items = list(ws.items())
    assert all(item["caption"].startswith("ohwx, ") for item in items)
    assert all(max(item["width"], item["height"]) == 256 for item in items)
    assert all(item["caption_length"] == len(item["caption"]) for item in items)


def test_new_images_are_the_only_ones_computed(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.move(photos / "teapot", extra / "teapot")
    with Workspace(ws_path) as ws:
        first = ws.run(pipeline(photos, out), progress=False)
        assert first.step("load").computed == 10
        shutil.move(extra / "teapot", photos / "teapot")
        second = ws.run(pipeline(photos, out), progress=False)
    assert second.step("load").computed == 2
    assert second.step("load").cached == 10
    for name in ("t_rerun_trigger", "resize", "t_rerun_mean_colour", "save"):
        assert second.step(name).computed == 2, name
    assert (out / "teapot" / "00.jpg").exists() and (out / "teapot" / "01.jpg").exists()


def test_edited_sidecar_caption_recomputes_only_caption_readers(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    with Workspace(ws_path) as ws:
        ws.run(pipeline(photos, out), progress=False)
        (photos / "dog" / "00.txt").write_text("a photo of my dog on a rug\n")
        summary = ws.run(pipeline(photos, out), progress=False)
    assert summary.step("load").computed == 1
    assert summary.step("t_rerun_trigger").computed == 1
    assert summary.step("t_rerun_caption_length").computed == 1
    assert summary.step("resize").computed == 0
    assert (out / "dog" / "00.txt").read_text() == "sks, a photo of my dog on a rug\n"


def test_parallel_and_inline_runs_give_the_same_results(photos, tmp_path):
    """The process pool (workers=2) and running in the driver (workers=0) agree exactly."""
    outputs = {}
    for workers in (0, 2):
        out = tmp_path / f"out{workers}"
        with Workspace(tmp_path / f"ws{workers}") as ws:
            summary = ws.run(pipeline(photos, out), progress=False, workers=workers)
        assert summary.step("resize").computed == 11
        outputs[workers] = tree(out)
    assert outputs[0] == outputs[2]
