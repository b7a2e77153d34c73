"""The contract every registered step keeps (as torchdata.nodes tests each of its nodes):

- `import captionary` registers it (every step class under captionary/ is in the registry);
- `captionary steps` lists it with its whole one-line doc;
- it builds from YAML with its defaults (or, for steps whose defaults are not a valid setting, from
  the example in EXAMPLES) and is documented in the README;
- where it runs here without a model download: a re-run computes nothing (cache hit), and a corrupt
  image is that item's error, not a crashed run.

A new step is checked automatically. If it needs parameters, add an example to EXAMPLES; if it cannot
run here, add it to NOT_RUN with the reason and the test file that covers it instead.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

import captionary
from captionary import ParamError, Workspace, parse_pipeline
from captionary.cli import main
from captionary.pipeline.registry import STEPS
from captionary.pipeline.step import Step
from conftest import REPO, SAMPLE_PHOTOS

LOCAL_API = "http://127.0.0.1:9/v1"  # never called: these steps are only built here
EXAMPLES: dict[str, dict] = {
    "aesthetic": {"checkpoint": "./sac+logos+ava1-l14-linearMSE.pth"},
    "add_tags": {"tags": ["dog"]},
    "apply": {"function": "test_step_contract.t_contract_brightness", "writes_properties": ["brightness"]},
    "caption": {"backend": "openai", "model": "m", "base_url": LOCAL_API},
    "caption_variations": {"backend": "openai", "model": "m", "base_url": LOCAL_API},
    "clip_score": {"prompts": ["a photo of a dog"]},
    "compose_caption": {"backend": "openai", "model": "m", "base_url": LOCAL_API},
    "faces": {"method": "hog"},
    "filter": {"expr": "width > 100"},
    "filter_by_aspect_ratio": {"max_ratio": 2.0},
    "filter_by_score": {"property": "width", "min": 1},
    "human_tag": {"tags": ["dog", "cat"]},
    "load": {"path": "photos"},
    "load_booru": {"site": "danbooru", "tags": ["dog"], "limit": 10},
    "load_hf": {"dataset": "hf_dataset"},
    "load_manifest": {"path": "manifest.jsonl"},
    "load_prompts": {"path": "prompts.txt"},
    "load_webdataset": {"shards": "./shards/0000.tar"},
    "remove_tags": {"tags": ["dog"]},
    "resize": {"max_edge": 256},
    "rewrite_tags": {"mapping": {"dog": "hound"}},
    "save": {"path": "out"},
    "set_caption": {"template": "a photo of {name}"},
    "smart_filter": {"label": "verdict"},
    "take": {"n": 2},
    "watermark": {"model": "./watermark.onnx"},
}
"""Parameters for steps that need some (or whose defaults are not a valid setting: `filter` needs an
expression or a function, `watermark` a model or `invisible`, `faces` runs its fast detector here)."""

DEFAULTS_INVALID = {
    "caption",
    "caption_variations",
    "clip_score",
    "compose_caption",
    "filter",
    "filter_by_aspect_ratio",
    "resize",
    "smart_filter",
    "watermark",
}
"""Steps without a required parameter whose defaults alone are refused (a model, or one of several
parameters, must be given): their defaults must fail with a clear error naming the step, and their
example must build."""

NOT_RUN = {
    "aesthetic": "needs a checkpoint download: tests/quality/test_scores_readme.py",
    "caption": "needs a VLM (download or API): tests/vlm, tests/backends",
    "caption_variations": "needs an LLM (download or API): tests/vlm/test_text_steps.py",
    "clip_embed": "needs a CLIP download: tests/quality/test_embed_clip.py (tiny model)",
    "clip_score": "needs a CLIP download: tests/quality/test_embed_clip.py (tiny model)",
    "compose_caption": "needs an LLM (download or API): tests/vlm/test_text_steps.py",
    "human_caption": "needs a person's decisions: tests/review/test_human_steps.py",
    "human_filter": "needs a person's decisions: tests/review/test_human_steps.py",
    "human_tag": "needs a person's decisions: tests/review/test_human_steps.py",
    "load_booru": "needs an image board (network): tests/web (a local stand-in server)",
    "load_hf": "a source with its own input: tests/test_huggingface_source.py",
    "load_manifest": "a source with its own input: tests/test_manifest_source.py",
    "load_prompts": "a source of items without pixels: tests/test_prompt_items.py",
    "crop_region": "the image transform of crop_boxes' children (needs `region`): tests/test_fanout.py",
    "load_webdataset": "a source with its own input: tests/test_webdataset_source.py",
    "smart_filter": "needs embeddings and decisions: tests/quality/test_scores_smart_filter.py",
    "tag": "needs a WD14 tagger download: tests/tags (tiny model)",
    "watermark": "needs an ONNX classifier or invisible-watermark: tests/quality/test_scores_watermark.py",
}


def t_contract_brightness(item):
    return {"brightness": sum(item.image.convert("L").resize((4, 4)).tobytes()) / 16 / 255}


def step_classes_in_package() -> dict[str, str]:
    """Every concrete step class defined under captionary/ (name -> module.Class), found by importing
    every module (which registers them, so this runs after the registration check's subprocess)."""
    found: dict[str, str] = {}
    for module_info in pkgutil.walk_packages(captionary.__path__, "captionary."):
        try:
            module = importlib.import_module(module_info.name)
        except ImportError:  # an optional dependency missing here: its steps cannot be listed
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Step)
                and value.__module__ == module.__name__
                and value.__dict__.get("name")
            ):
                found[value.name] = f"{value.__module__}.{value.__qualname__}"
    return found


