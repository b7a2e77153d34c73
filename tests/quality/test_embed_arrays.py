"""Arrays as blobs: .npy bytes in the blob store, references in properties, read back by later steps."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest

from captionary import BatchStep, GlobalStep, ItemError, Load, Map, Outcome, Workspace
from captionary.core.arrays import (
    externalize,
    is_array_ref,
    load_array,
    load_matrix,
    referenced_digests,
    store_array,
)

CALLS: list[int] = []


def pixel_mean(item) -> np.ndarray:
    """A real per-image vector: the mean RGB of the pixels, unit length."""
    rgb = np.asarray(item.image.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0)
    return rgb / np.linalg.norm(rgb)


class TArraysEmbed(BatchStep):
    name: ClassVar[str] = "t_arrays_embed"
    writes: ClassVar[tuple[str, ...]] = ("vec", "norm")
    batch_size: int = 4

    def model_id(self) -> str:
        return "mean-rgb@1"

    def apply_batch(self, items):
        CALLS.append(len(items))
        out = []
        for item in items:
            vec = pixel_mean(item)
            out.append({"vec": vec, "norm": np.float32(np.linalg.norm(vec))})
        return out


class TArraysMapEmbed(Map):
    """The same vector from a map step run in the process pool."""

    name: ClassVar[str] = "t_arrays_map_embed"
    writes: ClassVar[tuple[str, ...]] = ("map_vec",)
    parallel: ClassVar[bool] = True

    def apply(self, item):
        return {"map_vec": pixel_mean(item).astype(np.float16)}


class TArraysCentroid(GlobalStep):
    """Reads every item's array back and writes its cosine similarity to the centroid."""

    name: ClassVar[str] = "t_arrays_centroid"
    reads: ClassVar[tuple[str, ...]] = ("vec",)
    writes: ClassVar[tuple[str, ...]] = ("to_centroid",)

    def apply_all(self, items: Sequence) -> list[Outcome]:
        matrix = np.stack([item.array("vec") for item in items])
        centroid = matrix.mean(axis=0)
        centroid /= np.linalg.norm(centroid)
        return [Outcome(props={"to_centroid": float(row @ centroid)}) for row in matrix]


def test_store_and_load_round_trip_with_checks(ws_path):
    with Workspace(ws_path) as ws:
        array = np.arange(12, dtype=np.float32).reshape(3, 4)
        ref = store_array(ws.blobs, array, model="m")
        assert ref == {"array": ref["array"], "dtype": "float32", "shape": [3, 4], "model": "m"}
        assert is_array_ref(ref) and not is_array_ref({"array": "nope", "dtype": "f", "shape": []})
        np.testing.assert_array_equal(load_array(ws.blobs, ref), array)
        assert store_array(ws.blobs, array.copy())["array"] == ref["array"]  # content-addressed
        stored = io.BytesIO(ws.blobs.get(ref["array"]))  # plain .npy bytes
        np.testing.assert_array_equal(np.load(stored, allow_pickle=False), array)

        with pytest.raises(ItemError, match=r"holds float32\[3, 4\], the reference says float64\[3, 4\]"):
            load_array(ws.blobs, {**ref, "dtype": "float64"})
        with pytest.raises(ItemError, match="missing from the workspace"):
            load_array(ws.blobs, {**ref, "array": "0" * 64})
        not_npy = ws.blobs.put(b"not an array")
        with pytest.raises(ItemError, match=r"not a readable \.npy"):
            load_array(ws.blobs, {**ref, "array": not_npy})
        with pytest.raises(ValueError, match="pickle"):
            store_array(ws.blobs, np.array([{"a": 1}], dtype=object))

        refs = [store_array(ws.blobs, np.full(4, i, dtype=np.float64)) for i in range(3)]
        matrix = load_matrix(ws.blobs, refs)
        assert matrix.shape == (3, 4) and matrix.dtype == np.float32 and matrix[2, 0] == 2
        with pytest.raises(ItemError, match="different shapes"):
            load_matrix(ws.blobs, [refs[0], store_array(ws.blobs, np.zeros(5))])


