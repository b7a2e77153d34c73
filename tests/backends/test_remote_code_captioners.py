"""Captioners transformers has no class for, on the transformers backend: models that ship their own
code (Phi-3-Vision, Molmo, BLIP-3/xGen-MM: tiny random models whose remote code mimics the real
processor/generate interfaces, loaded with trust_remote_code from a temp folder) and a LLaVA-style
adapter (JoyCaption Alpha Two's layout). Each captions the bundled real photos through a Workspace run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from remote_code_models import REMOTE_BUILDERS

from captionary import Caption, Load, Workspace
from captionary.backends.base import BackendConfig, GenerationParams, Request, make_backend
from captionary.backends.presets import PRESETS

FAMILY = {"phi3_v": "Phi3Vision", "molmo": "Molmo", "xgenmm": "XGenMM", "joycaption_alpha": "LlavaAdapter"}


@pytest.fixture(scope="module")
def remote_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("remote_code_models")
    return {name: build(root / name) for name, build in REMOTE_BUILDERS.items()}


@pytest.mark.parametrize("name", sorted(REMOTE_BUILDERS))
def test_family_captions_real_photos(name: str, remote_models, photos: Path, tmp_path: Path) -> None:
    step = Caption(
        model=str(remote_models[name]), options={"trust_remote_code": True}, max_tokens=6, batch_size=4
    )
    ws = Workspace(tmp_path / "ws")
    first = ws.run(Load(str(photos / "dog")) >> step)
    assert (first.steps[1].computed, first.steps[1].failed) == (5, 0), first.errors
    captions = {item.name: item["caption"] for item in ws.items()}
    assert all(isinstance(c, str) and c.strip() for c in captions.values())
    assert len(set(captions.values())) > 1  # the image reaches the model
    assert first.steps[1].usage["requests"] == 5 and first.steps[1].usage["completion_tokens"] > 0
    again = ws.run(Load(str(photos / "dog")) >> Caption(**step.params))
    assert (again.steps[1].computed, again.steps[1].cached) == (0, 5)


@pytest.mark.parametrize("name", sorted(REMOTE_BUILDERS))
def test_backend_drives_the_family(name: str, remote_models, photos: Path) -> None:
    from PIL import Image

    backend = make_backend(
        BackendConfig("transformers", str(remote_models[name]), None, {"trust_remote_code": True})
    )
    image = Image.open(photos / "dog" / "00.jpg")
    request = Request("Describe the image.", [image], None, GenerationParams(max_tokens=5))
    with backend:
        assert type(backend.family).__name__ == FAMILY[name]
        first, second = backend.generate([request, request])
        (text_only,) = backend.generate(
            [Request("Describe the image.", [], None, GenerationParams(max_tokens=5))]
        )
        calls = backend.calls
    assert first.texts == second.texts and first.texts[0]  # greedy: the same text twice
    assert first.finish_reasons in (["length"], ["stop"]) and 1 <= first.completion_tokens <= 5
    assert "exactly one image" in text_only.error and calls == 2
    assert backend.model is None and backend.family is None  # released


@pytest.mark.parametrize("name", ["phi3_v", "molmo", "xgenmm"])
def test_remote_code_needs_consent(name: str, remote_models) -> None:
    backend = make_backend(BackendConfig("transformers", str(remote_models[name]), None, {}))
    with pytest.raises(Exception, match="trust_remote_code"):
        backend.load()


def test_presets_name_the_families_and_vllm_support() -> None:
    for name, model, vllm in [
        ("phi-3-vision", "microsoft/Phi-3-vision-128k-instruct", True),
        ("molmo-7b-d", "allenai/Molmo-7B-D-0924", True),
        ("xgen-mm", "Salesforce/xgen-mm-phi3-mini-instruct-interleave-r-v1.5", False),
        ("joycaption-alpha-two", "./cgrkzexw-599808", False),
    ]:
        preset = PRESETS[name]
        assert (preset.model, preset.vllm, preset.backend) == (model, vllm, "transformers")
    assert PRESETS["phi-3-vision"].options == {"trust_remote_code": True}
