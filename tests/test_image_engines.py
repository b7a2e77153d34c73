"""Image engines (issue 20, item 1): Pillow and libvips behind one seam (`core/engines`). The engine is
part of an image step's cache key; both give upright pixels of the same size, within a stated error."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from captionary import Convert, CropToAspect, Load, Resize, Save, Workspace
from captionary.core import engines
from captionary.core.hashing import step_prefix
from captionary.core.recipes import parse_recipe
from captionary.errors import ConfigError
from captionary.pipeline.step import ImageMap
from captionary.pipeline.yaml_loader import parse_pipeline

VIPS = pytest.mark.skipif(not engines.vips_available(), reason="pyvips is not installed (the vips extra)")
ORIENTATION = 0x0112
# The bound the README states for resize (measured on the 158 DreamBooth photos: mean <= 0.35, max 21)
MEAN_BOUND, MAX_BOUND = 0.5, 32


def pixels(image) -> np.ndarray:
    return np.asarray(engines.as_pil(image).convert("RGB"), dtype=np.int16)


def test_pillow_keys_are_the_keys_from_before_engines_and_vips_keys_differ():
    pillow = Resize(max_edge=64, engine="pillow")
    params = {k: v for k, v in pillow.params.items() if k != "engine"}
    assert pillow.cache_prefix == step_prefix("resize", Resize.version, params, None)  # old caches still hit
    if engines.vips_available():
        assert Resize(max_edge=64, engine="vips").cache_prefix != pillow.cache_prefix
        assert CropToAspect(engine="vips").cache_prefix != CropToAspect(engine="pillow").cache_prefix
        assert Convert(engine="vips").cache_prefix != Convert(engine="pillow").cache_prefix


def test_a_recipe_from_before_engines_replays_with_pillow():
    [(step, _)] = parse_recipe('[["resize",{"max_edge":64},{}]]', {})
    assert step.engine == "pillow" and step.engine_name == "pillow"
    assert '"engine":"pillow"' in step.recipe_json


@VIPS
def test_a_pillow_result_is_never_served_as_a_vips_one_and_reruns_compute_nothing(photos, tmp_path):
    def run(ws, engine):
        save = Save(tmp_path / "out", image_format="png", engine=engine)
        return ws.run(Load(photos) >> Resize(max_edge=96, engine=engine) >> save, progress=False)

    with Workspace(tmp_path / "ws") as ws:
        run(ws, "pillow")
        made_by_pillow = {item.id: item.image_hash for item in ws.items()}
        vips = run(ws, "vips")
        assert vips.step("resize").computed == 12 and vips.step("resize").cached == 0
        assert vips.step("save").computed == 12  # the files are rewritten: their content changed
        made_by_vips = {item.id: item.image_hash for item in ws.items()}
        assert set(made_by_pillow.values()).isdisjoint(made_by_vips.values())
        assert run(ws, "vips").computed == 0
        back = run(ws, "pillow")  # Pillow's results are still cached
        assert back.step("resize").computed == 0 and back.step("resize").cached == 12
        assert {item.id: item.image_hash for item in ws.items()} == made_by_pillow
        recipes = {step.engine for item in ws.items() for step, _ in item.recipe}
    assert recipes == {"pillow"}


@pytest.fixture
def turned(photos, tmp_path):
    """One landscape picture stored with each EXIF orientation 1-8 (pixels turned to match)."""
    upright = Image.open(photos / "dog" / "00.jpg").convert("RGB").crop((0, 80, 640, 480))
    stored = {
        1: upright,
        2: upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        3: upright.transpose(Image.Transpose.ROTATE_180),
        4: upright.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        5: upright.transpose(Image.Transpose.TRANSPOSE),
        6: upright.transpose(Image.Transpose.ROTATE_90),
        7: upright.transpose(Image.Transpose.TRANSVERSE),
        8: upright.transpose(Image.Transpose.ROTATE_270),
    }
    folder = tmp_path / "turned"
    folder.mkdir()
    for orientation, image in stored.items():
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        image.save(folder / f"o{orientation}.jpg", quality=95, exif=exif.tobytes())
    return folder, upright


def test_both_engines_give_upright_images_of_the_same_size(turned, tmp_path, engine):
    folder, upright = turned
    out = tmp_path / "out"
    with Workspace(tmp_path / "ws") as ws:
        ws.run(
            Load(folder) >> Resize(max_edge=160, engine=engine) >> Save(out, engine=engine), progress=False
        )
    want = pixels(upright.resize((160, 100), Image.Resampling.LANCZOS))
    for orientation in range(1, 9):
        raw = (out / f"o{orientation}.jpg").read_bytes()
        image = Image.open(io.BytesIO(raw))
        assert image.getexif().get(ORIENTATION, 1) == 1, orientation  # no tag left to turn it again
        assert image.size == (160, 100), orientation
        assert np.abs(pixels(image) - want).mean() < 4, orientation  # upright, not turned or mirrored


@VIPS
def test_resize_and_crop_to_aspect_differ_from_pillow_within_the_stated_bound(photos, tmp_path):
    cases = {
        "resize": [Resize(max_edge=200)],
        "resize-drafted": [Resize(max_edge=120)],  # JPEGs shrunk on load (DCT scale 1/2)
        "crop": [CropToAspect(aspect="3:2")],
        "crop-resize": [CropToAspect(aspect="3:2", position=0.2), Resize(max_edge=150)],
    }
    for name, steps in cases.items():
        seen = {}
        for engine in ("pillow", "vips"):
            pipeline = Load(photos)
            for step in steps:
                pipeline = pipeline >> type(step)(**{**step.params, "engine": engine})
            with Workspace(tmp_path / f"{name}-{engine}") as ws:
                ws.run(pipeline, progress=False, workers=0)
                seen[engine] = {item.id: pixels(item.image) for item in ws.items()}
        assert seen["pillow"].keys() == seen["vips"].keys() and len(seen["vips"]) == 12
        for key, made in seen["pillow"].items():
            assert made.shape == seen["vips"][key].shape, (name, key)
        errors = [np.abs(seen["pillow"][key] - seen["vips"][key]) for key in seen["pillow"]]
        mean = max(float(e.mean()) for e in errors)
        worst = max(int(e.max()) for e in errors)
        if name == "crop":
            assert worst == 0  # the same decoded pixels, the same box
        else:
            assert mean <= MEAN_BOUND and worst <= MAX_BOUND, (name, mean, worst)


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _zoo() -> dict[str, bytes]:
    """Modes users have: CMYK, 16-bit grey, palette with transparency, grey + alpha, RGBA, a GIF's
    first frame, a BMP (libvips cannot read it: Pillow decodes it for the vips engine)."""
    base = Image.new("RGB", (120, 80), (200, 40, 40))
    base.paste((20, 90, 250), (0, 0, 60, 40))
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((120, 80)))
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    frames = [base, Image.new("RGB", (120, 80), (0, 0, 255))]
    return {
        "cmyk": _encoded(base.convert("CMYK"), "JPEG", quality=95),
        "deep": _encoded(Image.new("I;16", (60, 40), 40000), "PNG"),
        "palette": _encoded(palette, "PNG", transparency=0),
        "grey-alpha": _encoded(Image.merge("LA", [base.convert("L"), rgba.getchannel("A")]), "PNG"),
        "rgba": _encoded(rgba, "PNG"),
        "gif": _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "bmp": _encoded(base, "BMP"),
    }


@VIPS
@pytest.mark.parametrize("case", list(_zoo()))
def test_modes_come_out_as_pillow_makes_them(case):
    data = _zoo()[case]
    pillow, vips = engines.get("pillow"), engines.get("vips")
    a, b = pillow.decode(data), vips.decode(data)
    assert (a.width, a.height) == (b.width, b.height)
    white = (255, 255, 255)
    rgb_a, rgb_b = pillow.to_rgb(a, white), vips.realize(vips.to_rgb(b, white))
    assert np.abs(pixels(rgb_a) - pixels(rgb_b)).max() <= 1, case
    small_a = pillow.resize(rgb_a, (60, 40), "lanczos")
    small_b = vips.realize(vips.resize(rgb_b, (60, 40), "lanczos"))
    assert np.abs(pixels(small_a) - pixels(small_b)).mean() <= 1.0, case
    for target in ("JPEG", "PNG", "WEBP"):  # both encoders write a file Pillow reads at that size
        written = Image.open(io.BytesIO(vips.encode(small_b, target, 90)))
        assert written.size == (60, 40) and written.mode in ("RGB", "RGBA", "L"), (case, target)


@VIPS
def test_alpha_is_resized_premultiplied_as_pillow_does():
    data = _zoo()["rgba"]
    pillow, vips = engines.get("pillow"), engines.get("vips")
    a = np.asarray(pillow.resize(pillow.decode(data), (60, 40), "lanczos"), dtype=np.int16)
    b = np.asarray(
        engines.as_pil(vips.realize(vips.resize(vips.decode(data), (60, 40), "lanczos"))), np.int16
    )
    assert b.shape == a.shape == (40, 60, 4)
    opaque = a[..., 3] > 64  # colour under nearly transparent pixels is noise in both
    assert np.abs(a - b)[opaque].max() <= 4
    assert (b[..., :3][b[..., 3] == 0] == 0).all()  # no colour left under transparent pixels


@VIPS
def test_sixteen_bit_rgb_and_the_icc_profile_as_pillow():
    import pyvips

    ramp = np.linspace(0, 65535, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint16)
    deep = pyvips.Image.new_from_array(ramp).copy(interpretation="rgb16")
    data = deep.pngsave_buffer()
    pillow, vips = engines.get("pillow"), engines.get("vips")
    assert np.abs(pixels(pillow.decode(data)) - pixels(vips.decode(data))).max() <= 1  # the high byte
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = _encoded(Image.new("RGB", (64, 48), (10, 120, 200)), "JPEG", icc_profile=icc)
    for engine in (pillow, vips):  # the profile rides along unconverted: PNG keeps it, JPEG/WebP drop it
        image = engine.realize(engine.decode(photo))  # a lazy decode is read once
        kept = {
            t: "icc_profile" in Image.open(io.BytesIO(engine.encode(image, t, 90))).info
            for t in ("PNG", "JPEG", "WEBP")
        }
        assert kept == {"PNG": True, "JPEG": False, "WEBP": False}, engine.name


@VIPS
def test_the_vips_engine_refuses_a_decompression_bomb_as_pillow():
    from test_malformed_zoo import _bomb

    with pytest.raises(ValueError, match="decompression bomb"):
        engines.get("vips").decode(_bomb())


def test_forcing_vips_without_pyvips_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyvips", None)  # as if it were not installed
    for build in (lambda: Resize(max_edge=64, engine="vips"), lambda: Save(tmp_path / "out", engine="vips")):
        with pytest.raises(ConfigError, match=r"needs pyvips: pip install 'captionary\[vips\]'"):
            build()
    assert Resize(max_edge=64).engine_name == "pillow"  # auto: Pillow when vips is not there
    text = "workspace: ws\nimage_engine: vips\nsteps:\n  - load: {path: .}\n  - resize: {max_edge: 64}\n"
    with pytest.raises(
        ConfigError, match=r":5: resize.engine uses the vips image engine.*captionary\[vips\]"
    ):
        parse_pipeline(text, base=tmp_path, file="p.yaml")


def test_image_engine_in_yaml_is_every_image_step_s_default(tmp_path):
    text = (
        "workspace: ws\nimage_engine: pillow\nsteps:\n  - load: {path: .}\n  - convert\n"
        "  - resize: {max_edge: 64, engine: auto}\n  - crop_to_aspect: {aspect: '1:1'}\n"
        "  - save: {path: out}\n"
    )
    steps = list(parse_pipeline(text, base=tmp_path).pipeline)
    assert [getattr(step, "engine", None) for step in steps] == [None, "pillow", "auto", "pillow", "pillow"]
    bad = text.replace("image_engine: pillow", "image_engine: magick")
    with pytest.raises(ConfigError, match=":2: `image_engine` must be auto, pillow or vips"):
        parse_pipeline(bad, base=tmp_path, file="p.yaml")


def test_siblings_sharing_one_decode_give_the_same_files_in_the_pool_and_the_driver(photos, tmp_path, engine):
    """A flip's parent and child replay [resize, (mirror)] from one base: a pool task decodes it once for
    both (a lazy vips decode is read once, so the sibling gets a kept copy), as the driver does."""
    from captionary import Flip
    from conftest import tree

    def run(workers: int) -> None:
        pipeline = (
            Load(photos) >> Resize(max_edge=80, engine=engine) >> Flip() >> Save(tmp_path / f"out{workers}")
        )
        with Workspace(tmp_path / f"ws{workers}") as ws:
            summary = ws.run(pipeline, progress=False, workers=workers)
        assert summary.status == "completed" and not summary.errors
        assert summary.step("save").n_out == 24

    run(0)
    run(2)
    assert tree(tmp_path / "out0") == tree(tmp_path / "out2")


def test_a_parameter_called_engine_of_another_meaning_is_left_alone():
    """A user's image step whose `engine` names something else (an OCR engine) keeps it in its key and
    its recipe, and `image_engine:` does not fill it in."""
    step = TEngineNamedStep()
    assert not engines.has_engine_parameter(TEngineNamedStep) and engines.has_engine_parameter(Resize)
    assert step.engine_name == "pillow" and step.cache_params == {"engine": "tesseract"}
    assert '"engine":"tesseract"' in step.recipe_json


class TEngineNamedStep(ImageMap):  # not registered (no name): only built here
    engine: str = "tesseract"

    def transform(self, image, item):
        return image


# --- `engine: auto` chooses per image (core/engines.choose): Pillow for small images, vips for large --
SMALL = {"duck_toy/01.jpg", "png/small.png"}  # 400x400 JPEG (< 250,000 px), 150x100 PNG (< 40,000 px)


@pytest.fixture
def mixed(photos):
    """The sample photos (eleven 640x640 JPEGs, one 400x400) and two PNGs either side of PNG's threshold."""
    folder = photos / "png"
    folder.mkdir()
    with Image.open(photos / "dog" / "00.jpg") as photo:
        photo.convert("RGB").resize((150, 100)).save(folder / "small.png")  # 15,000 px
        photo.convert("RGB").resize((300, 200)).save(folder / "large.png")  # 60,000 px
    return photos