def test_load_matrix_fast_path_checks_every_blob(ws_path):
    rng = np.random.default_rng(0)
    with Workspace(ws_path) as ws:
        arrays = [rng.standard_normal(8).astype(np.float32) for _ in range(50)]
        refs = [store_array(ws.blobs, a) for a in arrays]
        refs.append(store_array(ws.blobs, np.arange(8, dtype=np.float16)))  # another dtype, converted
        matrix = load_matrix(ws.blobs, refs)
        assert matrix.dtype == np.float32 and matrix.shape == (51, 8)
        np.testing.assert_array_equal(matrix[:50], np.stack(arrays))
        np.testing.assert_array_equal(matrix[50], np.arange(8))

        lying = {**refs[0], "dtype": "float64"}  # the blob holds float32: the header does not match
        with pytest.raises(ItemError, match=r"holds float32\[8\], the reference says float64\[8\]"):
            load_matrix(ws.blobs, [refs[1], lying])
        with pytest.raises(ItemError, match="missing from the workspace"):
            load_matrix(ws.blobs, [refs[1], {**refs[0], "array": "f" * 64}])
        truncated = ws.blobs.put(ws.blobs.get(refs[2]["array"])[:-4])
        with pytest.raises(ItemError, match="not a readable"):
            load_matrix(ws.blobs, [{**refs[2], "array": truncated}])


def test_arrays_of_a_batch_share_blobs_by_rows(ws_path, monkeypatch):
    import captionary.core.arrays as arrays

    monkeypatch.setattr(arrays, "ROWS_PER_BLOB", 4)
    rng = np.random.default_rng(1)
    with Workspace(ws_path) as ws:
        batch = [
            {"vec": rng.standard_normal(6).astype(np.float32), "n": np.int64(i), "tag": "x"}
            for i in range(10)
        ]
        batch.insert(3, {"tag": "no arrays"})
        batch.insert(5, None)
        out = arrays.externalize_many(batch, ws.blobs, "m")
        assert out[3] is batch[3] and out[5] is None and isinstance(batch[0]["vec"], np.ndarray)
        refs = [o["vec"] for o in out if o and "vec" in o]
        assert [r.get("row") for r in refs] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]  # blobs of 4, 4 and 2 rows
        assert len({r["array"] for r in refs}) == 3
        assert [o["n"] for o in out if o and "n" in o] == list(range(10)) and type(out[0]["n"]) is int
        originals = [b["vec"] for b in batch if b and "vec" in b]
        np.testing.assert_array_equal(load_matrix(ws.blobs, refs), np.stack(originals))
        np.testing.assert_array_equal(load_array(ws.blobs, refs[6]), originals[6])
        single = store_array(ws.blobs, originals[0])
        np.testing.assert_array_equal(
            load_matrix(ws.blobs, [refs[9], single]), np.stack([originals[9], originals[0]])
        )

        first = load_array(ws.blobs, refs[1])
        first[:] = 0  # a copy: the recently-read blob cache is not changed
        np.testing.assert_array_equal(load_array(ws.blobs, refs[1]), originals[1])
        with pytest.raises(ItemError, match=r"row 4 of float32\[6\]"):
            load_array(ws.blobs, {**refs[0], "row": 4})
        with pytest.raises(ItemError, match=r"holds float32\[4, 6\], the reference says row 0 of float64"):
            load_matrix(ws.blobs, [{**refs[0], "dtype": "float64"}])


