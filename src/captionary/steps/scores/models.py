"""What score steps share: device choice, RGB batches (model fingerprints: core/fingerprints.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


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


def loaded(step: Any, load: Any) -> Any:
    """The step's model, loaded once by `load()` (in the batch thread). A load failure is remembered
    and raised as the same ItemError for every batch, so each item records why."""
    from captionary.errors import ItemError

    state = step.__dict__
    if "_model" in state:
        return state["_model"]
    if "_load_error" not in state:
        try:
            state["_model"] = load()
            return state["_model"]
        except Exception as exc:
            state["_load_error"] = f"{step.name}: cannot load the model: {type(exc).__name__}: {exc}"
    raise ItemError(state["_load_error"])


def release(step: Any) -> None:
    """Drop the loaded model (teardown); `close()` it when it has one."""
    model = step.__dict__.pop("_model", None)
    step.__dict__.pop("_load_error", None)
    if hasattr(model, "close"):
        model.close()