def _taken(name: str) -> str:
    return "pillow" if name in SMALL else "vips"


def _mixed_run(src, root, engine, workers=None):
    """A JPEG/PNG export of the images as stored, then crop >> resize >> an export of the result."""
    pipeline = (
        Load(src)
        >> Save(root / f"as-stored-{engine}", format="jsonl", image_format="png", engine=engine)
        >> CropToAspect(aspect="4:3", engine=engine)
        >> Resize(max_edge=96, engine=engine)
        >> Save(root / f"out-{engine}", format="jsonl", image_format="jpg", engine=engine)
    )
    with Workspace(root / f"ws-{engine}") as ws:
        summary = ws.run(pipeline, progress=False, workers=workers)
        assert summary.status == "completed" and not summary.errors, summary.errors
        items = {f"{item.name}.{item.format.lower().replace('jpeg', 'jpg')}": item for item in ws.items()}
        recipes = {name: [step.engine for step, _ in item.recipe] for name, item in items.items()}
        replayed = {name: pixels(item.image) for name, item in items.items()}  # recipes read back
    return summary, recipes, replayed


def _images(folder) -> dict[str, bytes]:
    from conftest import tree

    return {name: data for name, data in tree(folder).items() if name.endswith((".jpg", ".png"))}


@VIPS
def test_auto_takes_pillow_for_small_images_and_vips_for_large_ones_in_one_run(mixed, tmp_path):
    """Each image's files are byte for byte what the engine `auto` chose for it makes when forced (its
    pixels made, and encoded, by that engine), and its recipe names that engine, so it replays exactly."""
    runs = {engine: _mixed_run(mixed, tmp_path, engine) for engine in ("auto", "pillow", "vips")}
    names = set(runs["auto"][1])
    assert len(names) == 14 and names > SMALL
    taken = {name.rsplit(".", 1)[0]: _taken(name) for name in names}  # file stem -> engine
    for stage in ("as-stored", "out"):
        files = {engine: _images(tmp_path / f"{stage}-{engine}") for engine in runs}
        assert files["auto"].keys() == files["pillow"].keys() == files["vips"].keys()
        assert len(files["auto"]) == 14
        for name, data in files["auto"].items():
            chosen = taken[name.rsplit(".", 1)[0]]
            assert data == files[chosen][name], (stage, name, chosen)
        differ = [n for n in files["pillow"] if files["pillow"][n] != files["vips"][n]]
        # so each file above tells which engine made it (a PNG stored as PNG is copied: no engine)
        assert len(differ) == (12 if stage == "as-stored" else 14), stage
    for name in names:
        assert runs["auto"][1][name] == [_taken(name)] * 2, name  # crop and resize: one engine
        assert (runs["auto"][2][name] == runs[_taken(name)][2][name]).all(), name


