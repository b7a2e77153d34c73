"""What the trainer reads is what captionary shows (issue 14): every export format read back with the
consumer's own library, as the trainer reads it, on real photos stored with EXIF orientations 3, 6 and 8,
an uncaptioned image, a two-line caption, and unicode and dotted file names."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from captionary import Load, Resize, Save, Workspace
from captionary.loader.buckets import BucketConfig, Buckets

DREAMBOOTH = Path("/work/shared/data/dreambooth")
if not (DREAMBOOTH / "dog").is_dir():  # the repository's bundled samples are real photos too
    DREAMBOOTH = Path(__file__).resolve().parents[1] / "examples" / "photos"

ORIENTATION = 0x0112
STORED = {  # EXIF orientation -> how to turn the upright picture into the stored pixels
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # a viewer turns it back with ROTATE_270, as exif_transpose does
    8: Image.Transpose.ROTATE_270,
}
# source name, photo, EXIF orientation (None: no tag), caption (None: no caption file)
CASES = [
    ("dog/plain", "dog/00.jpg", None, "a photo of sks dog"),
    ("dog/turned6", "dog/01.jpg", 6, "a dog, phone held upright"),
    ("dog/turned8", "dog/02.jpg", 8, "a dog, phone held the other way"),
    ("cat/upside.down", "cat/00.jpg", 3, "a cat upside down"),
    ("cat/uncaptioned", "cat/01.jpg", None, None),
    ("cat/ünïcödé photo.v2", "cat/02.jpg", 6, "first line of the caption\nsecond line"),
]


@pytest.fixture(scope="module")
def uprights() -> dict[str, Image.Image]:
    """Each case's upright picture (what every reader must see), small so the tests stay fast."""
    pictures = {}
    for name, photo, _, _ in CASES:
        with Image.open(DREAMBOOTH / photo) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        image.thumbnail((160, 160))
        width, height = image.size
        pictures[name] = image.crop((0, 0, width, int(height * 0.75)))  # landscape: orientation shows
    return pictures


@pytest.fixture
def source(tmp_path, uprights) -> Path:
    """The cases as a folder: pixels stored turned, with the EXIF tag that turns them back."""
    folder = tmp_path / "in"
    for name, _, orientation, caption in CASES:
        target = folder / f"{name}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        stored = uprights[name]
        exif = Image.Exif()
        if orientation:
            stored = stored.transpose(STORED[orientation])
            exif[ORIENTATION] = orientation
        stored.save(target, quality=95, exif=exif.tobytes())
        if caption is not None:
            target.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
    return folder


ENGINE = {"name": "pillow"}


@pytest.fixture(autouse=True)
def on_each_engine(engine):
    """Every export here runs on each image engine (`engine` of the image steps and `save`)."""
    ENGINE["name"] = engine
    return engine


def on_engine(step):
    return type(step)(**{**step.params, "engine": ENGINE["name"]})


def export(source: Path, out: Path, *steps, **options):
    with Workspace(out.parent / "ws") as ws:
        pipeline = Load(source)
        for step in steps:
            pipeline = pipeline >> on_engine(step)
        return ws.run(pipeline >> Save(out, engine=ENGINE["name"], **options), progress=False)


def difference(a: Image.Image, b: Image.Image) -> float:
    a, b = (x.convert("L").resize((32, 32)) for x in (a, b))
    return ImageStat.Stat(ImageChops.difference(a, b)).mean[0]


def check_upright(image: Image.Image, uprights: dict[str, Image.Image], raw: bytes | None = None) -> str:
    """The case this image is: its pixels match that case's upright picture (not a turned one), at the
    same size, and a file carries no orientation to turn it again."""
    if raw is not None:
        assert Image.open(io.BytesIO(raw)).getexif().get(ORIENTATION, 1) == 1
    name = min(
        uprights, key=lambda n: difference(image, uprights[n]) if image.size == uprights[n].size else 1e9
    )
    want = uprights[name]
    assert image.size == want.size, f"{name}: {image.size} != upright {want.size}"
    assert difference(image, want) < 6 < difference(image, want.transpose(Image.Transpose.ROTATE_180)), name
    return name


