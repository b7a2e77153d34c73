"""What score steps share: device choice, unit rows (model fingerprints: core/fingerprints.py; loading
once: pipeline/model_step.py)."""

from __future__ import annotations

from typing import Any


def torch_device(device: str) -> str:
    """`auto` -> `cuda` when a GPU is there, else `cpu`; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def unit_rows(matrix: Any) -> Any:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