@VIPS
def test_an_auto_chain_stays_in_the_engine_its_image_is_in(mixed, tmp_path):
    """After a forced step, `auto` works on in the engine that made the image (whatever its size), and
    `save` encodes with it."""
    pipeline = (
        Load(mixed)
        >> Resize(max_edge=500, engine="pillow")  # the 640 px photos: Pillow's images now
        >> Convert()
        >> CropToAspect(aspect="4:3")
        >> Resize(max_edge=64, engine="vips")
        >> CropToAspect(aspect="1:1")  # vips's images (the 400 px photo too)
    )
    with Workspace(tmp_path / "ws") as ws:
        ws.run(pipeline, progress=False)
        engines_used = {item.name: [step.engine for step, _ in item.recipe] for item in ws.items()}
    assert engines_used["dog/00"] == ["pillow", "pillow", "vips", "vips"]
    assert engines_used["duck_toy/01"] == ["pillow", "vips", "vips"]  # 400 px: resize(500) changed nothing


def test_auto_chooses_by_the_source_pixels_and_format_as_the_readme_says(monkeypatch):
    choose = engines.choose
    if engines.vips_available():
        assert choose(500, 500, "JPEG") == "vips" and choose(499, 500, "JPEG") == "pillow"
        assert choose(500, 500, "TIFF") == "vips" and choose(499, 500, "TIFF") == "pillow"
        assert choose(200, 200, "PNG") == "vips" and choose(199, 200, "PNG") == "pillow"
        assert choose(2000, 1000, "WEBP") == "vips" and choose(1999, 1000, "WEBP") == "pillow"
    monkeypatch.setitem(sys.modules, "pyvips", None)
    assert choose(8000, 8000, "JPEG") == "pillow"  # no pyvips: always Pillow