def caption_of(name: str) -> str:
    return next(caption for n, _, _, caption in CASES if n == name) or ""


def test_kohya_folders_read_by_kohyas_rules(source, tmp_path, uprights):
    """sd-scripts' DreamBooth mode: subfolders `N_name` (others ignored), images beside `<stem><ext>`
    caption files whose first line is the caption (an empty file is refused), buckets chosen from the
    file's raw pixel size (imagesize, no EXIF)."""
    out = tmp_path / "kohya"
    summary = export(source, out, repeats={"dog": 10, "cat": 5}, caption_ext=".caption")
    assert summary.step("save").usage == {"uncaptioned_exported_with_empty_caption": 1}
    buckets = Buckets(BucketConfig(resolution=512))
    seen = {}
    for folder in sorted(out.iterdir()):
        tokens = folder.name.split("_")
        assert folder.is_dir() and tokens[0].isdigit(), f"kohya would ignore {folder.name}"
        repeats, class_tokens = int(tokens[0]), "_".join(tokens[1:])
        for image_path in sorted(p for p in folder.iterdir() if p.suffix == ".jpg"):
            lines = image_path.with_suffix(".caption").read_text(encoding="utf-8").splitlines(keepends=True)
            assert len(lines) > 0  # kohya: "caption file is empty"
            raw = image_path.read_bytes()
            with Image.open(io.BytesIO(raw)) as image:
                raw_size = image.size  # what imagesize.get reports: the stored pixels, EXIF ignored
                name = check_upright(image, uprights, raw)
            upright = uprights[name].size
            assert buckets.select(*raw_size).reso == buckets.select(*upright).reso
            seen[name] = (repeats, class_tokens, lines[0].strip())
    assert seen == {
        name: ({"dog": 10, "cat": 5}[name.split("/")[0]], name.split("/")[0], caption_of(name).split("\n")[0])
        for name, *_ in CASES
    }


def test_kohya_json_read_by_kohyas_fine_tuning_rules(source, tmp_path, uprights):
    """sd-scripts' fine-tuning mode: `--in_json` maps an image key (file stem in `--train_data_dir`) to
    its caption; the image is found by key and an image extension; buckets from the raw pixel size."""
    out = tmp_path / "flat"
    export(source, out, format="kohya_json")
    metadata = json.loads((tmp_path / "flat.json").read_text(encoding="utf-8"))
    buckets = Buckets(BucketConfig(resolution=512))
    names = set()
    for key, entry in metadata.items():
        [image_path] = [p for p in out.glob(f"{key}.*") if p.suffix in (".jpg", ".png", ".webp")]
        assert isinstance(entry["caption"], str)
        raw = image_path.read_bytes()
        with Image.open(io.BytesIO(raw)) as image:
            name = check_upright(image, uprights, raw)
            assert buckets.select(*image.size).reso == buckets.select(*uprights[name].size).reso
        assert entry["caption"] == caption_of(name)
        names.add(name)
    assert names == set(uprights)


def test_kohya_class_folder_for_prior_preservation(source, tmp_path):
    out = tmp_path / "kohya"
    export(source, out, repeats=1, folder="reg/1_dog")
    images = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert len(images) == len(CASES) and all(p.startswith("reg/1_dog/") and p.count("/") == 2 for p in images)
    export(source, tmp_path / "unprefixed", repeats=3, folder="class")
    assert {p.parent.name for p in (tmp_path / "unprefixed").rglob("*.jpg")} == {"3_class"}


