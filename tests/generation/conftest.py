"""Fixtures of the generation tests: tiny random pipelines, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("diffusers")
    from tiny_pipelines import BUILDERS

    root = tmp_path_factory.mktemp("tiny_pipelines")
    return {name: build(root / name) for name, build in BUILDERS.items()}
