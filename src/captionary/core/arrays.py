"""Arrays (embeddings, masks) as blobs: `.npy` bytes in the blob store, a small reference in the properties.

A step may return a numpy array as a property value; the executor stores it (`externalize`) before the
result is cached, and the item carries a reference instead:

    {"array": "<sha256 of the .npy bytes>", "dtype": "float32", "shape": [512], "model": "...", "row": 3}

A batch step's arrays are stored together, up to `ROWS_PER_BLOB` to a blob (an (n, 512) `.npy`), and
each reference names its `row`; a lone array is a blob of its own (no `row`). A million embeddings are
then about 4,000 files, not a million. `load_array` reads one back (`np.load(..., allow_pickle=False)`:
never pickle), checking dtype and shape; `load_matrix` stacks many into one (n, d) matrix for global
steps (dedup, smart_filter), reading each blob once. numpy is imported only when an array is stored
or read.
"""

from __future__ import annotations

import io
import re
import sys
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from captionary.errors import ItemError

if TYPE_CHECKING:
    import numpy as np

    from captionary.core.blobstore import BlobStore
    from captionary.core.item import Item

ArrayRef = dict[str, Any]
"""`{"array": sha256, "dtype": str, "shape": [int, ...], "model": str, "row": int}` (model, row optional)."""

ROWS_PER_BLOB = 256
"""Arrays of one batch stored in one blob at most (256 x 768 float32: 0.8 MB)."""
_CACHE_BLOBS = 8  # recently read multi-row blobs kept decoded (item.array of neighbours reads one)

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
        and isinstance(value.get("row", 0), int)
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


def store_rows(store: BlobStore, arrays: Sequence[np.ndarray], model: str | None = None) -> list[ArrayRef]:
    """Store arrays of one dtype and shape, up to `ROWS_PER_BLOB` stacked in a blob; one reference each."""
    import numpy as np

    refs: list[ArrayRef] = []
    for start in range(0, len(arrays), ROWS_PER_BLOB):
        chunk = arrays[start : start + ROWS_PER_BLOB]
        if len(chunk) == 1:
            refs.append(store_array(store, chunk[0], model))
            continue
        digest = store.put(to_npy(np.stack(chunk)))
        for row, array in enumerate(chunk):
            ref: ArrayRef = {"array": digest, "dtype": str(array.dtype), "shape": list(array.shape)}
            ref["row"] = row
            if model:
                ref["model"] = model
            refs.append(ref)
    return refs


def load_array(store: BlobStore, ref: ArrayRef) -> np.ndarray:
    """The array a reference names; ItemError if the blob is missing or does not match the reference."""
    if not is_array_ref(ref):
        raise ItemError(f"not an array reference: {ref!r}")
    if "row" in ref:
        return _blob_rows(store, ref, _RECENT)[ref["row"]].copy()
    array = _read(store, ref["array"])
    if str(array.dtype) != ref["dtype"] or list(array.shape) != list(ref["shape"]):
        raise ItemError(
            f"array blob {ref['array']} holds {array.dtype}{list(array.shape)}, "
            f"the reference says {ref['dtype']}{ref['shape']}"
        )
    return array


def _read(store: BlobStore, digest: str) -> np.ndarray:
    import numpy as np

    try:
        data = store.get(digest)
    except FileNotFoundError:
        raise ItemError(f"array blob {digest} is missing from the workspace (garbage-collected?)") from None
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise ItemError(f"array blob {digest} is not a readable .npy file: {exc}") from None


class _Recent:
    """The last few multi-row blobs read (blobs never change, so a decoded copy stays right)."""

    def __init__(self, size: int):
        self.size = size
        self.lock = threading.Lock()
        self.blobs: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def get(self, key: tuple[str, str]) -> np.ndarray | None:
        with self.lock:
            found = self.blobs.get(key)
            if found is not None:
                self.blobs.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], matrix: np.ndarray) -> None:
        with self.lock:
            self.blobs[key] = matrix
            while len(self.blobs) > self.size:
                self.blobs.popitem(last=False)