@VIPS
def test_auto_keys_name_the_rule_and_without_pyvips_are_pillow_s(monkeypatch):
    pillow = Resize(max_edge=64, engine="pillow")
    auto = Resize(max_edge=64)
    assert (
        auto.cache_params["engine"]
        == engines.auto_rule()
        == ("auto:vips if pixels PNG>=40000,WEBP>=2000000,other>=250000")
    )
    assert auto.cache_prefix not in (pillow.cache_prefix, Resize(max_edge=64, engine="vips").cache_prefix)
    assert CropToAspect().cache_prefix != CropToAspect(engine="pillow").cache_prefix
    box = Resize(max_edge=64, resample="box")  # a Pillow-only filter: auto is Pillow, its key too
    assert box.cache_prefix == Resize(max_edge=64, resample="box", engine="pillow").cache_prefix
    monkeypatch.setitem(engines.AUTO_VIPS_FROM, "PNG", 50_000)
    assert Resize(max_edge=64).cache_prefix != auto.cache_prefix  # another threshold: other keys
    monkeypatch.setitem(sys.modules, "pyvips", None)  # as if it were not installed: the keys of before
    assert Resize(max_edge=64).cache_prefix == pillow.cache_prefix


@VIPS
def test_auto_reruns_compute_nothing_and_switching_to_pillow_rewrites_only_what_vips_made(mixed, tmp_path):
    """auto's results are keyed by its rule, so none answers for `engine: pillow`: the image steps
    compute again and `save` encodes every image again, but only the files auto had made with vips
    change on disk (the others are the same bytes: left as they are)."""
    from conftest import mtimes, tree

    out = tmp_path / "out"

    def run(ws, engine):
        pipeline = Load(mixed) >> Resize(max_edge=96, engine=engine)
        return ws.run(pipeline >> Save(out, image_format="jpg", engine=engine), progress=False)

    with Workspace(tmp_path / "ws") as ws:
        assert run(ws, "auto").step("resize").computed == 14
        assert run(ws, "auto").computed == 0
        made, stamps = tree(out), mtimes(out)
        pillow = run(ws, "pillow")
        assert pillow.step("resize").computed == 14 and pillow.step("resize").cached == 0
        assert pillow.step("save").computed == 14
        changed = {name for name, data in tree(out).items() if data != made[name]}
        small = {name.rsplit(".", 1)[0] + ".jpg" for name in SMALL}
        assert changed == {name for name in made if name.endswith(".jpg") and name not in small}
        assert all(mtimes(out)[name] == stamps[name] for name in made if name not in changed)
        back = run(ws, "auto")  # auto's results are still cached
        assert back.step("resize").computed == 0 and back.step("resize").cached == 14
        assert tree(out) == made


