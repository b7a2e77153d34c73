"""What every generating step shares, shown with a small in-test backend that measures images with a
memory budget: out-of-memory halving, one load per run released when the step is done, load errors,
presets, preamble clean-up."""

from __future__ import annotations

import pickle
import threading
from typing import Any, ClassVar

import pytest
from openai_server import FakeOpenAI
from PIL import ImageStat

from captionary import Caption, CaptionVariations, ComposeCaption, Load, Workspace
from captionary.backends import BACKENDS, Backend, OutOfMemory, Preset, Result
from captionary.steps.vlm import base as vlm_base
from captionary.steps.vlm.text import strip_preamble

EVENTS: list[str] = []


class BudgetBackend(Backend):
    """Describes each image by its mean colour; a call whose images exceed `budget` pixels raises
    OutOfMemory, as a GPU would."""

    name: ClassVar[str] = "t_budget"
    options: ClassVar[dict[str, Any]] = {"budget": 10**9, "fail_load": False}

    def load(self) -> None:
        EVENTS.append(f"load {self.config.model}")
        if self.settings["fail_load"]:
            raise FileNotFoundError(f"no weights in {self.config.model}")

    def generate(self, requests):
        pixels = sum(image.width * image.height for r in requests for image in r.images)
        EVENTS.append(f"generate {self.config.model} {len(requests)}")
        if pixels > self.settings["budget"]:
            raise OutOfMemory(f"{pixels} pixels")
        results = []
        for r in requests:
            mean = ImageStat.Stat(r.images[0]).mean
            results.append(Result([f"mean {mean[0]:.1f}"], ["stop"], 10, 2))
        return results

    def close(self) -> None:
        EVENTS.append(f"close {self.config.model}")


@pytest.fixture(autouse=True)
def budget_backend(monkeypatch):
    monkeypatch.setitem(BACKENDS, "t_budget", f"{__name__}:BudgetBackend")
    EVENTS.clear()


def run(ws_path, photos, *steps):
    pipeline = Load(photos)
    for step in steps:
        pipeline = pipeline >> step
    with Workspace(ws_path) as ws:
        summary = ws.run(pipeline, progress=False)
        return summary, {item.name: item.props for item in ws.items()}


def test_out_of_memory_halves_the_batch_and_keeps_the_smaller_size(photos, ws_path):
    step = Caption(
        backend="t_budget", model="m", max_image_edge=64, batch_size=4, options={"budget": 64 * 64 * 2}
    )
    summary, props = run(ws_path, photos, step)
    assert summary.step("caption").computed == 12 and not summary.errors
    sizes = [int(e.split()[-1]) for e in EVENTS if e.startswith("generate")]
    assert sizes == [4, 2, 2] + [2] * 4  # halved once, then kept for the rest of the run
    assert all(p["caption"].startswith("mean ") for p in props.values())
    assert summary.step("caption").usage == {"requests": 12, "prompt_tokens": 120, "completion_tokens": 24}


def test_out_of_memory_at_batch_size_one_fails_the_item(photos, ws_path):
    step = Caption(backend="t_budget", model="m", max_image_edge=64, batch_size=2, options={"budget": 10})
    summary, _ = run(ws_path, photos, step)
    assert summary.step("caption").failed == 12
    assert all("OutOfMemory" in e["reason"] for e in summary.errors)


def test_model_is_loaded_once_and_released_when_its_step_is_done(photos, ws_path):
    first = Caption(backend="t_budget", model="A", max_image_edge=32, batch_size=8)
    second = Caption(backend="t_budget", model="B", max_image_edge=32, batch_size=8, target="other")
    run(ws_path, photos, first, second)
    assert EVENTS.count("load A") == 1 and EVENTS.count("close A") == 1
    assert EVENTS.count("load B") == 1 and EVENTS.count("close B") == 1
    last_b = max(i for i, e in enumerate(EVENTS) if e.startswith("generate B"))
    assert EVENTS.index("close A") < last_b  # A's model is gone before B's last batch
    EVENTS.clear()
    run(ws_path, photos, first, second)
    assert EVENTS == []  # all cached: no model is even loaded


