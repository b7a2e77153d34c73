"""The pieces of the tag step: WD14 preprocessing, MCut, the tag CSV, tag-name clean-up."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from captionary.errors import ConfigError
from captionary.steps.tags.cleanup import clean_tag
from captionary.steps.tags.labels import read_labels
from captionary.steps.tags.wd14 import above, mcut_threshold, prepare_image


def test_preprocessing_pads_with_white_and_gives_bgr_float_nhwc():
    wide = Image.new("RGB", (200, 100), (255, 0, 0))  # red, twice as wide as high
    array = prepare_image(wide, 448)
    assert array.shape == (448, 448, 3) and array.dtype == np.float32
    # padded to 200x200 with white above and below: rows 0-49 and 150-199 of the square
    assert array[:100, 224].tolist() == [[255.0, 255.0, 255.0]] * 100
    assert array[-100:, 224].tolist() == [[255.0, 255.0, 255.0]] * 100
    assert array[224, :, :].tolist() == [[0.0, 0.0, 255.0]] * 448  # red in BGR order, 0-255
    tall = prepare_image(Image.new("RGB", (50, 100), (0, 0, 255)), 448)  # blue, padded left/right
    assert tall[224, 10].tolist() == [255.0, 255.0, 255.0] and tall[224, 224].tolist() == [255.0, 0.0, 0.0]


def test_preprocessing_composites_transparency_on_white():
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # fully transparent black
    image.paste((0, 255, 0, 255), (16, 16, 48, 48))  # an opaque green square in the middle
    array = prepare_image(image, 64)  # same size: no resampling
    assert array[0, 0].tolist() == [255.0, 255.0, 255.0]
    assert array[32, 32].tolist() == [0.0, 255.0, 0.0]
    gray = prepare_image(Image.new("L", (10, 10), 77), 10)
    assert gray[5, 5].tolist() == [77.0, 77.0, 77.0]


def test_preprocessing_matches_the_reference_steps_on_a_real_photo():
    from conftest import SAMPLE_PHOTOS

    photo = Image.open(SAMPLE_PHOTOS / "dog" / "00.jpg").convert("RGB")
    side = max(photo.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(photo, ((side - photo.width) // 2, (side - photo.height) // 2))
    reference = np.asarray(square.resize((448, 448), Image.Resampling.BICUBIC), dtype=np.float32)[..., ::-1]
    assert np.array_equal(prepare_image(photo, 448), reference)


def test_mcut_takes_the_midpoint_of_the_largest_gap():
    assert mcut_threshold(np.array([0.9, 0.85, 0.3, 0.2])) == pytest.approx(0.575)
    assert mcut_threshold(np.array([0.1, 0.95, 0.5])) == pytest.approx(0.725)
    scores = np.array([0.9, 0.85, 0.3, 0.2, 0.1])
    assert above(scores, np.array([0, 1, 2, 3]), 0.25).tolist() == [0, 1, 2]
    assert above(scores, np.array([0, 1, 2, 3]), None).tolist() == [0, 1]
    assert above(scores, np.array([3, 4]), None, floor=0.5).tolist() == []  # MCut 0.15, floor 0.5


def test_tag_csv_is_read_in_order_with_categories(tmp_path):
    path = tmp_path / "selected_tags.csv"
    path.write_text("tag_id,name,category,count\n1,general,9,5\n2,1girl,0,9\n3,miku,4,3\n")
    labels = read_labels(path)
    assert labels.names == ("general", "1girl", "miku")
    assert (labels.indexes(9), labels.indexes(0), labels.indexes(4)) == ([0], [1], [2])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tag_id,name,count\n1,a,3\n", r"selected_tags\.csv:1: needs columns name and category"),
        (
            "tag_id,name,category,count\n1,a,0,3\n2,b,x,3\n",
            r"selected_tags\.csv:3: category 'x' is not an integer",
        ),
        ("tag_id,name,category,count\n1,,0,3\n", r"selected_tags\.csv:2: empty tag name"),
        ("tag_id,name,category,count\n", r"selected_tags\.csv: no tags"),
    ],
)
def test_bad_tag_csv_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "selected_tags.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_labels(path)


def test_tag_names_are_cleaned_as_trainers_expect():
    assert clean_tag("long_hair") == "long hair"
    assert clean_tag("^_^") == "^_^" and clean_tag("o_o") == "o_o"  # kaomoji keep their underscore
    assert clean_tag("hatsune_miku_(vocaloid)", escape=True) == "hatsune miku \\(vocaloid\\)"
    assert clean_tag("hatsune_miku_(vocaloid)", underscores=False) == "hatsune_miku_(vocaloid)"