def load_hf(out: Path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return datasets.load_dataset(str(out), split="train", cache_dir=str(out.parent / "hf-cache"))


@pytest.mark.parametrize(
    ("fmt", "options", "caption_column"),
    [
        ("jsonl", {}, "caption"),
        ("imagefolder", {}, "text"),
        ("parquet", {"embed_images": True}, "caption"),
    ],
)
def test_hugging_face_load_dataset_on_the_folder(
    source, tmp_path, uprights, monkeypatch, fmt, options, caption_column
):
    """`load_dataset(out)` as the diffusers scripts call it: an `image` column of PIL images and a caption
    column of strings ("Caption column `text` should contain either strings or lists of strings")."""
    out = tmp_path / fmt
    export(source, out, format=fmt, **options)
    dataset = load_hf(out, monkeypatch)
    assert len(dataset) == len(CASES)
    names = set()
    for row in dataset:
        image = row["image"]
        assert isinstance(row[caption_column], str)
        assert image.size == (row["width"], row["height"])
        name = check_upright(image, uprights)
        assert row[caption_column] == caption_of(name)
        names.add(name)
    assert names == set(uprights)
    if fmt == "jsonl":  # and still a plain JSONL for any reader
        rows = [
            json.loads(line) for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        for row in rows:
            raw = (out / row["image_path"]).read_bytes()
            assert Image.open(io.BytesIO(raw)).size == (row["width"], row["height"])
            check_upright(Image.open(io.BytesIO(raw)), uprights, raw)


def test_parquet_with_pyarrow_and_the_hub_layout(source, tmp_path, uprights):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "parquet"
    export(source, out, format="parquet", embed_images=True, max_shard_mb=1)
    shards = sorted((out / "data").iterdir())
    assert [s.name for s in shards] == ["train-00000-of-00001.parquet"]
    table = pq.read_table(shards[0])
    assert json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]["image"] == {
        "_type": "Image"
    }
    for row in table.to_pylist():
        raw = row["image"]["bytes"]
        image = Image.open(io.BytesIO(raw))
        assert image.size == (row["width"], row["height"]) and isinstance(row["caption"], str)
        check_upright(image, uprights, raw)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert (
        "path: data/train-*" in card
        and "- items: 6" in card
        and "uncaptioned exported with empty caption: 1" in card
    )


def test_parquet_shards_by_size_and_relative_paths_without_embedding(source, tmp_path, monkeypatch, engine):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "big"
    with Workspace(tmp_path / "ws") as ws:
        save = Save(
            out, format="parquet", embed_images=True, max_shard_mb=1, image_format="png", engine=engine
        )
        ws.run(Load(source) >> Resize(max_edge=1024, upscale=True, engine=engine) >> save, progress=False)
    shards = sorted(p.name for p in (out / "data").iterdir())
    assert len(shards) > 1 and shards[-1] == f"train-{len(shards) - 1:05d}-of-{len(shards):05d}.parquet"
    assert sum(pq.read_metadata(out / "data" / s).num_rows for s in shards) == len(CASES)
    plain = tmp_path / "plain"
    export(source, plain, format="parquet")
    dataset = load_hf(plain, monkeypatch)
    assert all((plain / row["image_path"]).is_file() for row in dataset)  # relative to the export


def test_webdataset_decode_pil_to_tuple(source, tmp_path, uprights):
    """webdataset's own pipeline as trainers write it: `.decode("pil").to_tuple("jpg;png;webp", "txt")`
    (no EXIF handling there: the pixels themselves must be upright)."""
    wds = pytest.importorskip("webdataset")
    out = tmp_path / "wds"
    export(source, out, format="webdataset")
    dataset = wds.WebDataset([str(p) for p in sorted(out.glob("*.tar"))], shardshuffle=False)
    samples = list(dataset.decode("pil").to_tuple("jpg;png;webp", "txt", "json"))
    assert len(samples) == len(CASES)
    for image, text, props in samples:
        assert isinstance(text, str)
        assert image.size == (props["width"], props["height"])
        assert text == caption_of(check_upright(image, uprights))


def test_a_resized_turned_image_is_upright_too(source, tmp_path, uprights):
    out = tmp_path / "resized"
    export(source, out, Resize(max_edge=100), image_format="png")
    paths = sorted(out.rglob("*.png"))
    assert len(paths) == len(CASES)
    for path in paths:
        image = Image.open(path)
        assert image.getexif().get(ORIENTATION, 1) == 1
        want = uprights[path.relative_to(out).with_suffix("").as_posix()]
        assert (
            image.width > image.height and abs(image.width / image.height - want.width / want.height) < 0.03
        )
        assert difference(image, want) < 6 < difference(image, want.transpose(Image.Transpose.ROTATE_180))


def test_images_needing_no_turn_are_copied_byte_for_byte(source, tmp_path):
    out = tmp_path / "kohya"
    export(source, out)
    assert (out / "dog" / "plain.jpg").read_bytes() == (source / "dog" / "plain.jpg").read_bytes()
    assert (out / "dog" / "turned6.jpg").read_bytes() != (source / "dog" / "turned6.jpg").read_bytes()


@pytest.mark.parametrize(
    ("policy", "rows", "usage"), [("skip", 5, "uncaptioned_skipped"), ("fail", 5, "uncaptioned_failed")]
)
def test_missing_caption_policies(source, tmp_path, policy, rows, usage):
    out = tmp_path / policy
    summary = export(source, out, format="jsonl", missing_caption=policy)
    assert summary.step("save").usage == {usage: 1}
    assert len((out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()) == rows
    assert not (out / "cat" / "uncaptioned.jpg").exists()
    if policy == "fail":
        [error] = summary.errors
        assert "no caption" in error["reason"] and "missing_caption" in error["reason"]
    assert "uncaptioned" in summary.table()


@pytest.mark.parametrize("fmt", ["kohya", "imagefolder", "parquet", "webdataset", "jsonl"])
def test_prompt_items_are_rows_only_in_text_formats(source, tmp_path, fmt):
    """Items without pixels yet (prompts, issue 16): image formats leave them out (not failed), the
    text format (jsonl) writes their row with `image_path: null`."""
    from captionary import LoadPrompts, concat

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog on the moon\na cat in a hat\n")
    out = tmp_path / fmt
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(concat(Load(source), LoadPrompts(prompts)) >> Save(out, format=fmt), progress=False)
    save = summary.step("save")
    assert not summary.errors and save.n_out == len(CASES) + 2
    images = [p for p in out.rglob("*") if p.suffix in (".jpg", ".tar") or p.name.endswith(".parquet")]
    assert images
    if fmt == "jsonl":
        rows = [
            json.loads(line) for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        text_rows = [row for row in rows if row["image_path"] is None]
        assert sorted(row["prompt"] for row in text_rows) == ["a cat in a hat", "a dog on the moon"]
        assert len(rows) == len(CASES) + 2
    else:
        assert "moon" not in "".join(p.name for p in out.rglob("*"))


def test_an_orientation_named_only_in_xmp_is_turned_too(tmp_path, uprights):
    """Copying an original skips Pillow for a JPEG whose header reads plainly; one naming an orientation only
    in XMP (`tiff:Orientation`, no EXIF at all) must still go through Pillow and come out upright."""
    from captionary.core.jpeg_header import jpeg_header

    folder = tmp_path / "in"
    folder.mkdir()
    want = uprights["dog/turned6"]
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><tiff:Orientation>6</tiff:Orientation></x:xmpmeta>'
    want.transpose(STORED[6]).save(folder / "xmp.jpg", quality=95, xmp=xmp)
    want.save(folder / "bare.jpg", quality=95)  # no EXIF, no XMP: copied without a parse
    assert jpeg_header((folder / "xmp.jpg").read_bytes()) is None  # left to Pillow
    assert jpeg_header((folder / "bare.jpg").read_bytes()).orientation == 1
    out = tmp_path / "out"
    export(folder, out)
    turned = Image.open(out / "xmp.jpg")
    assert turned.size == want.size
    assert difference(turned, want) < 6 < difference(turned, want.transpose(Image.Transpose.ROTATE_180))
    assert (out / "bare.jpg").read_bytes() == (folder / "bare.jpg").read_bytes()
