"""The CLI's start-up stays light: `import captionary` imports no step module (a pipeline imports the
steps it names); `import captionary.cli`, and a cached `captionary run`, leave out the
standard-library modules only downloads, shards, review servers, process pools and error hints need
(imported where they are used), and a cached run of a folder of JPEGs leaves out Pillow. Every step is
still registered (tests/test_step_contract.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

# What `import captionary.cli` loaded before they were made lazy (about 35 ms of imports at start-up).
LAZY_AT_IMPORT = (
    "urllib.request",  # core.locations, core.wds_stream, sources.download
    "http.client",
    "email",  # sources.web.client (Retry-After dates); urllib.request
    "ssl",
    "socket",  # review.serve, sources.download
    "secrets",  # review.serve
    "tarfile",  # sinks.shards, core.wds_stream
    "subprocess",  # core.wds_stream (pipe: shards)
    "statistics",  # sinks.card
    "difflib",  # "did you mean" hints
    "csv",  # core.manifest_rows, steps.tags.labels
    "random",  # steps.select.shuffle, sources.web.client
)
# A cached re-run starts no process pool: the local executor imports it when an image step computes.
LAZY_ON_CACHED_RUN = (
    "urllib.request",
    "http.client",
    "ssl",
    "tarfile",
    "statistics",
    "difflib",
    "multiprocessing",
    "concurrent.futures.process",
    "PIL.Image",  # the folder's extensions are told without Pillow's plugin registry
    "pyvips",  # the vips image engine (~80 ms): `auto` is resolved without importing it
)


def _modules_after(code: str, names: tuple[str, ...], cwd: str | None) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {names!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _loaded(code: str, names: tuple[str, ...], cwd: str | None = None) -> list[str]:
    """The modules of `names` that running `code` imports, beyond what this interpreter loads at start-up
    (a site's .pth files or sitecustomize may import some, e.g. `random`, before any of our code)."""
    at_startup = set(_modules_after("pass", names, cwd))
    return [m for m in _modules_after(code, names, cwd) if m not in at_startup]


def test_import_cli_does_not_load_what_only_some_commands_need():
    assert _loaded("import captionary.cli", LAZY_AT_IMPORT) == []


def _step_modules_after(code: str, cwd: str | None = None) -> set[str]:
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith("
        "('captionary.steps.', 'captionary.sources.', 'captionary.sinks.')))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_captionary_imports_no_step_and_a_run_only_the_steps_it_names(tmp_path):
    from captionary.builtin_steps import STEP_CLASSES

    step_modules = {module for module, _ in STEP_CLASSES.values()}
    assert not _step_modules_after("import captionary.cli") & step_modules
    assert _step_modules_after("from captionary import Resize") & step_modules == {
        "captionary.steps.transforms.resize"
    }
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (40, 30), "teal").save(tmp_path / "photos" / "a.jpg")
    (tmp_path / "p.yaml").write_text(
        "workspace: ws\nsteps:\n  - load: {path: photos}\n  - resize: {max_edge: 16}\n"
        "  - save: {path: out, format: kohya}\n"
    )
    run = "from captionary.cli import main\nassert main(['run', 'p.yaml', '--no-progress']) == 0"
    named = {"captionary.sources.folder", "captionary.steps.transforms.resize", "captionary.sinks.save"}
    assert _step_modules_after(run, cwd=str(tmp_path)) & step_modules == named
    assert (tmp_path / "out" / "a.jpg").exists()


def test_a_cached_cli_run_does_not_load_downloads_shards_or_a_process_pool(tmp_path):
    (tmp_path / "photos").mkdir()
    for i in range(3):
        Image.new("RGB", (40 + i, 30), (i * 40, 90, 160)).save(tmp_path / "photos" / f"{i}.jpg")
    (tmp_path / "photos" / "0.txt").write_text("a caption sidecar")
    (tmp_path / "p.yaml").write_text(
        "workspace: ws\nsteps:\n  - load: {path: photos}\n  - filter_by_size: {min_edge: 8}\n"
        "  - resize: {max_edge: 16}\n  - save: {path: out}\n"
    )
    run = "from captionary.cli import main\nassert main(['run', 'p.yaml', '--no-progress']) == 0"
    first = _loaded(run, LAZY_ON_CACHED_RUN, cwd=str(tmp_path))
    assert "multiprocessing" in first  # the first run computes in the pool: the probe sees the imports
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 3
    assert _loaded(run, LAZY_ON_CACHED_RUN, cwd=str(tmp_path)) == []


def test_the_extensions_told_without_pillow_agree_with_pillow():
    from captionary.core.images import (
        ALWAYS_READABLE,
        NEVER_READABLE,
        ReadableExtensions,
        readable_extensions,
    )

    pillow = readable_extensions()
    assert pillow >= ALWAYS_READABLE
    assert not pillow & NEVER_READABLE
    readable = ReadableExtensions()
    assert all(ext in readable for ext in pillow)  # .webp, .avif, ... through Pillow's registry
    assert ".txt" not in readable and ".exe" not in readable
