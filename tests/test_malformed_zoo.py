"""Awkward but valid inputs become correct items; hostile ones become recorded errors. None stop a run."""

from __future__ import annotations

import contextlib
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


def zoo_pipeline(zoo, out, engine):
    return (
        Load(zoo)
        >> Convert(engine=engine)
        >> Resize(max_edge=40, engine=engine)
        >> Save(out, image_format="jpg", engine=engine)
    )


def test_the_zoo(zoo, tmp_path, engine):
    out = tmp_path / "out"
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(zoo_pipeline(zoo, out, engine), progress=False)
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


def test_the_zoo_rerun_is_fully_cached(zoo, tmp_path, engine):
    pipeline = zoo_pipeline(zoo, tmp_path / "out", engine)
    with Workspace(tmp_path / "ws") as ws:
        ws.run(pipeline, progress=False)
        again = ws.run(pipeline, progress=False)
    assert again.computed == 0
    assert again.step("load").cached == 6 and again.step("load").failed == 1  # the bomb, again


# --- hostile files: each is its item's error, and the run completes (issue 13) -------------------


def _photo(photos) -> bytes:
    return (photos / "dog" / "00.jpg").read_bytes()


def _half_png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 200, 30)).save(buffer, format="PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


CUTS = (10, 50, 100, 300)  # a JPEG cut inside its header raises OSError from Image.open / getexif


@pytest.fixture
def truncated(photos, tmp_path):
    folder = tmp_path / "truncated"
    folder.mkdir()
    for size in CUTS:
        (folder / f"cut-{size}.jpg").write_bytes(_photo(photos)[:size])
    (folder / "half.png").write_bytes(_half_png())
    (folder / "good.jpg").write_bytes(_photo(photos))
    return folder


@pytest.mark.parametrize("verify", [True, False])
def test_truncated_images_are_their_items_errors(truncated, tmp_path, verify):
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(truncated, verify=verify) >> Save(tmp_path / "out"), progress=False)
        again = ws.run(Load(truncated, verify=verify) >> Save(tmp_path / "out"), progress=False)
    assert summary.status == again.status == "completed"
    reasons = {os.path.basename(e["source"]): e["reason"] for e in summary.errors}
    assert set(reasons) == {f"cut-{size}.jpg" for size in CUTS} | {"half.png"}
    assert all("truncated" in reason or "not an image" in reason for reason in reasons.values()), reasons
    assert summary.step("save").n_out == 1 and (tmp_path / "out" / "good.jpg").exists()


@pytest.mark.parametrize("verify", [None, False])
def test_truncated_images_decoded_by_each_engine_are_their_items_errors(truncated, tmp_path, verify, engine):
    """With a resize after it, `load` leaves decoding to the chain (verify None) or never does it:
    the engine's decode finds the cut files, each its item's error, and the run completes."""
    pipeline = Load(truncated, verify=verify) >> Resize(max_edge=64, engine=engine)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(
            pipeline >> Save(tmp_path / "out", image_format="png", engine=engine), progress=False
        )
    assert summary.status == "completed"
    reasons = {os.path.basename(e["source"]): e["reason"] for e in summary.errors}
    assert set(reasons) == {f"cut-{size}.jpg" for size in CUTS} | {"half.png"}
    assert all("truncated" in reason or "not an image" in reason for reason in reasons.values()), reasons
    assert summary.step("save").n_out == 1 and (tmp_path / "out" / "good.png").exists()


