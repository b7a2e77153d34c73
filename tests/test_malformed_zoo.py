"""Awkward but valid inputs become correct items; hostile ones become recorded errors. None stop a run."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from captionary import Convert, Load, Resize, Save, Workspace


@pytest.fixture
def zoo(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    base = Image.new("RGB", (120, 80), (200, 40, 40))
    base.save(folder / "png-named.jpg", format="PNG")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    Image.new("I;16", (60, 40), 40000).save(folder / "deep.png")
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png", transparency=0)
    frames = [Image.new("RGB", (50, 50), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    os.symlink(folder, folder / "loop")  # a folder symlink pointing at itself
    (folder / "bomb.png").write_bytes(_bomb())
    odd = os.fsencode(str(folder)) + b"/caf\xe9.jpg"  # a Latin-1 name, not valid UTF-8
    with open(odd, "wb") as f:
        base.save(f, format="JPEG")
    return folder


def _bomb() -> bytes:
    """A tiny PNG that claims 30,000 x 30,000 pixels (over Pillow's decompression-bomb limit)."""
    import io
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    buffer = io.BytesIO()
    buffer.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")))
    buffer.write(chunk(b"IEND", b""))
    return buffer.getvalue()


def test_the_zoo(zoo, tmp_path):
    out = tmp_path / "out"
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(
            Load(zoo) >> Convert() >> Resize(max_edge=40) >> Save(out, image_format="jpg"), progress=False
        )
        items = {item.name: item for item in ws.items()}
    [bomb] = summary.errors
    assert bomb["source"].endswith("bomb.png") and "decompression bomb" in bomb["reason"]
    assert set(items) == {"png-named", "cmyk", "deep", "palette", "animated", "caf\\xe9"}
    assert summary.step("load").n_in == 7  # the looping folder symlink is not followed
    for name, item in items.items():
        image = item.image
        assert image.mode == "RGB", name
        assert max(image.size) == 40, name
    assert items["animated"].image.getpixel((10, 10))[0] > 200  # the first frame (red)
    assert items["palette"].image.getpixel((0, 0)) in {(255, 255, 255), (200, 40, 40)}
    written = sorted(p.name for p in out.glob("*.jpg"))
    assert len(written) == 6
    assert Image.open(out / "cmyk.jpg").mode == "RGB"


def test_the_zoo_rerun_is_fully_cached(zoo, tmp_path):
    pipeline = Load(zoo) >> Convert() >> Resize(max_edge=40) >> Save(tmp_path / "out", image_format="jpg")
    with Workspace(tmp_path / "ws") as ws:
        ws.run(pipeline, progress=False)
        again = ws.run(pipeline, progress=False)
    assert again.computed == 0
    assert again.step("load").cached == 6 and again.step("load").failed == 1  # the bomb, again


# --- names that would leave the output folder (issue 13, item 1) -------------------------------------


def _hostile_shard(path, photo: bytes, hostile: bytes) -> None:
    """A shard whose second sample's key climbs out of any output folder."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for key, data in (("fine", photo), ("../../../../outside/owned", hostile)):
            for ext, content in (("jpg", data), ("txt", b"attacker's text"), ("json", b'{"caption": "x"}')):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))


@pytest.mark.parametrize("fmt", ["kohya", "imagefolder", "jsonl", "parquet", "webdataset"])
def test_a_shard_key_never_leaves_the_output_folder(photos, tmp_path, fmt):
    from captionary import LoadWebDataset

    photo, hostile = (photos / "dog" / "00.jpg").read_bytes(), (photos / "cat" / "00.jpg").read_bytes()
    shard = tmp_path / "hostile.tar"
    _hostile_shard(shard, photo, hostile)
    out = tmp_path / "a" / "b" / "c" / "out"
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadWebDataset(str(shard)) >> Save(out, format=fmt), progress=False)
    [error] = summary.errors
    assert error["step"] == "save" and "unsafe output name" in error["reason"] and "'..'" in error["reason"]
    assert summary.step("save").n_out == 1  # the harmless sample is exported
    written = [p for p in tmp_path.rglob("*") if "owned" in p.name or "outside" in p.name]
    assert written == [], "a file was written outside the output folder"


def test_adoption_never_reaches_outside_the_output_folder(photos, tmp_path):
    """A sample whose bytes equal a file outside the folder: old code adopted that file as its own
    output and deleted it when the sample went away."""
    from captionary import LoadWebDataset

    photo, hostile = (photos / "dog" / "00.jpg").read_bytes(), (photos / "cat" / "00.jpg").read_bytes()
    out = tmp_path / "a" / "b" / "c" / "out"
    victim = tmp_path / "a" / "outside" / "owned.jpg"  # where out/hostile/../../../../outside leads
    victim.parent.mkdir(parents=True)
    victim.write_bytes(hostile)
    shard = tmp_path / "hostile.tar"
    _hostile_shard(shard, photo, hostile)
    with Workspace(tmp_path / "ws") as ws:
        ws.run(LoadWebDataset(str(shard)) >> Save(out), progress=False)
        shard.unlink()
        _single = tmp_path / "benign.tar"
        import tarfile

        with tarfile.open(_single, "w") as tar:
            tar.add(photos / "cat" / "00.jpg", arcname="fine.jpg")
        ws.run(LoadWebDataset(str(_single)) >> Save(out), progress=False)
    assert victim.read_bytes() == hostile


def test_a_symlinked_output_folder_is_not_followed_outside(photos, tmp_path):
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    os.symlink(elsewhere, out / "dog")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> Save(out), progress=False)
    reasons = [e["reason"] for e in summary.errors]
    assert reasons and all("resolves outside the output folder" in r for r in reasons)
    assert list(elsewhere.iterdir()) == []
    assert (out / "cat" / "00.jpg").is_file()


# --- hand edits in the output folder (issue 13, item 8) ----------------------------------------------


def test_a_hand_edited_shard_is_left_alone(photos, tmp_path):
    out = tmp_path / "shards"
    pipeline = Load(photos) >> Save(out, format="webdataset")
    with Workspace(tmp_path / "ws") as ws:
        ws.run(pipeline, progress=False)
        shard = out / "shard-000000.tar"
        edited = shard.read_bytes() + b"\0" * 1024  # a person appended to it
        shard.write_bytes(edited)
        again = ws.run(pipeline, progress=False)
        assert shard.read_bytes() == edited
        assert again.step("save").usage["edited_files_kept"] == 1
        third = ws.run(pipeline, progress=False)  # still reported, nothing written again
        assert third.step("save").computed == 0 and third.step("save").usage["edited_files_kept"] == 1
        assert shard.read_bytes() == edited
        ws.run(Load(photos) >> Save(out, format="webdataset", overwrite_edited=True), progress=False)
    assert not shard.exists()  # now replaced: its samples live in the shard written since
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000001.tar"]