def test_every_step_class_is_registered_by_import_captionary():
    script = "import captionary, json; print(json.dumps([name for name, _ in captionary.STEPS]))"
    registered = set(json.loads(subprocess.check_output([sys.executable, "-c", script], text=True)))
    missing = {name: origin for name, origin in step_classes_in_package().items() if name not in registered}
    assert not missing, (
        "step(s) defined but not registered by `import captionary` (import the module in "
        f"captionary/__init__.py): {missing}"
    )


def test_captionary_steps_lists_every_step_with_its_whole_doc(capsys):
    assert main(["steps"]) == 0
    listed = capsys.readouterr().out.splitlines()
    for name, cls in STEPS:
        doc = cls.summary()
        assert doc, f"step {name!r} ({cls.__module__}) has no docstring: `captionary steps` shows nothing"
        assert doc[-1] in ".)`", f"step {name!r}: its one-line doc does not end a sentence: {doc!r}"
        assert f"{name} ({cls.kind}): {doc}" in listed, f"step {name!r} is missing from `captionary steps`"
    described = json.loads(_steps_json(capsys))
    assert {step["name"] for step in described} == {name for name, _ in STEPS}


def _steps_json(capsys) -> str:
    assert main(["steps", "--json"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", [name for name, _ in STEPS])
def test_step_builds_from_yaml_and_is_in_the_readme(name, tmp_path):
    cls = STEPS.get(name)
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    assert not required or name in EXAMPLES, (
        f"step {name!r} has required parameter(s) {required}: add an example to EXAMPLES in "
        "tests/test_step_contract.py"
    )
    _inputs(tmp_path)
    if not required:
        try:
            built = _build(cls, {}, tmp_path)
        except ParamError as exc:
            assert name in DEFAULTS_INVALID, f"step {name!r} does not build from its defaults: {exc}"
            assert f"{name}" in str(exc), f"step {name!r}: the error does not name the step: {exc}"
        else:
            assert name not in DEFAULTS_INVALID, (
                f"step {name!r} builds from its defaults: drop it from DEFAULTS_INVALID"
            )
            assert type(built) is cls
    if name in EXAMPLES:
        assert type(_build(cls, EXAMPLES[name], tmp_path)) is cls
    readme = (REPO / "README.md").read_text()
    assert f"`{name}`" in readme or f"- {name}:" in readme, f"step {name!r} is not documented in README.md"


def _build(cls: type[Step], params: dict, folder) -> Step:
    steps = [{cls.name: params}]
    if cls.kind != "source":
        steps.insert(0, {"load": {"path": "photos"}})
    spec = parse_pipeline(yaml.safe_dump({"workspace": "ws", "steps": steps}), base=folder)
    return list(spec.pipeline)[-1]


RUNNABLE = [name for name, cls in STEPS if name not in NOT_RUN]


@pytest.mark.parametrize("name", RUNNABLE)
def test_step_reruns_from_cache_and_fails_a_corrupt_image_alone(name, tmp_path):
    cls = STEPS.get(name)
    _inputs(tmp_path)
    steps = [{"load": {"path": "photos", "verify": False}}]  # the corrupt image reaches the step
    if cls.kind != "source":
        steps.append({name: EXAMPLES.get(name, {})})
    spec = parse_pipeline(yaml.safe_dump({"workspace": "ws", "steps": steps}), base=tmp_path)
    stats_name = list(spec.pipeline)[-1].name
    with Workspace(tmp_path / "ws") as ws:
        first = ws.run(spec.pipeline, progress=False, workers=0)
        again = ws.run(spec.pipeline, progress=False, workers=0)
    step = first.step(stats_name)
    assert first.status == "completed" and step.n_in >= 3, f"step {name!r}: {first.table()}"
    assert again.step(stats_name).computed == 0, f"step {name!r} recomputed on a re-run:\n{again.table()}"
    if cls.kind in ("map", "filter", "batch") and cls.reads_image is True:
        failed = [e for e in first.errors if e["step"] == stats_name]
        assert [e["source"].rsplit("/", 1)[-1] for e in failed] == ["corrupt.jpg"], (
            f"step {name!r} reads pixels: the corrupt image should fail in it alone; errors: {first.errors}"
        )


def _inputs(folder):
    """Three bundled photos and a JPEG cut short (its header is fine, its pixels are not)."""
    photos = folder / "photos"
    photos.mkdir(exist_ok=True)
    for source in sorted(SAMPLE_PHOTOS.glob("dog/0[0-2].*")):
        shutil.copy(source, photos / source.name)
    (photos / "corrupt.jpg").write_bytes((SAMPLE_PHOTOS / "cat" / "00.jpg").read_bytes()[:3000])
    # what the EXAMPLES of steps that are only built (never run) here name
    (folder / "sac+logos+ava1-l14-linearMSE.pth").write_bytes(b"")
    (folder / "watermark.onnx").write_bytes(b"")
    (folder / "prompts.txt").write_text("a photo of a dog\n")
    (folder / "manifest.jsonl").write_text(json.dumps({"image": "photos/00.jpg"}) + "\n")
    (folder / "shards").mkdir(exist_ok=True)
    with tarfile.open(folder / "shards" / "0000.tar", "w"):
        pass
    (folder / "hf_dataset").mkdir(exist_ok=True)
