"""The public API: a curated __all__, and `import captionary` stays light."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import captionary


def test_everything_in_all_is_importable_and_documented():
    for name in captionary.__all__:
        assert hasattr(captionary, name), name
    public = {n for n in dir(captionary) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(captionary.__all__), public - set(captionary.__all__)


def test_every_registered_step_has_a_one_line_doc():
    builtin = [(name, cls) for name, cls in captionary.STEPS if cls.__module__.startswith("captionary.")]
    assert {name for name, _ in builtin} >= {"load", "filter_by_size", "resize", "take", "save"}
    for name, cls in builtin:
        assert cls.summary(), name


def test_import_does_not_load_heavy_libraries():
    heavy = ("PIL", "tqdm", "numpy", "torch")
    code = f"import sys, captionary; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_steps_lists_every_step_with_parameters_and_docs(capsys):
    from captionary.cli import main

    assert main(["steps"]) == 0
    out = capsys.readouterr().out
    assert "resize (map): Scale to a longer edge of max_edge" in out
    assert "    max_edge: int | None = None" in out
    assert "load (source):" in out and "    path: Path" in out
    assert main(["steps", "--json"]) == 0
    import json

    described = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert described["save"]["kind"] == "sink"
    assert "quality: int = 95" in described["save"]["params"]


def test_cli_gc_and_status_text(photos, ws_path, capsys):
    from captionary import Load, Workspace
    from captionary.cli import main

    with Workspace(ws_path) as ws:
        ws.run(Load(photos), progress=False)
        ws.blobs.put(b"orphan")
    assert main(["gc", str(ws_path)]) == 0
    assert "removed 1 blob(s)" in capsys.readouterr().out
    assert main(["status", str(ws_path)]) == 0
    assert "load" in capsys.readouterr().out
    assert main(["status", str(ws_path.parent / "nowhere")]) == 2


def test_steps_listing_piped_into_a_reader_that_leaves_early_is_no_error():
    """`captionary steps | head -1`: the closed pipe is not a traceback."""
    command = f"{sys.executable} -m captionary.cli steps | head -1"
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and done.stdout.count("\n") == 1


def test_cli_ray_flags_reach_the_executor_and_need_executor_ray(tmp_path, monkeypatch, capsys):
    from captionary.cli import main
    from captionary.core.workspace import Workspace
    from conftest import REPO

    seen = {}

    def record(self, pipeline, executor="local", **options):
        seen.update(options, executor=executor)
        raise KeyboardInterrupt  # stop here: the flags are what this test is about

    monkeypatch.setattr(Workspace, "run", record)
    pipeline = str(REPO / "examples" / "quickstart.yaml")
    workspace = str(tmp_path / "ws")
    flags = ["--model-actors", "3", "--gpus-per-model-actor", "0.5", "--address", "auto"]
    with contextlib.suppress(KeyboardInterrupt):
        main(["run", pipeline, "--workspace", workspace, "--executor", "ray", *flags])
    assert seen["executor"] == "ray"
    assert (seen["model_actors"], seen["gpus_per_model_actor"], seen["address"]) == (3, 0.5, "auto")
    assert main(["run", pipeline, "--workspace", workspace, "--model-actors", "3"]) == 2
    assert "--model-actors only apply with --executor ray" in capsys.readouterr().err
