"""ONNX Runtime sessions for taggers and classifiers: CUDA when present, else CPU; lazy import.

    session = load_session("model.onnx")                 # providers: CUDA if available, then CPU
    spec = image_input(session)                          # name, layout (NHWC/NCHW), size, batch
    scores = session.run(None, {spec.name: batch})[0]

`onnxruntime` is imported only when a session is made (`pip install 'captionary[onnx]'`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from captionary.core.optional import require
from captionary.errors import ConfigError

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def onnxruntime() -> Any:
    """The onnxruntime module, or a ConfigError with the install line."""
    return require("onnxruntime", "onnx")


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers."""
    return list(onnxruntime().get_available_providers())


def default_providers() -> list[str]:
    """CUDA then CPU when this build has CUDA, else CPU only."""
    return [CUDA, CPU] if CUDA in available_providers() else [CPU]


def load_session(
    path: str | Path, providers: list[str] | None = None, *, threads: int | None = None
) -> InferenceSession:
    """An InferenceSession for the model at `path`.

    `providers` defaults to `default_providers()`; a provider this build lacks is a ConfigError.
    `threads` sets intra-op threads (None: onnxruntime's default, one per physical core).
    A missing or unreadable model raises ConfigError naming the file.
    """
    ort = onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ONNX model not found: {path}")
    available = set(ort.get_available_providers())
    chosen = list(providers) if providers else default_providers()
    missing = [p for p in chosen if p not in available]
    if missing:
        raise ConfigError(
            f"ONNX provider(s) {', '.join(missing)} not available in this onnxruntime "
            f"(available: {', '.join(sorted(available))})"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise ConfigError(f"cannot load ONNX model {path}: {_first_line(exc)}") from None
    dropped = [p for p in chosen if p not in session.get_providers()]
    if dropped:  # e.g. CUDA listed but its libraries missing: onnxruntime falls back quietly
        warnings.warn(
            f"{path.name}: onnxruntime could not use {', '.join(dropped)}; running on "
            f"{', '.join(session.get_providers())}",
            RuntimeWarning,
            stacklevel=2,
        )
    return session


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, shape (an int per fixed axis, None for a dynamic one), dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy dtype name, e.g. "float32"


def inputs(session: InferenceSession) -> list[TensorSpec]:
    return [_spec(arg) for arg in session.get_inputs()]


def outputs(session: InferenceSession) -> list[TensorSpec]:
    return [_spec(arg) for arg in session.get_outputs()]


@dataclass(frozen=True)
class ImageInput:
    """A model's image input: channels last (`NHWC`, e.g. WD14 taggers) or first (`NCHW`).

    `height`/`width` are None when the model accepts any size; `batch` is None for a dynamic batch
    axis, else the fixed batch size (usually 1).
    """

    name: str
    layout: Literal["NHWC", "NCHW"]
    height: int | None
    width: int | None
    channels: int
    batch: int | None
    dtype: str


def image_input(session: InferenceSession, index: int = 0) -> ImageInput:
    """The `index`-th input read as a 4-D image tensor; ConfigError if it is not one."""
    specs = inputs(session)
    if index >= len(specs):
        raise ConfigError(f"the model has {len(specs)} input(s); no input {index}")
    spec = specs[index]
    if len(spec.shape) != 4:
        raise ConfigError(f"model input {spec.name!r} has shape {_shape(spec)}; expected a 4-D image batch")
    batch, a, b, c = spec.shape
    if c in (1, 3, 4):
        return ImageInput(spec.name, "NHWC", a, b, c, batch, spec.dtype)
    if a in (1, 3, 4):
        return ImageInput(spec.name, "NCHW", b, c, a, batch, spec.dtype)
    raise ConfigError(f"model input {spec.name!r} has shape {_shape(spec)}: no axis of 1, 3 or 4 channels")


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, shape, _DTYPES.get(arg.type, arg.type))


def _shape(spec: TensorSpec) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in spec.shape) + "]"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
