"""Fixtures of the generation tests: tiny random pipelines, built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))  # tiny_models (VLMs)


@pytest.fixture(scope="session")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("diffusers")
    from tiny_pipelines import BUILDERS

    root = tmp_path_factory.mktemp("tiny_pipelines")
    return {name: build(root / name) for name, build in BUILDERS.items()}
