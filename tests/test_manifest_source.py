"""`load_manifest`: every manifest format, with real rows (not column names), relative paths, bad rows."""

from __future__ import annotations

import csv
import json

import pytest

from captionary import LoadManifest, ParamError, Save, Workspace

ROWS = [
    {"image": "photos/dog/00.jpg", "caption": "a dog on grass", "score": 0.9},
    {"image": "photos/cat/01.jpg", "caption": "a cat, indoors", "score": 0.4},
    {"image": "photos/teapot/00.jpg", "caption": "a teapot", "score": 0.7},
]


def write_manifest(folder, fmt, rows=ROWS):
    path = folder / f"meta.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt in ("csv", "tsv"):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "parquet"])
def test_every_format_reads_its_rows(fmt, photos, tmp_path):
    manifest = write_manifest(photos.parent, fmt)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadManifest(manifest) >> Save(tmp_path / "out"), progress=False)
        items = {item.name: item for item in ws.items()}
        again = ws.run(LoadManifest(manifest) >> Save(tmp_path / "out"), progress=False)
    assert summary.step("load_manifest").computed == 3 and again.computed == 0
    assert set(items) == {"photos/dog/00", "photos/cat/01", "photos/teapot/00"}
    assert items["photos/cat/01"]["caption"] == "a cat, indoors"
    score = items["photos/dog/00"]["score"]
    assert float(score) == 0.9  # CSV/TSV values are text, the others keep their JSON types
    assert items["photos/dog/00"].width == 640
    assert (tmp_path / "out" / "photos" / "teapot" / "00.txt").read_text() == "a teapot\n"


def test_columns_are_configurable(photos):
    rows = [{"file": "dog/01.jpg", "text": "a dog"}]
    manifest = write_manifest(photos, "jsonl", rows)
    with Workspace(photos.parent / "ws") as ws:
        ws.run(LoadManifest(manifest, image_column="file", caption_column="text"), progress=False)
        [item] = ws.items()
    assert item["caption"] == "a dog" and "text" not in item.props and item.name == "dog/01"


def test_bad_rows_are_recorded_with_their_line(photos, tmp_path):
    manifest = photos.parent / "meta.csv"
    manifest.write_text(
        "image,caption\n"
        "photos/dog/00.jpg,a dog\n"
        "photos/missing.jpg,gone\n"
        "photos/cat/00.jpg,a cat,extra field\n"
        "photos/teapot/01.jpg,a teapot\n"
    )
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadManifest(manifest), progress=False)
    assert summary.step("load_manifest").n_out == 2
    reasons = sorted(e["reason"] for e in summary.errors)
    assert reasons[0].startswith("meta.csv:3: image not found:") and "missing.jpg" in reasons[0]
    assert reasons[1] == "meta.csv:4: malformed line: not the 2 fields of the header"


def test_malformed_jsonl_line_and_missing_column(photos, tmp_path):
    manifest = photos.parent / "meta.jsonl"
    manifest.write_text('{"image": "photos/dog/00.jpg"}\n{not json\n{"path": "photos/cat/00.jpg"}\n')
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadManifest(manifest), progress=False)
    assert summary.step("load_manifest").n_out == 1
    reasons = [e["reason"] for e in summary.errors]
    assert reasons[0].startswith("meta.jsonl:2: invalid JSON")
    assert reasons[1] == "meta.jsonl:3: no image path in column 'image' (columns: path; set image_column:)"


def test_missing_manifest_or_unknown_format(tmp_path):
    with pytest.raises(ParamError, match="file not found"):
        LoadManifest(tmp_path / "nope.csv")
    (tmp_path / "list.txt").write_text("x")
    with pytest.raises(ParamError, match=r"cannot tell the format of list\.txt"):
        LoadManifest(tmp_path / "list.txt")
