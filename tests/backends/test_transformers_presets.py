"""Presets: names resolve to a backend, a model, a prompt and settings; step parameters override them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from captionary import Caption, Load, Workspace
from captionary.backends import BACKENDS
from captionary.backends.base import Preset
from captionary.backends.presets import PRESETS

FAMILIES = (
    "qwen2.5-vl",
    "joycaption",
    "florence-2",
    "llava",
    "llama-3.2",
    "gemma-3",
    "smolvlm",
    "blip2",
    "gpt-4o",
)


def test_every_family_has_a_well_formed_preset():
    for family in FAMILIES:
        assert any(name.startswith(family) for name in PRESETS), family
    for name, preset in PRESETS.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", name), name
        assert preset.backend in BACKENDS
        assert preset.prompt and preset.max_tokens and preset.temperature is not None
        allowed = {"base_url", "api_key_env", "max_image_edge"}
        if preset.backend != "openai":  # local backends (transformers, vllm) both take it
            allowed.add("trust_remote_code")
        if preset.vllm is False:  # runs on transformers only: its own options are fine
            allowed.add("vision_model")
        assert set(preset.options) <= allowed, name


def test_a_preset_name_fills_backend_model_prompt_and_settings():
    step = Caption(model="florence-2-large")
    config = step.backend_config
    assert (config.backend, config.model) == ("transformers", "florence-community/Florence-2-large")
    assert step.cache_params["prompt"] == "<MORE_DETAILED_CAPTION>"
    assert step.generation.max_tokens == 256


def test_step_parameters_override_the_preset_and_change_the_cache_key():
    default = Caption(model="qwen2.5-vl-7b")
    own = Caption(model="qwen2.5-vl-7b", prompt="Tags: {tags}. Describe.", max_tokens=77)
    assert own.cache_params["prompt"] == "Tags: {tags}. Describe." and own.generation.max_tokens == 77
    assert own.reads == ("tags",)
    assert default.cache_params["prompt"] == PRESETS["qwen2.5-vl-7b"].prompt
    assert default.cache_prefix != own.cache_prefix
    assert default.model_id() == "transformers:Qwen/Qwen2.5-VL-7B-Instruct"


def test_a_preset_supplies_sampling_settings_and_the_step_overrides_them():
    joy = Caption(model="joycaption")
    assert (joy.generation.temperature, joy.generation.top_p) == (0.6, 0.9)
    own = Caption(model="joycaption", top_p=0.5)
    assert own.generation.top_p == 0.5 and own.cache_prefix != joy.cache_prefix
    assert Caption(model="qwen2.5-vl-7b").generation.top_p is None


def test_api_presets_use_the_openai_backend(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GEMINI_API_KEY", "test")
    assert Caption(model="gpt-4o-mini").backend_config.backend == "openai"
    gemini = Caption(model="gemini-2.5-flash").backend_config
    assert gemini.options["api_key_env"] == "GEMINI_API_KEY" and "googleapis" in gemini.options["base_url"]


def test_a_preset_runs_end_to_end(monkeypatch, photos, ws_path, tmp_path_factory):
    """A preset for a local tiny Florence-2: its task prompt reaches the model, captions are written."""
    pytest.importorskip("transformers")
    from tiny_models import tiny_model

    folder: Path = tiny_model("florence2", tmp_path_factory.mktemp("tiny_models"))
    preset = Preset(
        backend="transformers", model=str(folder), prompt="<CAPTION>", max_tokens=5, temperature=0.0
    )
    monkeypatch.setitem(PRESETS, "tiny-florence", preset)
    step = Caption(model="tiny-florence", batch_size=6)
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> step, progress=False)
        captions = [item["caption"] for item in ws.items()]
    assert summary.step("caption").computed == 12 and all(captions)
    assert step.cache_params["prompt"] == "<CAPTION>"
