"""Every export format round-trips: what captionary's save step wrote reads back with the same captions
and image sizes (and the images decode to those sizes)."""

from __future__ import annotations

import csv
import json
import os
import threading

import loader_fixtures
import pytest
from PIL import Image

from captionary import Load, Save, Workspace, step
from captionary.errors import ConfigError
from captionary.loader import ImageCaptionDataset, detect_format, read_records
from captionary.loader.records import Record, open_image

pytest.importorskip("torch")
export, varied, expected = loader_fixtures.export, loader_fixtures.varied, loader_fixtures.expected

NO_AUGMENT = {"buckets": {"enable": False, "resolution": 64, "min_bucket_reso": 64}}


def read_back(dataset) -> list[tuple[tuple[str, ...], tuple[int, int]]]:
    rows = []
    for index, record in enumerate(dataset.records):
        image = open_image(record, dataset.downloads)
        assert image.size == dataset.sizes[index]  # the header probe agrees with the decoded image
        rows.append((record.captions, image.size))
    return sorted(rows)


@pytest.mark.parametrize(
    ("fmt", "options", "detected"),
    [
        ("kohya", {}, "kohya"),
        ("kohya", {"caption_ext": ".caption"}, "kohya"),
        ("kohya_json", {}, "kohya_json"),
        ("imagefolder", {}, "imagefolder"),
        ("jsonl", {}, "jsonl"),
        ("parquet", {}, "parquet"),
        ("parquet", {"embed_images": True}, "parquet"),
        ("webdataset", {"shard_size": 4}, "webdataset"),
    ],
)
def test_export_round_trips(export, varied, fmt, options, detected):
    pytest.importorskip("pyarrow")
    out = export(fmt, **options)
    assert detect_format(out) == detected
    want = expected(varied)
    if fmt == "webdataset":
        dataset = ImageCaptionDataset(out, **NO_AUGMENT)
        got = sorted((r.captions, open_image(r).size) for r in dataset.records())
        assert got == want
        return
    dataset = ImageCaptionDataset(out, **NO_AUGMENT)
    assert dataset.format == detected
    assert read_back(dataset) == want


def test_parquet_embedded_bytes_need_no_image_files(export, varied):
    pytest.importorskip("pyarrow")
    out = export("parquet", embed_images=True)
    [shard] = (out / "data").glob("train-*.parquet")
    moved = out.parent / "elsewhere.parquet"
    shard.rename(moved)
    dataset = ImageCaptionDataset(moved, **NO_AUGMENT)
    assert all(isinstance(r.image, bytes) for r in dataset.records)
    assert read_back(dataset) == expected(varied)


def test_workspace_is_read_directly(export, varied, tmp_path):
    export("kohya")
    dataset = ImageCaptionDataset(tmp_path / "ws", **NO_AUGMENT)
    assert dataset.format == "workspace"
    assert read_back(dataset) == expected(varied)


def test_workspace_items_with_derived_images(varied, tmp_path):
    from captionary import Load, Resize, Workspace

    with Workspace(tmp_path / "ws2") as ws:
        ws.run(Load(varied) >> Resize(max_edge=100), progress=False)
    dataset = ImageCaptionDataset(tmp_path / "ws2", **NO_AUGMENT)
    sizes = sorted(open_image(r).size for r in dataset.records)
    assert max(max(s) for s in sizes) == 100  # the resize recipe is replayed from the original blob
    assert sorted(dataset.sizes) == sizes


def test_csv_and_tsv_manifests_resolve_relative_paths(varied, tmp_path):
    images = sorted(varied.rglob("*.jpg"))
    for delimiter, suffix in ((",", ".csv"), ("\t", ".tsv")):
        manifest = varied / f"list{suffix}"
        with open(manifest, "w", newline="") as f:
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerow(["file_name", "caption"])
            for image in images:
                writer.writerow([image.relative_to(varied).as_posix(), image.with_suffix(".txt").read_text()])
        dataset = ImageCaptionDataset(manifest, **NO_AUGMENT)
        assert dataset.format == suffix[1:]
        assert read_back(dataset) == expected(varied)