def test_a_model_that_cannot_load_fails_every_item_with_the_reason(photos, ws_path):
    step = Caption(backend="t_budget", model="./missing-model", options={"fail_load": True})
    summary, _ = run(ws_path, photos, step)
    assert summary.step("caption").failed == 12
    assert summary.errors[0]["reason"] == (
        "could not load t_budget:./missing-model: FileNotFoundError: no weights in ./missing-model"
    )
    assert not [e for e in EVENTS if e.startswith("generate")]


def test_a_preset_supplies_backend_model_and_prompt_and_parameters_override_it(monkeypatch, photos, ws_path):
    with FakeOpenAI() as server:
        preset = Preset("openai", "served/vlm", prompt="Preset prompt for {name}.", max_tokens=50)
        monkeypatch.setattr(vlm_base, "find_preset", lambda name: preset if name == "my-vlm" else None)
        plain = Caption(model="my-vlm", base_url=server.url)
        assert plain.model_id() == "openai:served/vlm"
        run(ws_path, photos, plain)
        assert {h.body["model"] for h in server.hits} == {"served/vlm"}
        assert server.hits_for("Preset prompt for dog/00.")[0].body["max_tokens"] == 50
        own = Caption(model="my-vlm", base_url=server.url, prompt="Own {name}", max_tokens=20)
        run(ws_path, photos, own)
        assert server.hits_for("Own dog/00")[0].body["max_tokens"] == 20
        assert Caption(model="x", base_url=server.url).backend_config.backend == "openai"  # no preset
        # text steps take the preset's model but keep their own prompt and sampling
        variations = CaptionVariations(model="my-vlm", base_url=server.url)
        assert variations.backend_config.model == "served/vlm" and "{source}" in variations.prompt_template
        assert (variations.generation.temperature, variations.generation.max_tokens) == (0.8, 256)
        assert "{tags}" in ComposeCaption(model="my-vlm", base_url=server.url).prompt_template


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("The image shows a brown dog on grass.", "A brown dog on grass."),
        ("This photograph depicts two cats asleep.", "Two cats asleep."),
        ('Sure! Here is a detailed caption for the image: "A red car."', "A red car."),
        ("In this image, a teapot stands on a table.", "A teapot stands on a table."),
        ("This is a photo of a dog", "A photo of a dog"),
        ("A dog. The image shows nothing else.", "A dog. The image shows nothing else."),
        ("Shows a dog", "Shows a dog"),
    ],
)
def test_preamble_stripping(raw, clean):
    assert strip_preamble(raw) == clean


def test_images_are_decoded_ahead_in_background_threads(photos, ws_path, monkeypatch):
    threads: list[str] = []
    prepare = Caption.prepare

    def watched(self, image, item):
        threads.append(threading.current_thread().name)
        return prepare(self, image, item)

    monkeypatch.setattr(Caption, "prepare", watched)
    summary, _ = run(ws_path, photos, Caption(backend="t_budget", model="m", max_image_edge=32, batch_size=4))
    assert summary.step("caption").computed == 12
    assert len(threads) == 12 and all(name.startswith("captionary-caption-decode") for name in threads)


def test_a_step_pickles_without_its_model_and_keeps_its_cache_identity():
    step = Caption(
        backend="openai", model="m", base_url="http://127.0.0.1:9/v1", prompt="Describe {caption}."
    )
    step.setup()  # an httpx client, a thread pool and locks: none of them travels
    try:
        copy = pickle.loads(pickle.dumps(step))
    finally:
        step.teardown()
    assert copy.cache_prefix == step.cache_prefix and copy.reads == ("caption",)
    assert copy.backend_config == step.backend_config


def test_token_usage_is_kept_with_the_run_for_status(photos, ws_path, capsys):
    import json

    from captionary.cli import main

    step = Caption(backend="t_budget", model="m", max_image_edge=64, batch_size=4, options={"budget": 10**9})
    summary, _ = run(ws_path, photos, step)
    capsys.readouterr()
    assert main(["status", str(ws_path), "--json"]) == 0
    steps = {s["name"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    assert steps["caption"]["usage"] == summary.step("caption").usage
    assert steps["caption"]["usage"]["requests"] == 12 and steps["load"]["usage"] == {}
    assert main(["status", str(ws_path)]) == 0
    assert "caption: requests 12, prompt tokens 120, completion tokens 24" in capsys.readouterr().out