def test_auto_reads_the_size_from_the_header_when_the_properties_lack_it(mixed, tmp_path):
    from captionary.core.item import Item, auto_engine

    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(mixed), progress=False)
        for item in ws.items():
            bare = Item(item.id, props={}, store=ws.blobs, format=item.format)
            assert auto_engine(bare) == auto_engine(item), item.name
            if engines.vips_available():
                assert auto_engine(item) == _taken(f"{item.name}.{'png' if item.format == 'PNG' else 'jpg'}")


@VIPS
def test_a_pillow_workspace_recomputes_once_when_pyvips_arrives_and_only_vips_made_files_change(
    mixed, tmp_path, monkeypatch
):
    """The README's promise: without pyvips `auto` is Pillow (Pillow's keys); once pyvips is there the
    image steps compute once again (auto's key names its rule), the files of the images auto gives to
    vips change, the small ones' files stay byte for byte (and untouched), and the next run is cached."""
    from conftest import mtimes, tree

    out = tmp_path / "out"

    def pipeline():  # built anew for each run, as a new process would (steps keep their keys)
        return Load(mixed) >> Resize(max_edge=96) >> Save(out, image_format="jpg")

    with Workspace(tmp_path / "ws") as ws:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "pyvips", None)  # not installed yet (in the driver: workers=0)
            before = ws.run(pipeline(), progress=False, workers=0)
            assert before.step("resize").computed == 14
            assert {step.engine for item in ws.items() for step, _ in item.recipe} == {"pillow"}
        made, stamps = tree(out), mtimes(out)
        after = ws.run(pipeline(), progress=False)
        assert after.step("resize").computed == 14 and after.step("resize").cached == 0
        changed = {name for name, data in tree(out).items() if data != made[name]}
        small = {name.rsplit(".", 1)[0] + ".jpg" for name in SMALL}
        assert changed == {name for name in made if name.endswith(".jpg") and name not in small}
        assert all(mtimes(out)[name] == stamps[name] for name in small)
        assert ws.run(pipeline(), progress=False).computed == 0