def test_truncated_images_in_a_manifest_and_downloaded(truncated, tmp_path):
    import functools
    import http.server
    import json
    import threading

    from captionary import LoadManifest

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(truncated))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    names = sorted(p.name for p in truncated.iterdir())
    rows = [{"image": str(truncated / n)} for n in names] + [{"image": f"{base}/{n}"} for n in names]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    try:
        with Workspace(tmp_path / "ws") as ws:
            summary = ws.run(LoadManifest(manifest, copy=False), progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert summary.status == "completed"
    assert summary.step("load_manifest").n_out == 1  # good.jpg: the file, and the same bytes downloaded
    assert summary.step("load_manifest").dropped == 1
    assert len(summary.errors) == 2 * (len(CUTS) + 1)
    assert all("truncated" in e["reason"] or "not an image" in e["reason"] for e in summary.errors)


def _shard_with_damage(photos, path):
    """Samples 0000-0004: 0001's JPEG is cut to 100 bytes, 0003.jpg's tar header is overwritten."""
    import io
    import tarfile

    jpegs = sorted(photos.rglob("*.jpg"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for index in range(5):
            image = jpegs[index].read_bytes()[: 100 if index == 1 else None]
            for name, data in ((f"{index:04d}.jpg", image), (f"{index:04d}.txt", f"sample {index}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    data = bytearray(buffer.getvalue())
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        header = tar.getmember("0003.jpg").offset
    data[header : header + 512] = b"\xff" * 512  # fails its checksum
    path.write_bytes(bytes(data))
    return header


def test_a_shard_is_read_past_a_truncated_and_a_damaged_member(photos, tmp_path):
    from captionary import LoadWebDataset

    shard = tmp_path / "damaged.tar"
    header = _shard_with_damage(photos, shard)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadWebDataset(shards=str(shard)), progress=False)
        names = sorted(item.name for item in ws.items())
    assert summary.status == "completed"
    assert names == ["damaged/0000", "damaged/0002", "damaged/0004"]  # 0004 comes after both
    reasons = sorted(e["reason"] for e in summary.errors)
    assert len(reasons) == 3, reasons
    assert any("damaged.tar:0001" in r and "truncated" in r for r in reasons)
    assert any(f"byte {header}: damaged tar data" in r for r in reasons)  # 0003.jpg's lost header
    assert any("damaged.tar:0003: no image member (has: txt)" in r for r in reasons)


@pytest.fixture
def unblock_fifos():
    """Opens each FIFO for writing after a while, so code that (wrongly) blocks reading one ends."""
    import threading

    fifos: list = []
    stop = threading.Event()

    def unblock():
        while not stop.wait(5):
            for fifo in fifos:
                with contextlib.suppress(OSError):  # ENXIO while nobody reads
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    yield fifos
    stop.set()
    thread.join()


def test_non_regular_and_oversized_files_are_refused_per_file(photos, tmp_path, unblock_fifos):
    folder = tmp_path / "special"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(_photo(photos))
    (folder / "big.jpg").write_bytes(_photo(photos) + b"\0" * 100_000)
    os.mkfifo(folder / "fifo.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    os.symlink(folder / "good.jpg", folder / "link.jpg")  # a link to a regular file is fine
    (folder / "sidecar.jpg").write_bytes((photos / "cat" / "00.jpg").read_bytes())
    os.mkfifo(folder / "sidecar.txt")  # a FIFO caption sidecar
    unblock_fifos += [folder / "fifo.jpg", folder / "sidecar.txt"]
    load = Load(folder, max_file_size=len(_photo(photos)) + 50_000)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(load, progress=False)
        names = sorted(item.name for item in ws.items())
    assert summary.status == "completed"
    assert names == ["good"]  # link.jpg is the same bytes: an exact duplicate, dropped
    reasons = {os.path.basename(e["source"]): e["reason"] for e in summary.errors}
    assert set(reasons) == {"fifo.jpg", "zero.jpg", "big.jpg", "sidecar.jpg"}, reasons
    assert "not a regular file (a FIFO)" in reasons["fifo.jpg"]
    assert "not a regular file (a character device)" in reasons["zero.jpg"]
    assert "over max_file_size" in reasons["big.jpg"]
    assert "sidecar.txt" in reasons["sidecar.jpg"] and "FIFO" in reasons["sidecar.jpg"]


def test_reading_a_file_allocates_its_size_not_max_file_size(tmp_path):
    """The default limit is a gigabyte: a 10 KB photo must not take a gigabyte buffer to read (it made
    every first run spend its system time allocating and giving back memory)."""
    import tracemalloc

    from captionary.core.atomic import read_regular_file

    path = tmp_path / "small.bin"
    path.write_bytes(b"x" * 10_000)
    tracemalloc.start()
    try:
        data = read_regular_file(str(path), 1 << 30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data == b"x" * 10_000
    assert peak < 1_000_000, peak


def test_a_manifest_refuses_non_regular_images(photos, tmp_path, unblock_fifos):
    import json

    from captionary import LoadManifest

    os.mkfifo(tmp_path / "fifo.jpg")
    unblock_fifos.append(tmp_path / "fifo.jpg")
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    (tmp_path / "good.jpg").write_bytes(_photo(photos))
    manifest = tmp_path / "rows.jsonl"
    rows = [{"image": name} for name in ("fifo.jpg", "zero.jpg", "good.jpg")]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadManifest(manifest), progress=False)
    assert summary.step("load_manifest").n_out == 1
    reasons = sorted(e["reason"] for e in summary.errors)
    assert "not a regular file (a FIFO)" in reasons[0] and "character device" in reasons[1]


# --- hostile pipeline files: one clear `file:line:` error each, never a traceback (issue 13) -------


def _alias_bomb(levels: int) -> str:
    """Each level is a list of nine aliases of the one before: 9**levels values from a few lines."""
    text = "  - set_caption:\n      template: [&a [x,x,x,x,x,x,x,x,x]"
    for previous, name in zip("abcdefghij", "bcdefghijk"[: levels - 1]):
        text += f", &{name} [{','.join(['*' + previous] * 9)}]"
    return text + "]\n"


HOSTILE_YAML = {
    "alias-bomb": (_alias_bomb(7), 5, "YAML aliases expand to more than 100000 values here (an alias bomb?)"),
    "deep": ("  - set_caption: {template: " + "[" * 3000 + "]" * 3000 + "}\n", 4, "nested more than 64"),
    "python-tag": (
        "  - set_caption: {template: !!python/object/apply:os.system [echo owned]}\n",
        4,
        "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
    "self-alias": ("  - set_caption: {template: &a [x, *a]}\n", 4, "a YAML alias refers to itself"),
}


@pytest.mark.parametrize("case", HOSTILE_YAML)
def test_hostile_yaml_is_one_clear_line(case, tmp_path, capsys):
    from captionary.cli import main

    steps, line, message = HOSTILE_YAML[case]
    (tmp_path / "photos").mkdir()
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("workspace: ws\nsteps:\n  - load: {path: photos}\n" + steps)
    assert main(["run", str(pipeline)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {pipeline}:{line}: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_deep_loader_config_is_one_clear_line(tmp_path):
    from captionary.errors import ConfigError
    from captionary.loader.config import load_yaml

    config = tmp_path / "loader.yaml"
    config.write_text("image:\n  size: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match=rf"^{config}:2: YAML nested more than 64 levels deep"):
        load_yaml(config)


@pytest.mark.parametrize(
    ("size", "full"),
    [
        ("300k", "{disk}/ws/captionary.db: database or disk is full (the disk under the workspace is full)"),
        ("1m", "{disk}/ws/objects/"),  # a blob does not fit: the file is named
    ],
)
def test_a_full_disk_under_the_workspace_is_one_line_naming_the_path(photos, tmp_path, size, full):
    """The workspace on a small tmpfs (mounted in a private mount namespace of the child, so nothing
    is left mounted): the database, or a blob, fills it up; the CLI says so in one line."""
    import shutil
    import subprocess
    import sys

    import numpy as np

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small file system")
    disk = tmp_path / "disk"
    disk.mkdir()
    if size == "1m":  # one 4 MB image: the database fits, its blob does not
        photos = tmp_path / "noise"
        photos.mkdir()
        pixels = np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / "noise.png")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"workspace: {disk}/ws\nsteps:\n  - load: {{path: {photos}}}\n")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here: {probe.stderr.decode().strip()}")
    run = f"{sys.executable} -m captionary.cli run --no-progress {pipeline}"
    script = f"mount -t tmpfs -o size={size} tmpfs {disk} && exec {run}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: " + full.format(disk=disk)), done.stderr
    assert done.stderr.rstrip().endswith("full)")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_the_training_loader_says_where_a_shard_is_damaged(photos, tmp_path):
    """The loader reads past the damaged stretch with a warning (it used to end the shard silently),
    then refuses the sample that lost its image, as it refuses any sample without one."""
    from captionary.errors import ConfigError
    from captionary.loader.webdataset import _shard_records

    shard = tmp_path / "damaged.tar"
    header = _shard_with_damage(photos, shard)
    records = []
    warned = pytest.warns(UserWarning, match=f"byte {header}: damaged tar data")
    with warned, pytest.raises(ConfigError, match="sample '0003' has no image"):
        records.extend(_shard_records(str(shard), 10.0))
    assert len(records) == 3


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


def test_a_symlinked_output_file_is_not_followed_outside(photos, tmp_path):
    """Folders are resolved once per run, the file itself by its own lstat: a link planted where an
    output goes, pointing outside, is still refused, and what it points at is left as it was."""
    out = tmp_path / "out"
    (out / "cat").mkdir(parents=True)
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(b"not yours")
    os.symlink(victim, out / "cat" / "00.jpg")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> Save(out), progress=False)
    [error] = summary.errors
    assert "resolves outside the output folder" in error["reason"] and "cat/00.jpg" in error["reason"]
    assert victim.read_bytes() == b"not yours"
    assert (out / "cat" / "01.jpg").is_file() and not (out / "cat" / "01.jpg").is_symlink()


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
