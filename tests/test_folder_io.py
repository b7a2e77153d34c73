"""The folder source (sidecars, names, duplicates, orientation) and the kohya folder sink."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from captionary import Filter, Load, Resize, Save, Workspace
from captionary.pipeline.step import ClassVar


class TIoDropCats(Filter):
    name: ClassVar[str] = "t_io_drop_cats"
    reads_image: ClassVar[bool] = False
    enabled: bool = True

    def drop_reason(self, item):
        return "a cat" if self.enabled and item.name.startswith("cat/") else None


def run(ws_path, pipeline, **options):
    with Workspace(ws_path) as ws:
        return ws.run(pipeline, progress=False, workers=0, **options), list(ws.items(include_dropped=True))


def test_sidecars_become_properties(photos, ws_path, tmp_path):
    (photos / "cat" / "00.caption").write_text("a cat on a sofa\n")
    (photos / "cat" / "01.json").write_text(json.dumps({"tags": ["cat", "indoor"], "score": 0.5}))
    _, items = run(ws_path, Load(photos))
    by_name = {i.name: i for i in items}
    assert by_name["cat/00"]["caption"] == "a cat on a sofa"
    assert by_name["cat/01"]["tags"] == ["cat", "indoor"] and by_name["cat/01"]["score"] == 0.5
    assert by_name["dog/00"]["caption"] == "a photo of sks dog"
    assert "caption" not in by_name["dog/03"]


def test_non_recursive_and_exact_duplicates(photos, ws_path):
    shutil.copy(photos / "dog" / "00.jpg", photos / "dog" / "copy-of-00.jpg")
    summary, items = run(ws_path, Load(photos))
    assert summary.step("load").dropped == 1
    assert len(items) == 12
    (photos / "top.jpg").write_bytes((photos / "cat" / "00.jpg").read_bytes()[:-2] + b"\xff\xd9")
    summary, items = run(ws_path, Load(photos, recursive=False))
    assert [i.name for i in items if i.get("dropped_by") is None] == ["top"]


def test_exif_rotated_photo_is_upright(photos, ws_path, tmp_path):
    image = Image.open(photos / "teapot" / "00.jpg")
    wide = image.resize((300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    wide.save(photos / "rotated.jpg", exif=exif)
    _, items = run(ws_path, Load(photos) >> Resize(max_edge=150) >> Save(tmp_path / "out"))
    rotated = next(i for i in items if i.name == "rotated")
    assert (rotated["width"], rotated["height"]) == (100, 150)
    assert Image.open(tmp_path / "out" / "rotated.jpg").size == (100, 150)


def test_untouched_images_are_copied_byte_for_byte_with_caption_files(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    run(ws_path, Load(photos) >> Save(out, caption_ext=".caption", json_sidecar=True))
    assert (out / "dog" / "00.jpg").read_bytes() == (photos / "dog" / "00.jpg").read_bytes()
    assert (out / "dog" / "00.caption").read_text() == "a photo of sks dog\n"
    assert (out / "dog" / "03.caption").read_text() == "\n"  # missing_caption: empty (kohya needs a line)
    assert json.loads((out / "cat" / "00.json").read_text())["width"] == 640


def test_caption_variants_are_one_per_line(photos, ws_path, tmp_path):
    (photos / "cat" / "00.json").write_text(json.dumps({"caption": ["a cat", "a grey cat on a sofa"]}))
    run(ws_path, Load(photos) >> Save(tmp_path / "out"))
    assert (tmp_path / "out" / "cat" / "00.txt").read_text() == "a cat\na grey cat on a sofa\n"


def test_output_format_conversion(photos, ws_path, tmp_path):
    run(ws_path, Load(photos) >> Resize(max_edge=64) >> Save(tmp_path / "out", image_format="png"))
    image = Image.open(tmp_path / "out" / "dog" / "00.png")
    assert image.format == "PNG" and max(image.size) == 64


def test_same_stem_twice_gets_distinct_names(photos, ws_path, tmp_path):
    Image.open(photos / "dog" / "00.jpg").save(photos / "dog" / "00.png")
    summary, _ = run(ws_path, Load(photos) >> Save(tmp_path / "out"))
    assert summary.step("save").computed == 13
    names = sorted(p.name for p in (tmp_path / "out" / "dog").iterdir() if p.stem.startswith("00"))
    assert len([n for n in names if n.endswith((".jpg", ".png"))]) == 2
    assert len([n for n in names if n.endswith(".txt")]) == 2


def test_sink_never_overwrites_or_deletes_files_it_did_not_write(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    (out / "dog").mkdir(parents=True)
    (out / "dog" / "00.txt").write_text("my own notes\n")
    (out / "README.md").write_text("mine\n")
    summary, _ = run(ws_path, Load(photos) >> Save(out))
    assert summary.step("save").failed == 1
    assert "was not written by captionary" in summary.errors[0]["reason"]
    assert (out / "dog" / "00.txt").read_text() == "my own notes\n"
    assert (out / "README.md").read_text() == "mine\n"


def test_files_of_dropped_items_are_removed_others_stay(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    (out / "cat").mkdir(parents=True)
    (out / "cat" / "keep-me.txt").write_text("not captionary's\n")
    run(ws_path, Load(photos) >> TIoDropCats(enabled=False) >> Save(out))
    assert (out / "cat" / "00.jpg").exists()
    summary, _ = run(ws_path, Load(photos) >> TIoDropCats() >> Save(out))
    assert summary.step("t_io_drop_cats").dropped == 3
    assert sorted(p.name for p in (out / "cat").iterdir()) == ["keep-me.txt"]
    assert (out / "dog" / "00.jpg").exists()


def test_a_file_someone_edited_is_left_alone_and_reported(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    run(ws_path, Load(photos) >> Save(out))
    (out / "dog" / "00.txt").write_text("edited by hand\n")
    summary, _ = run(ws_path, Load(photos) >> Save(out))
    [error] = summary.errors
    assert "dog/00.txt was changed since captionary wrote it" in error["reason"]
    assert (out / "dog" / "00.txt").read_text() == "edited by hand\n"
    assert (out / "dog" / "00.jpg").exists()  # the item's files stay
    summary, _ = run(ws_path, Load(photos) >> Save(out, overwrite_edited=True))
    assert summary.step("save").computed == 1 and not summary.errors
    assert (out / "dog" / "00.txt").read_text() == "a photo of sks dog\n"


def test_run_overwrite_edited_flag(photos, tmp_path, capsys):
    from captionary.cli import main

    (tmp_path / "p.yaml").write_text(
        f"workspace: ws\nsteps:\n  - load: {{path: {photos}}}\n  - save: {{path: out}}\n"
    )
    assert main(["run", str(tmp_path / "p.yaml"), "--no-progress"]) == 0
    (tmp_path / "out" / "dog" / "00.txt").write_text("edited by hand\n")
    assert main(["run", str(tmp_path / "p.yaml"), "--no-progress"]) == 0
    assert "was changed since captionary wrote it" in capsys.readouterr().err
    assert (tmp_path / "out" / "dog" / "00.txt").read_text() == "edited by hand\n"
    assert main(["run", str(tmp_path / "p.yaml"), "--no-progress", "--overwrite-edited"]) == 0
    assert (tmp_path / "out" / "dog" / "00.txt").read_text() == "a photo of sks dog\n"


def test_an_edited_file_of_a_dropped_item_is_kept(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    run(ws_path, Load(photos) >> TIoDropCats(enabled=False) >> Save(out))
    (out / "cat" / "00.txt").write_text("my caption\n")
    summary, _ = run(ws_path, Load(photos) >> TIoDropCats() >> Save(out))
    assert (out / "cat" / "00.txt").read_text() == "my caption\n"
    assert not (out / "cat" / "01.txt").exists()
    assert summary.step("save").usage["edited_files_kept"] == 1


@pytest.mark.parametrize("name", ["café ☕.jpg", "日本語.jpg"])
def test_unicode_file_names(photos, ws_path, tmp_path, name):
    shutil.copy(photos / "teapot" / "00.jpg", photos / name)
    (photos / "teapot" / "00.jpg").unlink()
    run(ws_path, Load(photos) >> Save(tmp_path / "out"))
    assert (tmp_path / "out" / name).read_bytes() == (photos / name).read_bytes()


def test_mpo_phone_photos_are_treated_as_jpeg(photos, ws_path, tmp_path):
    """Phones write MPO (a JPEG with extra pictures): outputs stay .jpg, resized ones are JPEG too."""
    image = Image.open(photos / "cat" / "00.jpg")
    image.save(photos / "phone.jpg", "MPO", save_all=True, append_images=[image.resize((64, 64))])
    assert Image.open(photos / "phone.jpg").format == "MPO"
    run(ws_path, Load(photos) >> Save(tmp_path / "copied"))
    assert (tmp_path / "copied" / "phone.jpg").read_bytes() == (photos / "phone.jpg").read_bytes()
    run(ws_path, Load(photos) >> Resize(max_edge=100) >> Save(tmp_path / "resized"))
    assert Image.open(tmp_path / "resized" / "phone.jpg").format == "JPEG"


@pytest.mark.parametrize("naming", ["id", "sequential"])
def test_naming_by_id_or_number_is_stable(photos, ws_path, tmp_path, naming):
    out = tmp_path / "out"
    _, items = run(ws_path, Load(photos) >> Save(out, naming=naming))
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len([n for n in first if n.endswith(".jpg")]) == 12
    if naming == "id":
        assert {f"{i.id[:16]}.jpg" for i in items} == {n for n in first if n.endswith(".jpg")}
    else:
        assert sorted(n for n in first if n.endswith(".jpg"))[0] == "000000.jpg"
    shutil.copy(photos / "dog" / "00.jpg", tmp_path / "new.jpg")
    Image.open(tmp_path / "new.jpg").rotate(90).save(photos / "new.jpg")
    summary, _ = run(ws_path, Load(photos) >> Save(out, naming=naming))
    assert summary.step("save").computed == 1
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {n: after[n] for n in first} == first  # nothing renamed
    if naming == "sequential":
        assert "000012.jpg" in after


def test_an_edited_manifest_is_left_alone_and_the_run_completes(photos, ws_path, tmp_path):
    out = tmp_path / "out"
    run(ws_path, Load(photos) >> Save(out, format="jsonl"))
    (out / "metadata.jsonl").write_text("my own manifest\n")
    (photos / "cat" / "00.txt").write_text("a grey cat\n")  # the manifest would change
    summary, _ = run(ws_path, Load(photos) >> Save(out, format="jsonl"))
    assert summary.status == "completed" and summary.step("save").usage["edited_files_kept"] == 1
    assert (out / "metadata.jsonl").read_text() == "my own manifest\n"


def test_load_reads_small_header_only_files_with_one_thread_and_large_or_decoded_ones_with_four(tmp_path):
    from captionary.core.images import STRUCTURE

    load = Load(tmp_path)

    def fresh(n, size, ext=".jpg"):
        return [("k", f"/d/{i}{ext}", "n", f"{size}:1", []) for i in range(n)]

    assert load._threads(fresh(100, 30_000), False) == 1
    assert load._threads(fresh(100, 30_000), STRUCTURE) == 1  # JPEGs: checked without a decode
    assert load._threads(fresh(100, 30_000, ".png"), STRUCTURE) == 4  # decoded
    assert load._threads(fresh(100, 30_000), True) == 4
    assert load._threads(fresh(100, 3_000_000), False) == 4
    assert load._threads([], False) == 1
    assert Load(tmp_path, threads=2)._threads(fresh(100, 30_000), False) == 2
