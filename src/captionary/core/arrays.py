"""Arrays (embeddings, masks) as blobs: `.npy` bytes in the blob store, a small reference in the properties.

A step may return a numpy array as a property value; the executor stores it (`externalize`) before the
result is cached, and the item carries a reference instead:

    {"array": "<sha256 of the .npy bytes>", "dtype": "float32", "shape": [512], "model": "..."}

`load_array` reads it back (`np.load(..., allow_pickle=False)`: never pickle), checking dtype and shape;
`load_matrix` stacks many into one (n, d) matrix for global steps (dedup, smart_filter).
numpy is imported only when an array is actually stored or read.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from captionary.errors import ItemError

if TYPE_CHECKING:
    import numpy as np

    from captionary.core.blobstore import BlobStore
    from captionary.core.item import Item

ArrayRef = dict[str, Any]
"""`{"array": sha256, "dtype": str, "shape": [int, ...], "model": str (optional)}`."""

_DIGEST = re.compile(r"[0-9a-f]{64}")
_REF_IN_JSON = re.compile(r'"array":"([0-9a-f]{64})"')


def is_array_ref(value: Any) -> bool:
    """True for a reference dict made by `store_array`."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("array"), str)
        and _DIGEST.fullmatch(value["array"]) is not None
        and isinstance(value.get("dtype"), str)
        and isinstance(value.get("shape"), list)
    )


def to_npy(array: np.ndarray) -> bytes:
    """The `.npy` bytes of an array (object arrays are refused: they would need pickle)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def store_array(store: BlobStore, array: np.ndarray, model: str | None = None) -> ArrayRef:
    """Store an array as a blob; return its reference (equal arrays share one blob)."""
    digest = store.put(to_npy(array))
    ref: ArrayRef = {"array": digest, "dtype": str(array.dtype), "shape": list(array.shape)}
    if model:
        ref["model"] = model
    return ref


def load_array(store: BlobStore, ref: ArrayRef) -> np.ndarray:
    """The array a reference names; ItemError if the blob is missing or does not match the reference."""
    import numpy as np

    if not is_array_ref(ref):
        raise ItemError(f"not an array reference: {ref!r}")
    digest = ref["array"]
    try:
        data = store.get(digest)
    except FileNotFoundError:
        raise ItemError(f"array blob {digest} is missing from the workspace (garbage-collected?)") from None
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise ItemError(f"array blob {digest} is not a readable .npy file: {exc}") from None
    if str(array.dtype) != ref["dtype"] or list(array.shape) != list(ref["shape"]):
        raise ItemError(
            f"array blob {digest} holds {array.dtype}{list(array.shape)}, "
            f"the reference says {ref['dtype']}{ref['shape']}"
        )
    return array


def item_array(item: Item, name: str) -> np.ndarray:
    """The array stored in property `name` of `item` (ItemError naming the item if it has none)."""
    ref = item.get(name)
    if ref is None:
        raise ItemError(f"{item.name}: no property {name!r} (run the step that computes it first)")
    if not is_array_ref(ref):
        raise ItemError(f"{item.name}: property {name!r} is not an array reference: {ref!r}")
    store = item.store
    if store is None:
        raise ItemError(f"{item.name}: item is not attached to a workspace, cannot read {name!r}")
    return load_array(store, ref)


def load_matrix(store: BlobStore, refs: Iterable[ArrayRef]) -> np.ndarray:
    """Stack 1-d arrays of one shape into an (n, d) float32 matrix.

    Fast path for many arrays (a dedup over a million embeddings): the `.npy` header of a given
    dtype and shape is always the same bytes, so each blob is checked against it and its data taken
    as is; anything else goes through `load_array` and its checks.
    """
    import numpy as np

    refs = list(refs)
    if not refs:
        return np.zeros((0, 0), dtype=np.float32)
    shapes = {tuple(ref["shape"]) if is_array_ref(ref) else None for ref in refs}
    if len(shapes) != 1:
        raise ItemError(f"arrays of different shapes cannot be stacked: {sorted(map(str, shapes))}")
    (shape,) = shapes
    if shape is None or len(shape) != 1:
        return np.stack([load_array(store, ref) for ref in refs]).astype(np.float32, copy=False)
    out = np.empty((len(refs), shape[0]), dtype=np.float32)
    headers: dict[str, bytes] = {}
    for row, ref in enumerate(refs):
        dtype = ref["dtype"]
        if dtype not in headers:
            headers[dtype] = _npy_header(dtype, shape)
        header = headers[dtype]
        try:
            data = store.get(ref["array"])
        except FileNotFoundError:
            data = b""
        if data.startswith(header) and len(data) == len(header) + shape[0] * np.dtype(dtype).itemsize:
            out[row] = np.frombuffer(data, dtype=dtype, offset=len(header))
        else:
            out[row] = load_array(store, ref)  # raises the precise error
    return out


def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """The header bytes `np.save` writes for an array of this dtype and shape."""
    import numpy as np

    try:
        sample = np.zeros(shape, dtype=dtype)
    except TypeError:
        return b"\0"  # not a numpy dtype: no blob starts with this, so load_array reports it
    data = to_npy(sample)
    return data[: len(data) - sample.nbytes]


def externalize(props: dict[str, Any] | None, store: BlobStore, model: str | None) -> dict[str, Any] | None:
    """`props` with every numpy array value (top level) stored as a blob and replaced by its reference,
    and numpy scalars turned into Python numbers (so the result is JSON). Cheap when there are none."""
    numpy = sys.modules.get("numpy")
    if not props or numpy is None:  # no numpy loaded: there can be no arrays
        return props
    out = props
    for key, value in props.items():
        if isinstance(value, numpy.ndarray):
            replaced: Any = store_array(store, value, model)
        elif isinstance(value, numpy.generic):
            replaced = value.item()
        else:
            continue
        if out is props:
            out = dict(props)
        out[key] = replaced
    return out


def referenced_digests(props_json: Iterable[str | None]) -> Iterator[str]:
    """Blob digests referenced by arrays in canonical-JSON property texts (for garbage collection)."""
    for text in props_json:
        if text and '"array":"' in text:
            yield from _REF_IN_JSON.findall(text)
