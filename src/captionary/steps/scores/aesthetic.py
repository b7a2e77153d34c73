"""`aesthetic`: the LAION improved-aesthetic predictor (an MLP on CLIP ViT-L/14 embeddings), or any MLP.

The reference checkpoint `sac+logos+ava1-l14-linearMSE.pth` is a state dict of five Linear layers
`layers.{0,2,4,6,7}` (768 -> 1024 -> 128 -> 64 -> 16 -> 1) with dropout and no activations between
them, fed a unit-length CLIP ViT-L/14 image embedding; it predicts a 1-10 rating. Any checkpoint of
Linear layers (`.pth`/`.pt`, `.safetensors` or `.npz`) works the same way; layers run in the order of
the numbers in their names. The MLP runs in numpy (it is five matrix products).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from captionary.core.arrays import items_matrix
from captionary.core.fingerprints import model_fingerprint
from captionary.core.item import Item
from captionary.errors import ConfigError, ItemError
from captionary.pipeline.model_step import ModelStep
from captionary.pipeline.step import require
from captionary.steps.scores.models import unit_rows


class Aesthetic(ModelStep):
    """Predict an aesthetic rating (`aesthetic`, about 1-10 for the LAION model) from `clip_embedding`.

    `checkpoint` is the MLP's weights file (e.g. `sac+logos+ava1-l14-linearMSE.pth`, a local path);
    `activation` is what runs between layers (`none` for the linearMSE models, `relu` for reluMSE).
    """

    name: ClassVar[str] = "aesthetic"
    version: ClassVar[int] = 1
    reads: ClassVar[tuple[str, ...]] = ("clip_embedding",)
    reads_image: ClassVar[bool] = False
    writes: ClassVar[tuple[str, ...]] = ("aesthetic",)
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size", "checkpoint")

    checkpoint: str
    activation: Literal["none", "relu"] = "none"
    batch_size: int = 256

    def validate(self) -> None:
        require(
            Path(self.checkpoint).is_file(),
            self,
            f"no such file: {self.checkpoint} (the LAION model: sac+logos+ava1-l14-linearMSE.pth from "
            "github.com/christophschuhmann/improved-aesthetic-predictor)",
            param="checkpoint",
        )
        require(self.batch_size >= 1, self, f"must be >= 1; got {self.batch_size}", param="batch_size")

    def model_id(self) -> str:
        return self.fingerprint

    @cached_property
    def fingerprint(self) -> str:
        return model_fingerprint(self.checkpoint)

    def load_model(self) -> Mlp:
        return Mlp.load(Path(self.checkpoint), self.activation)

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        mlp: Mlp = self.loaded()
        embeddings = unit_rows(items_matrix(items, "clip_embedding"))
        if embeddings.shape[1] != mlp.input_size:
            model = (items[0].get("clip_embedding") or {}).get("model")
            raise ItemError(
                f"aesthetic: {self.checkpoint} takes {mlp.input_size}-d embeddings, but clip_embedding "
                f"has {embeddings.shape[1]} (from {model}); the LAION model needs CLIP ViT-L/14"
            )
        return [{"aesthetic": round(float(score), 4)} for score in mlp(embeddings)]


class Mlp:
    """Linear layers (weights (out, in), biases (out,)) with an optional ReLU between them."""

    def __init__(self, layers: list[tuple[Any, Any]], activation: str):
        self.layers = layers
        self.activation = activation
        self.input_size = layers[0][0].shape[1]

    @classmethod
    def load(cls, path: Path, activation: str) -> Mlp:
        tensors = read_tensors(path)
        names = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight")}, key=_natural)
        layers = []
        for name in names:
            weight, bias = tensors[f"{name}.weight"], tensors.get(f"{name}.bias")
            if weight.ndim != 2:
                raise ConfigError(f"{path}: {name}.weight has shape {list(weight.shape)}, not a Linear layer")
            layers.append((weight, bias))
        if not layers:
            raise ConfigError(f"{path}: no `<layer>.weight` tensors found")
        for (w1, _), (w2, _), name in zip(layers, layers[1:], names[1:]):
            if w2.shape[1] != w1.shape[0]:
                given, taken = w1.shape[0], w2.shape[1]
                raise ConfigError(f"{path}: {name} takes {taken} inputs but the layer before gives {given}")
        if layers[-1][0].shape[0] != 1:
            raise ConfigError(f"{path}: the last layer has {layers[-1][0].shape[0]} outputs, expected 1")
        return cls(layers, activation)

    def __call__(self, x: Any) -> Any:
        import numpy as np

        for index, (weight, bias) in enumerate(self.layers):
            x = x @ weight.T
            if bias is not None:
                x = x + bias
            if self.activation == "relu" and index < len(self.layers) - 1:
                x = np.maximum(x, 0)
        return x[:, 0]


def read_tensors(path: Path) -> dict[str, Any]:
    """A state dict as float32 numpy arrays, from `.safetensors`, `.npz` or a torch `.pth`/`.pt`
    (loaded with `weights_only=True`: never arbitrary pickle)."""
    import numpy as np

    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            raw = load_file(str(path))
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                raw = dict(data)
        else:
            from captionary.core.optional import require as require_module

            torch = require_module("torch", "clip")
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            raw = {k: v.float().numpy() for k, v in state.items() if hasattr(v, "numpy")}
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot read MLP checkpoint {path}: {type(exc).__name__}: {exc}") from None
    return {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}


def _natural(name: str) -> list[Any]:
    """`layers.10` after `layers.7`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