def test_huggingface_dataset_on_disk(export, varied, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = export("imagefolder")
    cache = str(tmp_path / "hf")
    hf = datasets.load_dataset("imagefolder", data_dir=str(out), split="train", cache_dir=cache)
    hf.save_to_disk(str(tmp_path / "saved"))
    for source in (hf, tmp_path / "saved"):
        dataset = ImageCaptionDataset(source, **NO_AUGMENT)
        assert dataset.format == "huggingface"
        assert read_back(dataset) == expected(varied)


def test_image_urls_are_downloaded_once(varied, tmp_path):
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(varied), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        images = sorted(varied.rglob("*.jpg"))
        manifest = tmp_path / "urls.jsonl"
        manifest.write_text(
            "".join(
                json.dumps({"url": f"{base}/{p.relative_to(varied).as_posix()}", "caption": p.stem}) + "\n"
                for p in images
            )
        )
        first = ImageCaptionDataset(manifest, cache_dir=tmp_path / "cache", **NO_AUGMENT)
        assert len(hits) == len(images)
        again = ImageCaptionDataset(manifest, cache_dir=tmp_path / "cache", **NO_AUGMENT)
        sample = again[0]
        assert len(hits) == len(images)  # the second dataset and its samples read the cache
        assert sample["pixel_values"].shape == (3, 64, 64)
        assert sorted(first.sizes) == sorted(s for _, s in expected(varied))
    finally:
        server.shutdown()


def test_bad_manifest_row_names_file_and_line(tmp_path, varied):
    manifest = tmp_path / "meta.jsonl"
    manifest.write_text('{"image_path": "missing.jpg", "caption": "x"}\n')
    with pytest.raises(ConfigError, match=r"meta\.jsonl:1: image not found"):
        read_records(manifest)
    manifest.write_text('{"image_path": "a.jpg"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"meta\.jsonl:1"):
        read_records(manifest)
    manifest.write_text('{"caption": "no image"}\n')
    with pytest.raises(ConfigError, match=r"meta\.jsonl:1: no image in column"):
        read_records(manifest)
    with pytest.raises(ConfigError, match="dataset not found"):
        ImageCaptionDataset(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="unknown format 'tfrecord'"):
        ImageCaptionDataset(varied, format="tfrecord")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['caption_colum'\]"):
        ImageCaptionDataset(varied, caption_colum="text")


def test_unreadable_images_fail_clearly_or_are_skipped_and_reported(varied, tmp_path):
    from captionary.loader import preview

    bad = varied / "dog" / "99.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    buckets = {"bucket_no_upscale": True}
    with pytest.raises(ConfigError, match=r"dog/99\.jpg: cannot read the image header.*on_error='skip'"):
        ImageCaptionDataset(varied, buckets=buckets)
    tiny = varied / "cat" / "tiny.png"
    Image.new("RGB", (40, 400)).save(tiny)
    dataset = ImageCaptionDataset(varied, buckets=buckets, on_error="skip")
    assert len(dataset) == 10
    reasons = dict(dataset.skipped)
    assert "cannot read the image header" in reasons[str(bad)]
    assert "smaller than one bucket step (64 px)" in reasons[str(tiny)]
    result = preview(varied, tmp_path / "p.png", batch_size=2, buckets=buckets)
    assert "2 image(s) skipped" in result.report and str(bad) in result.report


def test_globs_and_brace_patterns(export, varied):
    dogs = ImageCaptionDataset(str(varied / "dog" / "*.jpg"), **NO_AUGMENT)
    assert dogs.format == "files"
    want = [row for row in expected(varied) if row[0][0].startswith("sks dog")]
    assert read_back(dogs) == sorted(want)
    out = export("webdataset", shard_size=4)
    shards = ImageCaptionDataset(str(out / "shard-{000000..000001}.tar"), **NO_AUGMENT)
    assert len(shards.urls) == 2
    assert len(list(shards.records())) == 8


@step(reads=("caption",), writes=("caption",), reads_image=False)
def two_captions(item):
    """Several captions per image, as caption_variations writes them."""
    first = str(item.get("caption", "")).splitlines()[0]
    return {"caption": [first, f"{first}, variant"]}


@pytest.mark.parametrize("fmt", ["kohya", "jsonl", "parquet", "imagefolder", "webdataset"])
def test_several_captions_per_image_round_trip(varied, tmp_path, fmt):
    pytest.importorskip("pyarrow")
    out = tmp_path / fmt
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(varied) >> two_captions() >> Save(out, format=fmt), progress=False)
    dataset = ImageCaptionDataset(out, **NO_AUGMENT)
    records = list(dataset.records()) if fmt == "webdataset" else dataset.records
    assert len(records) == 10
    for record in records:
        assert len(record.captions) == 2 and record.captions[1] == f"{record.captions[0]}, variant"


def test_an_unusable_manifest_line_stops_the_read_naming_file_and_line(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    manifest = tmp_path / "meta.jsonl"
    manifest.write_text('{"image_path": "a.jpg"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"meta\.jsonl:2: invalid JSON"):
        read_records(manifest)
    manifest.write_text('{"image_path": "a.jpg"}\n["a list"]\n')
    with pytest.raises(ConfigError, match=r"meta\.jsonl:2: not a JSON object"):
        read_records(manifest)
    table = tmp_path / "meta.csv"
    table.write_text("image_path,caption\na.jpg,a photo\na.jpg\n")
    with pytest.raises(ConfigError, match=r"meta\.csv:3: malformed line: not the 2 fields of the header"):
        read_records(table)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_named_like_an_image_is_refused_not_waited_on(varied):
    """A FIFO in a training folder (a tar can hold one) would block the loader forever on open: it
    is refused like any unreadable image, naming the file and what it is."""
    fifo = varied / "dog" / "98.jpg"
    os.mkfifo(fifo)
    outcome: dict[str, object] = {}

    def build() -> None:
        try:
            outcome["skipped"] = ImageCaptionDataset(
                varied, buckets={"bucket_no_upscale": True}, on_error="skip"
            ).skipped
            outcome["opened"] = open_image(Record("98", str(fifo), (), where=str(fifo)))
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the loader blocked on the FIFO"
    reasons = dict(outcome["skipped"])
    assert "not a regular file (a FIFO)" in reasons[str(fifo)]
    assert isinstance(outcome["error"], ValueError)
    assert f"{fifo}: cannot read the image: not a regular file (a FIFO)" in str(outcome["error"])
