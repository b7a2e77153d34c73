"""The everyday CPU steps, on real photos and on the awkward image modes."""

from __future__ import annotations

import pytest
from PIL import Image

from captionary import (
    AddTags,
    Convert,
    CropToAspect,
    FilterByAspectRatio,
    FilterMonochrome,
    Load,
    ParamError,
    RemoveTags,
    Resize,
    Save,
    SetCaption,
    Workspace,
)
from captionary.core.item import Item


def run(ws_path, pipeline):
    with Workspace(ws_path) as ws:
        summary = ws.run(pipeline, progress=False, workers=0)
        return summary, {i.name: i for i in ws.items(include_dropped=True)}


def test_filter_by_aspect_ratio(photos, ws_path):
    Image.open(photos / "cat" / "00.jpg").crop((0, 0, 640, 200)).save(photos / "panorama.jpg")
    summary, items = run(ws_path, Load(photos) >> FilterByAspectRatio(max_ratio=2.0))
    assert summary.step("filter_by_aspect_ratio").dropped == 1
    assert items["panorama"]["drop_reason"] == "aspect ratio 3.200 > max_ratio 2.0"
    with pytest.raises(ParamError, match="give min_ratio and/or max_ratio"):
        FilterByAspectRatio()


def test_filter_monochrome_drops_grey_keeps_colour(photos, ws_path):
    Image.open(photos / "teapot" / "00.jpg").convert("L").convert("RGB").save(photos / "grey.jpg")
    summary, items = run(ws_path, Load(photos) >> FilterMonochrome())
    assert summary.step("filter_monochrome").dropped == 1
    assert items["grey"]["drop_reason"].startswith("monochrome: colourfulness 0.")
    assert all(item.get("dropped_by") is None for name, item in items.items() if name != "grey")


@pytest.mark.parametrize(("aspect", "size"), [("1:1", (300, 300)), ("3:2", (300, 200)), (0.5, (150, 300))])
def test_crop_to_aspect(aspect, size):
    image = Image.new("RGB", (300, 300)) if aspect != "1:1" else Image.new("RGB", (450, 300))
    cropped = CropToAspect(aspect=aspect).transform(image, Item("x"))
    assert cropped.size == size


def test_crop_position_picks_the_window():
    image = Image.new("RGB", (300, 100))
    image.paste((255, 0, 0), (0, 0, 100, 100))
    left = CropToAspect(aspect="1:1", position=0.0).transform(image, Item("x"))
    right = CropToAspect(aspect="1:1", position=1.0).transform(image, Item("x"))
    assert left.getpixel((50, 50)) == (255, 0, 0) and right.getpixel((50, 50)) == (0, 0, 0)


def test_crop_and_resize_pipeline_writes_square_images(photos, ws_path, tmp_path):
    Image.open(photos / "dog" / "00.jpg").crop((0, 0, 640, 400)).save(photos / "wide.jpg")
    run(ws_path, Load(photos) >> CropToAspect(aspect="1:1") >> Resize(max_edge=128) >> Save(tmp_path / "out"))
    assert Image.open(tmp_path / "out" / "wide.jpg").size == (128, 128)


def test_convert_handles_alpha_palette_cmyk_and_16_bit(tmp_path):
    convert = Convert(background="#ff0000")
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    assert convert.transform(rgba, Item("x")).getpixel((0, 0)) == (255, 0, 0)  # transparent -> background
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 255, 0] * 256)
    palette.info["transparency"] = 0
    assert convert.transform(palette, Item("x")).getpixel((0, 0)) == (255, 0, 0)
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))
    assert convert.transform(cmyk, Item("x")).getpixel((0, 0)) == (255, 255, 255)
    deep = Image.new("I;16", (4, 4), 65535)
    assert convert.transform(deep, Item("x")).getpixel((0, 0)) == (255, 255, 255)
    rgb = Image.new("RGB", (4, 4))
    assert convert.transform(rgb, Item("x")) is rgb  # nothing to do: no new image
    with pytest.raises(ParamError, match="not a colour"):
        Convert(background="bluish")


def test_png_with_alpha_ends_up_rgb_jpeg(photos, ws_path, tmp_path):
    Image.new("RGBA", (64, 48), (10, 20, 30, 128)).save(photos / "alpha.png")
    run(ws_path, Load(photos) >> Convert() >> Save(tmp_path / "out", image_format="jpg"))
    out = Image.open(tmp_path / "out" / "alpha.jpg")
    assert out.mode == "RGB" and out.format == "JPEG"


def test_set_caption_template_and_its_cache_inputs(photos, ws_path, tmp_path):
    step = SetCaption(template="photo of sks dog, {caption}", default="a dog")
    assert step.reads == ("caption",)
    _, items = run(ws_path, Load(photos) >> step >> Save(tmp_path / "out"))
    assert items["dog/00"]["caption"] == "photo of sks dog, a photo of sks dog"
    assert items["dog/03"]["caption"] == "photo of sks dog, a dog"
    (photos / "dog" / "03.txt").write_text("a dog on a bench")
    again, _ = run(ws_path, Load(photos) >> step >> Save(tmp_path / "out"))
    assert again.step("set_caption").computed == 1  # only the item whose caption changed
    strict, _ = run(ws_path, Load(photos) >> SetCaption(template="{caption}!"))
    assert strict.step("set_caption").failed == 8
    assert "no property 'caption'" in strict.errors[0]["reason"]
    with pytest.raises(ParamError, match="invalid template"):
        SetCaption(template="{caption")


