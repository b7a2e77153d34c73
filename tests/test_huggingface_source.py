"""`load_hf` on real local datasets (built in the test: no hub here): save_to_disk and imagefolder."""

from __future__ import annotations

import pytest

from captionary import Load, LoadHuggingFace, Resize, Save, Workspace

datasets = pytest.importorskip("datasets")


@pytest.fixture
def saved_dataset(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    paths = sorted(photos.glob("dog/*.jpg"))
    features = datasets.Features(
        {"image": datasets.Image(), "text": datasets.Value("string"), "score": datasets.Value("float32")}
    )
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": p.read_bytes(), "path": None} for p in paths],
            "text": [f"dog number {i}" for i in range(len(paths))],
            "score": [0.5] * len(paths),
        },
        features=features,
    )
    folder = tmp_path / "hf-dogs"
    ds.save_to_disk(str(folder))
    return folder, paths


def test_saved_dataset_rows_become_items(saved_dataset, tmp_path):
    folder, paths = saved_dataset
    source = LoadHuggingFace(dataset=str(folder), caption_column="text")
    with Workspace(tmp_path / "ws") as ws:
        first = ws.run(source >> Resize(max_edge=64) >> Save(tmp_path / "out"), progress=False)
        items = {item.name: item for item in ws.items()}
        again = ws.run(source >> Resize(max_edge=64) >> Save(tmp_path / "out"), progress=False)
    assert first.step("load_hf").computed == len(paths) and again.computed == 0
    assert items["train/000002"]["caption"] == "dog number 2" and items["train/000002"]["score"] == 0.5
    assert (tmp_path / "out" / "train" / "000002.txt").read_text() == "dog number 2\n"
    with Workspace(tmp_path / "ws2") as ws:  # the same images through the folder source: same ids
        ws.run(Load(paths[0].parent), progress=False)
        assert {i.id for i in ws.items()} == {i.id for i in items.values()}


def test_imagefolder_dataset_and_missing_column(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadHuggingFace(dataset=str(photos / "cat")), progress=False)
        assert summary.step("load_hf").n_out == 3
        bad = ws.run(LoadHuggingFace(dataset=str(photos / "cat"), image_column="picture"), progress=False)
    assert "no column 'picture' (columns: image" in bad.errors[0]["reason"]
