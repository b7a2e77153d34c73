"""What score steps share: model fingerprints for cache keys, device choice, RGB batches."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image


_SAMPLE = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".json", ".dat", ".npz")


def file_fingerprint(path: Path) -> str:
    """Size + the first and last MiB, hashed: cheap for a 1 GB model, and stable when moved."""
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=12)
    with path.open("rb") as f:
        digest.update(f.read(_SAMPLE))
        if size > _SAMPLE:
            f.seek(max(_SAMPLE, size - _SAMPLE))
            digest.update(f.read())
    return digest.hexdigest()


def model_fingerprint(model: str, revision: str | None = None) -> str:
    """A cache identity for a model: the files' fingerprints for a local file or folder (so
    retraining in place recomputes), else `hub id@revision`."""
    path = Path(model)
    if path.is_file():
        return f"file:{file_fingerprint(path)}"
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        digest = hashlib.blake2b(digest_size=12)
        for file in files:
            digest.update(f"{file.relative_to(path).as_posix()}={file_fingerprint(file)};".encode())
        return f"dir:{digest.hexdigest()}"
    return f"hub:{model}@{revision or 'main'}"


def torch_device(device: str) -> str:
    """`auto` -> `cuda` when a GPU is there, else `cpu`; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def to_rgb(image: Image) -> Image:
    """RGB: alpha flattened on white, palette and greyscale expanded."""
    from PIL import Image as PILImage

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


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
