"""Derived images are recomputed from the original, never stored: the same pixels on every path."""

from __future__ import annotations

import shutil

from PIL import Image, ImageOps

from captionary import Load, Resize, Save, Workspace
from captionary.core import engines
from test_rerun import TRerunMeanColour


def test_only_originals_are_stored(photos, ws_path, tmp_path, engine):
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Resize(max_edge=200, engine=engine) >> Save(tmp_path / "out"), progress=False)
        stored = set(ws.blobs.digests())
        assert stored == {item.id for item in ws.items()}


def test_every_path_to_the_pixels_gives_the_same_file(photos, tmp_path, engine):
    """Encoded in a pool worker, in the driver, or by the sink replaying the recipe: same bytes."""
    outputs = []
    pipeline = Load(photos) >> Resize(max_edge=200, engine=engine) >> Save(tmp_path / "out2", engine=engine)
    for workers in (2, 0):
        out = tmp_path / f"out{workers}"
        with Workspace(tmp_path / f"ws{workers}") as ws:
            ws.run(
                Load(photos) >> Resize(max_edge=200, engine=engine) >> Save(out, engine=engine),
                progress=False,
                workers=workers,
            )
        outputs.append({p.name: p.read_bytes() for p in out.rglob("*.jpg")})
    shutil.rmtree(tmp_path / "out2")
    with Workspace(tmp_path / "ws2") as ws:
        again = ws.run(pipeline, progress=False)
    assert again.step("resize").cached == 12 and again.step("save").computed == 12  # replayed in the sink
    outputs.append({p.name: p.read_bytes() for p in (tmp_path / "out2").rglob("*.jpg")})
    assert outputs[0] == outputs[1] == outputs[2]


def test_read_back_items_recompute_their_pixels(photos, ws_path, tmp_path, engine):
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Resize(max_edge=120, engine=engine) >> Save(tmp_path / "out"), progress=False)
    with Workspace(ws_path) as ws:  # a new session: only the database and the originals
        dog = next(item for item in ws.items() if item.name == "dog/01")
    original = _open_draft(photos / "dog" / "01.jpg")  # resize asks for twice its target size
    assert original.size == (320, 320)  # a 640 px JPEG decoded at DCT scale 1/2
    decoded = engines.get(engine).adopt(ImageOps.exif_transpose(original))  # the engine's own image
    expected = engines.as_pil(Resize(max_edge=120, engine=engine).transform(decoded, dog))
    assert dog.image.size == (dog.width, dog.height) == expected.size
    assert dog.image.tobytes() == expected.tobytes()


def _open_draft(path):
    image = Image.open(path)
    image.draft("RGB", (240, 240))
    image.load()
    return image


def test_a_step_added_after_a_cached_image_step_sees_the_right_pixels(photos, tmp_path):
    with Workspace(tmp_path / "a") as ws:
        ws.run(Load(photos) >> Resize(max_edge=64), progress=False)
        added = ws.run(Load(photos) >> Resize(max_edge=64) >> TRerunMeanColour(), progress=False)
        assert added.step("resize").cached == 12
        replayed = {item.name: item["mean"] for item in ws.items()}
    with Workspace(tmp_path / "b") as ws:
        ws.run(Load(photos) >> Resize(max_edge=64) >> TRerunMeanColour(), progress=False)
        fresh = {item.name: item["mean"] for item in ws.items()}
    assert replayed == fresh