_RECENT = _Recent(_CACHE_BLOBS)


def _blob_rows(store: BlobStore, ref: ArrayRef, cache: _Recent | dict) -> np.ndarray:
    """The multi-row matrix a `row` reference points into, checked against the reference."""
    key = (str(store.root), ref["array"])
    matrix = cache.get(key)
    if matrix is None:
        matrix = _read(store, ref["array"])
        matrix.flags.writeable = False
        if isinstance(cache, dict):
            cache[key] = matrix
        else:
            cache.put(key, matrix)
    if (
        str(matrix.dtype) != ref["dtype"]
        or list(matrix.shape[1:]) != list(ref["shape"])
        or not 0 <= ref["row"] < len(matrix)
    ):
        raise ItemError(
            f"array blob {ref['array']} holds {matrix.dtype}{list(matrix.shape)}, "
            f"the reference says row {ref['row']} of {ref['dtype']}{ref['shape']}"
        )
    return matrix


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


def items_matrix(items: Sequence[Item], name: str) -> np.ndarray:
    """The arrays in property `name` of `items`, stacked (n, d) float32 (ItemError naming an item
    that has none); each blob is read once."""
    for item in items:
        ref = item.get(name)
        if ref is None:
            raise ItemError(f"{item.name}: no property {name!r} (run the step that computes it first)")
        if not is_array_ref(ref):
            raise ItemError(f"{item.name}: property {name!r} is not an array reference: {ref!r}")
        if item.store is None:
            raise ItemError(f"{item.name}: item is not attached to a workspace, cannot read {name!r}")
    if not items:
        return load_matrix(None, [])  # type: ignore[arg-type]
    return load_matrix(items[0].store, [item[name] for item in items])  # type: ignore[arg-type]


def load_matrix(store: BlobStore, refs: Iterable[ArrayRef]) -> np.ndarray:
    """Stack 1-d arrays of one shape into an (n, d) float32 matrix.

    Each multi-row blob is read once. For single-array blobs the `.npy` header of a given dtype and
    shape is always the same bytes, so each is checked against it and its data taken as is; anything
    else goes through `load_array` and its checks.
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
    blobs: dict[tuple[str, str], np.ndarray] = {}  # multi-row blobs of this call, each read once
    for row, ref in enumerate(refs):
        if "row" in ref:
            out[row] = _blob_rows(store, ref, blobs)[ref["row"]]
            continue
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
    return externalize_many([props], store, model)[0]


def externalize_many(
    props_list: Sequence[dict[str, Any] | None], store: BlobStore, model: str | None
) -> list[dict[str, Any] | None]:
    """`externalize` for the outcomes of one batch: arrays under one property name (and of one dtype
    and shape) are stored together, `ROWS_PER_BLOB` to a blob. The input dicts are not changed."""
    numpy = sys.modules.get("numpy")
    if numpy is None:  # no numpy loaded: there can be no arrays
        return list(props_list)
    out: list[dict[str, Any] | None] = []
    groups: defaultdict[tuple[str, str, tuple[int, ...]], list[int]] = defaultdict(list)
    for index, props in enumerate(props_list):
        if not props or not any(isinstance(v, (numpy.ndarray, numpy.generic)) for v in props.values()):
            out.append(props)
            continue
        props = dict(props)
        for key, value in props.items():
            if isinstance(value, numpy.ndarray):
                groups[(key, str(value.dtype), value.shape)].append(index)
            elif isinstance(value, numpy.generic):
                props[key] = value.item()
        out.append(props)
    for (key, _, _), indices in groups.items():
        refs = store_rows(store, [out[i][key] for i in indices], model)  # type: ignore[index]
        for i, ref in zip(indices, refs):
            out[i][key] = ref  # type: ignore[index]
    return out


def referenced_digests(props_json: Iterable[str | None]) -> Iterator[str]:
    """Blob digests referenced by arrays in canonical-JSON property texts (for garbage collection)."""
    for text in props_json:
        if text and '"array":"' in text:
            yield from _REF_IN_JSON.findall(text)
