"""Manifest export formats, read back with the libraries trainers use."""

from __future__ import annotations

import json
import os

import pytest

from captionary import Load, Resize, Save, Workspace


@pytest.fixture
def exported(photos, ws_path, tmp_path):
    def export(fmt: str, **options):
        out = tmp_path / fmt
        with Workspace(ws_path) as ws:
            summary = ws.run(
                Load(photos) >> Resize(max_edge=96) >> Save(out, format=fmt, **options), progress=False
            )
        return out, summary

    return export


def test_imagefolder_loads_with_hugging_face_datasets(exported, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    out, _ = exported("imagefolder", caption_column="prompt")
    dataset = datasets.load_dataset(
        "imagefolder", data_dir=str(out), split="train", cache_dir=str(out.parent / "hf-cache")
    )
    assert len(dataset) == 12
    rows = {row["prompt"]: row for row in dataset if row["prompt"]}
    assert set(rows) == {"a photo of sks dog"}
    for row in dataset:
        assert row["image"].size == (row["width"], row["height"])
        assert max(row["image"].size) == 96


def test_jsonl_manifest_points_at_every_image(exported):
    out, _ = exported("jsonl")
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert [r["image_path"] for r in rows] == sorted(r["image_path"] for r in rows)
    for row in rows:
        assert os.path.isfile(out / row["image_path"])
    assert rows[[r["image_path"] for r in rows].index("dog/00.jpg")]["caption"] == "a photo of sks dog"


def test_manifest_is_rewritten_only_when_it_changes(exported, photos):
    out, _ = exported("jsonl")
    stamp = (out / "metadata.jsonl").stat().st_mtime_ns
    _, again = exported("jsonl")
    assert again.step("save").computed == 0
    assert (out / "metadata.jsonl").stat().st_mtime_ns == stamp
    (photos / "cat" / "00.txt").write_text("a grey cat\n")
    exported("jsonl")
    assert '"caption":"a grey cat"' in (out / "metadata.jsonl").read_text()


def test_parquet_rows_and_embedded_images_read_back_with_pyarrow(exported):
    pq = pytest.importorskip("pyarrow.parquet")
    from io import BytesIO

    from PIL import Image

    out, _ = exported("parquet", embed_images=True)
    table = pq.read_table(out / "data" / "train-00000-of-00001.parquet")
    assert table.num_rows == 12
    assert {"image_path", "caption", "width", "height", "image"} <= set(table.column_names)
    for row in table.to_pylist():
        assert row["image"]["bytes"] == (out / ".images" / row["image_path"]).read_bytes()
        assert Image.open(BytesIO(row["image"]["bytes"])).size == (row["width"], row["height"])
    captions = dict(zip(table["image_path"].to_pylist(), table["caption"].to_pylist(), strict=True))
    assert captions["dog/01.jpg"] == "a photo of sks dog" and captions["cat/00.jpg"] == ""


def test_embed_images_is_only_for_parquet():
    from captionary import ParamError

    with pytest.raises(ParamError, match="only for format: parquet"):
        Save("out", format="jsonl", embed_images=True)


def test_kohya_json_metadata_beside_a_flat_image_folder(exported, photos, capsys):
    (photos / "cat" / "00.json").write_text('{"caption": ["a cat", "a grey cat"], "tags": ["cat", "sofa"]}')
    out, _ = exported("kohya_json")
    where = out.parent / f"{out.name}.json"
    assert f"kohya_json metadata written to {where}" in capsys.readouterr().out  # it sits outside out/
    metadata = json.loads(where.read_text())
    assert set(metadata) == {p.stem for p in out.glob("*.jpg")} and len(metadata) == 12
    assert metadata["dog_00"] == {"caption": "a photo of sks dog"}
    assert metadata["cat_00"] == {"caption": "a cat", "tags": "cat, sofa"}
    assert metadata["teapot_00"] == {"caption": ""}  # no caption (missing_caption: empty), no tags
    assert not [p for p in out.iterdir() if p.is_dir()]  # flat, as kohya's fine-tuning expects
