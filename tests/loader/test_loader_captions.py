"""Caption transforms, measured with fixed seeds: rates within tolerance, kept tokens never move."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from captionary.errors import ConfigError
from captionary.loader import CaptionTransform

TAGS = "sks dog, grass, sunny, outdoors, running, ball, park, tree"
N = 4000


def runs(transform: CaptionTransform, captions: list[str], seed: int = 0) -> list[str]:
    return [transform(captions, random.Random(f"{seed}:{n}")) for n in range(N)]


def test_caption_dropout_rate_within_tolerance():
    out = runs(CaptionTransform(dropout=0.1, prefix="ohwx"), [TAGS])
    rate = out.count("") / N
    assert abs(rate - 0.1) < 0.015  # binomial sd at n=4000 is 0.0047: a 3-sigma band
    assert all(text.startswith("ohwx, sks dog") for text in out if text)


def test_shuffle_keeps_the_first_tokens_fixed_and_moves_the_rest():
    transform = CaptionTransform(shuffle_tags=True, keep_tokens=2)
    out = runs(transform, [TAGS])
    tags = [t.strip() for t in TAGS.split(",")]
    first_positions: Counter[str] = Counter()
    for text in out:
        parts = text.split(", ")
        assert parts[:2] == tags[:2]
        assert sorted(parts[2:]) == sorted(tags[2:])
        first_positions[parts[2]] += 1
    # every movable tag comes first about equally often (6 tags: 1/6 each)
    assert set(first_positions) == set(tags[2:])
    for count in first_positions.values():
        assert abs(count / N - 1 / 6) < 0.03


def test_tag_dropout_rate_and_kept_tokens():
    out = runs(CaptionTransform(tag_dropout=0.25, keep_tokens=1), [TAGS])
    kept_rest = 0
    for text in out:
        parts = text.split(", ")
        assert parts[0] == "sks dog"
        kept_rest += len(parts) - 1
    rate = 1 - kept_rest / (7 * N)
    assert abs(rate - 0.25) < 0.01
    assert len({text for text in out}) > 50  # many different subsets, not one frozen choice


def test_one_of_several_captions_uniformly():
    captions = ["a dog", "a brown dog on grass", "sks dog"]
    counts = Counter(runs(CaptionTransform(), captions))
    assert set(counts) == set(captions)
    for count in counts.values():
        assert abs(count / N - 1 / 3) < 0.03


def test_same_seed_same_text_and_plain_captions_untouched():
    transform = CaptionTransform(dropout=0.2, shuffle_tags=True, tag_dropout=0.1, keep_tokens=1)
    assert runs(transform, [TAGS], seed=5) == runs(transform, [TAGS], seed=5)
    assert runs(transform, [TAGS], seed=5) != runs(transform, [TAGS], seed=6)
    assert CaptionTransform()([TAGS], random.Random(0)) == TAGS
    assert CaptionTransform(prefix="ohwx")([], random.Random(0)) == "ohwx"
    assert not CaptionTransform().is_random and transform.is_random


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match=r"caption\.dropout must be within 0\.\.1; got 1\.5"):
        CaptionTransform(dropout=1.5)
    with pytest.raises(ConfigError, match="keep_tokens must be >= 0"):
        CaptionTransform(keep_tokens=-1)