def test_add_and_remove_tags(photos, ws_path):
    (photos / "cat" / "00.json").write_text('{"tags": ["cat", "blurry"]}')
    _, items = run(ws_path, Load(photos) >> AddTags(tags=["pet", "cat"]) >> RemoveTags(tags=["blurry"]))
    assert items["cat/00"]["tags"] == ["cat", "pet"]
    assert items["dog/00"]["tags"] == ["pet", "cat"]


def test_map_caption_and_rewrite_tags(photos, ws_path):
    from captionary import MapCaption, RewriteTags

    (photos / "cat" / "00.json").write_text(
        '{"caption": ["a cat ", "a kitty"], "tags": ["kitty", "blurry", "cat"]}'
    )
    pipeline = (
        Load(photos)
        >> MapCaption(prefix="ohwx, ", replace={"kitty": "cat"})
        >> RewriteTags(mapping={"kitty": "cat", "blurry": ""})
    )
    _, items = run(ws_path, pipeline)
    assert items["cat/00"]["caption"] == ["ohwx, a cat", "ohwx, a cat"]
    assert items["cat/00"]["tags"] == ["cat"]
    assert items["dog/00"]["caption"] == "ohwx, a photo of sks dog"
    assert "caption" not in items["dog/03"].props  # no caption: nothing to edit


def test_resize_modes_and_no_upscaling():
    image = Image.new("RGB", (400, 100))
    item = Item("x")
    assert Resize(max_edge=200).transform(image, item).size == (200, 50)
    assert Resize(min_edge=50).transform(image, item).size == (200, 50)
    assert Resize(target_area=10_000).transform(image, item).size == (200, 50)
    assert Resize(max_edge=800).transform(image, item) is image  # never upscales unless asked
    assert Resize(max_edge=800, upscale=True).transform(image, item).size == (800, 200)
    with pytest.raises(ParamError, match="exactly one of max_edge, min_edge or target_area"):
        Resize(max_edge=10, target_area=100)


def test_resize_box_is_the_mean_of_the_area_each_pixel_covers():
    columns = [0, 100, 40, 60]  # a 4 x 2 image of four columns shrunk to 2 x 1: pairs averaged
    image = Image.new("L", (4, 2))
    image.putdata(columns * 2)
    shrunk = Resize(max_edge=2, resample="box").transform(image, Item("x"))
    assert list(shrunk.getdata()) == [50, 50]
    assert list(Resize(max_edge=2).transform(image, Item("x")).getdata()) != [50, 50]  # lanczos is not


def test_resize_box_decodes_a_jpeg_at_the_target_scale(photos, ws_path, tmp_path):
    """box lets the decoder shrink by DCT scaling down to the target size (lanczos: twice it)."""
    with Workspace(ws_path) as ws:
        pipeline = Load(photos) >> Resize(max_edge=320, resample="box") >> Save(tmp_path / "out")
        ws.run(pipeline, progress=False, workers=0)
        dog = next(item for item in ws.items() if item.name == "dog/01")
        pixels = dog.image
    drafted = Image.open(photos / "dog" / "01.jpg")
    drafted.draft("RGB", (320, 320))
    drafted.load()
    assert drafted.size == pixels.size == (320, 320)  # a 640 px JPEG decoded at DCT scale 1/2
    assert pixels.tobytes() == drafted.tobytes()
    full = Image.open(photos / "dog" / "01.jpg").convert("RGB").resize((320, 320), Image.Resampling.BOX)
    difference = sum(abs(a - b) for a, b in zip(pixels.tobytes(), full.tobytes())) / len(full.tobytes())
    assert difference < 2  # the DCT's shrink is close to the exact area mean (0-255 scale)


def test_resize_hamming_is_close_to_the_area_mean(photos):
    """At a whole-number scale the area mean (OpenCV's INTER_AREA, img2dataset's filter) is
    Pillow's reduce(); hamming stays within 1/255 of it on a real photo, closer than lanczos."""
    import numpy as np

    photo = Image.open(photos / "dog" / "01.jpg").convert("RGB")
    area = np.asarray(photo.reduce(2), dtype=np.int16)
    distance = {}
    for resample in ("hamming", "lanczos", "box"):
        resized = Resize(max_edge=photo.width // 2, resample=resample).transform(photo, Item("x"))
        distance[resample] = np.abs(np.asarray(resized, dtype=np.int16) - area).mean()
    assert distance["box"] < 0.5  # whole pixels: at 2x exactly the area mean (up to rounding)
    assert distance["hamming"] < 1.0 and distance["hamming"] < distance["lanczos"]


def test_resize_hamming_and_box_are_pillow_filters():
    assert Resize(max_edge=10, resample="box").engine_name == "pillow"  # auto: Pillow, whatever is installed
    assert Resize(max_edge=10, resample="hamming", engine="pillow").engine_name == "pillow"
    from captionary.core.engines import vips_available
    from captionary.errors import ConfigError

    # without pyvips, asking for vips at all is the first thing to say (with the install line)
    refused = (ParamError, "hamming is a Pillow filter") if vips_available() else (ConfigError, "pyvips")
    with pytest.raises(refused[0], match=refused[1]):
        Resize(max_edge=10, resample="hamming", engine="vips")