def test_externalize_replaces_only_numpy_values(ws_path):
    with Workspace(ws_path) as ws:
        props = {"caption": "a dog", "score": np.float64(0.5), "vec": np.ones(3, dtype=np.float32)}
        out = externalize(props, ws.blobs, "model-x")
        assert out is not props and props["vec"].shape == (3,)  # the input is not mutated
        assert out["caption"] == "a dog" and type(out["score"]) is float and out["score"] == 0.5
        assert out["vec"]["model"] == "model-x" and out["vec"]["shape"] == [3]
        plain = {"caption": "x"}
        assert externalize(plain, ws.blobs, None) is plain
        text = json.dumps(out, sort_keys=True, separators=(",", ":"))
        assert list(referenced_digests([text, None, "{}"])) == [out["vec"]["array"]]


def test_batch_step_arrays_are_blobs_cached_and_read_by_a_global_step(photos, ws_path):
    CALLS.clear()
    pipeline = Load(photos) >> TArraysEmbed() >> TArraysCentroid()
    with Workspace(ws_path) as ws:
        first = ws.run(pipeline, progress=False)
        items = list(ws.items())
        assert first.step("t_arrays_embed").computed == 12 and not first.errors
        for item in items:
            ref = item["vec"]
            assert is_array_ref(ref) and ref["model"] == "mean-rgb@1" and ref["shape"] == [3]
            vec = ws.load_array(ref)
            np.testing.assert_allclose(vec, pixel_mean(item), rtol=1e-6)
            assert item["norm"] == pytest.approx(1.0, abs=1e-5)
            assert -1.0 <= item["to_centroid"] <= 1.0 + 1e-6
        # the stored properties are small JSON references, not the vector
        db = sqlite3.connect(ws_path / "captionary.db")
        rows = db.execute("SELECT props FROM results WHERE step = 't_arrays_embed'")
        props = [json.loads(p) for (p,) in rows]
        assert all(set(p["vec"]) == {"array", "dtype", "shape", "model", "row"} for p in props)
        # one blob per batch of 4 (a (4, 3) matrix), each item's reference naming its row
        blobs = {p["vec"]["array"] for p in props}
        assert len(blobs) == 3 and sorted(p["vec"]["row"] for p in props) == [
            0,
            0,
            0,
            1,
            1,
            1,
            2,
            2,
            2,
            3,
            3,
            3,
        ]
        assert all(np.load(io.BytesIO(ws.blobs.get(b)), allow_pickle=False).shape == (4, 3) for b in blobs)

        CALLS.clear()
        again = ws.run(pipeline, progress=False)
        assert CALLS == [] and again.step("t_arrays_embed").cached == 12
        assert [i["to_centroid"] for i in ws.items()] == [i["to_centroid"] for i in items]

        # the photos differ in colour, so the similarities do too (the arrays are per item)
        assert len({round(i["to_centroid"], 6) for i in items}) > 6

        # gc keeps array blobs that properties refer to
        digests = {item["vec"]["array"] for item in items}
        ws.gc()
        assert all(d in ws.blobs for d in digests)
        ws.db.execute("DELETE FROM results WHERE step = 't_arrays_embed'")
        ws.db.execute("DELETE FROM item_state")
        ws.db.commit()
        ws.gc()
        assert not any(d in ws.blobs for d in digests)


def test_map_step_in_the_process_pool_stores_arrays(photos, ws_path):
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> TArraysMapEmbed(), progress=False, workers=2)
        assert summary.step("t_arrays_map_embed").computed == 12 and not summary.errors
        for item in ws.items():
            assert item["map_vec"]["dtype"] == "float16"
            np.testing.assert_allclose(item.array("map_vec"), pixel_mean(item), atol=1e-3)


def test_reading_a_missing_array_names_the_item(photos, ws_path):
    with Workspace(ws_path) as ws:
        ws.run(Load(photos), progress=False)
        item = next(iter(ws.items()))
        with pytest.raises(ItemError, match=rf"{item.name}: no property 'vec'"):
            item.array("vec")
        with pytest.raises(ItemError, match="not an array reference"):
            item.array("width")
