"""Shared fixtures: real photos (the bundled samples), real workspaces, real files."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PHOTOS = REPO / "examples" / "photos"


IMAGE_ENGINES = [
    "pillow",
    pytest.param(
        "vips",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("pyvips") is None, reason="pyvips is not installed (the vips extra)"
        ),
    ),
]


@pytest.fixture(params=IMAGE_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each image engine in turn (`engine:` of the image steps and `save`); vips when installed."""
    return request.param


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A private copy of the 12 bundled sample photos (with their .txt sidecars)."""
    target = tmp_path / "photos"
    shutil.copytree(SAMPLE_PHOTOS, target, ignore=shutil.ignore_patterns("*.md"))
    return target


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    return tmp_path / "ws"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative posix path -> bytes)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random FLUX-, SD3- and SDXL-shaped diffusers pipelines (tests/generation/tiny_pipelines.py),
    built once per session."""
    pytest.importorskip("diffusers")
    import sys

    folder = str(REPO / "tests" / "generation")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    from tiny_pipelines import BUILDERS

    root = tmp_path_factory.mktemp("tiny_pipelines")
    return {name: build(root / name) for name, build in BUILDERS.items()}
