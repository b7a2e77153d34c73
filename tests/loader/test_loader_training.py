"""The dataset in a real training input pipeline: DataLoader worker processes, image transforms checked
against Pillow, config as YAML, tokenizer presets from tokenizers saved on disk, collate."""

from __future__ import annotations

import pickle

import loader_fixtures
import numpy as np
import pytest
from PIL import Image

from captionary.errors import ConfigError
from captionary.loader import (
    BucketBatchSampler,
    ImageCaptionDataset,
    SampleKey,
    Tokenize,
    collate,
)

torch = pytest.importorskip("torch")
varied, export = loader_fixtures.varied, loader_fixtures.export

BUCKETS = {"resolution": 256, "min_bucket_reso": 128, "max_bucket_reso": 512}
RANDOM = {"crop": "random", "flip_p": 0.5}


def epoch_batches(dataset, sampler, epoch, workers):
    sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers
    )
    return list(loader)


def test_dataloader_with_two_workers_matches_the_main_process(export):
    out = export("kohya")
    dataset = ImageCaptionDataset(
        out, image=RANDOM, caption={"shuffle_tags": True, "keep_tokens": 1}, buckets=BUCKETS, seed=11
    )
    sampler = BucketBatchSampler(dataset, batch_size=2, seed=11)
    first = epoch_batches(dataset, sampler, 0, workers=2)
    assert sorted(i for b in first for i in b["id"]) == sorted(r.id for r in dataset.records)
    for batch in first:
        w, h = batch["bucket"][0].tolist()
        assert batch["pixel_values"].shape[1:] == (3, h, w)
        assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1
    # the same epoch again, in the main process: identical pixels and captions (seeded by epoch+index)
    again = epoch_batches(dataset, sampler, 0, workers=0)
    for a, b in zip(first, again):
        assert a["id"] == b["id"] and a["caption"] == b["caption"]
        assert torch.equal(a["pixel_values"], b["pixel_values"])
    # another epoch draws other crops, flips and tag orders
    later = {
        i: (c, f)
        for b in epoch_batches(dataset, sampler, 1, 2)
        for i, c, f in zip(b["id"], b["caption"], b["flipped"].tolist())
    }
    before = {i: (c, f) for b in first for i, c, f in zip(b["id"], b["caption"], b["flipped"].tolist())}
    assert later != before


def test_center_crop_equals_pillow_and_flip_mirrors(varied):
    dataset = ImageCaptionDataset(varied, image={"flip_p": 1.0, "interpolation": "bicubic"}, buckets=BUCKETS)
    plain = ImageCaptionDataset(varied, image={"interpolation": "bicubic"}, buckets=BUCKETS)
    for index in range(len(plain)):
        sample = plain[index]
        path = plain.records[index].image
        with Image.open(path) as image:
            resized = image.convert("RGB").resize(sample["resized_size"], Image.Resampling.BICUBIC)
        top, left = sample["crop_top_left"]
        w, h = sample["bucket"]
        assert (resized.width - w) // 2 == left and (resized.height - h) // 2 == top
        want = np.asarray(resized.crop((left, top, left + w, top + h)), dtype=np.float32) / 127.5 - 1
        got = sample["pixel_values"].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, want, atol=1e-6)
        flipped = dataset[index]
        assert flipped["flipped"] is True
        assert torch.equal(flipped["pixel_values"], torch.flip(sample["pixel_values"], dims=[2]))


def test_random_crop_stays_inside_and_flip_rate(varied):
    dataset = ImageCaptionDataset(varied, image=RANDOM, buckets=BUCKETS)
    flips, lefts = 0, set()
    trials = 0
    trims = [c.resized_size[0] - c.reso[0] for c in dataset.choices]
    widest = trims.index(max(trims))
    for epoch in range(200):
        for index in range(len(dataset)):
            g = dataset.geometry(index, epoch)
            top, left = g["crop_top_left"]
            assert 0 <= left <= g["resized_size"][0] - g["bucket"][0]
            assert 0 <= top <= g["resized_size"][1] - g["bucket"][1]
            flips += g["flipped"]
            trials += 1
            if index == widest:
                lefts.add(left)
    assert abs(flips / trials - 0.5) < 0.03
    assert max(trims) >= 20
    assert len(lefts) > max(trims) // 2  # 200 draws spread over the possible offsets


def test_config_as_yaml(varied, tmp_path):
    config = tmp_path / "loader.yaml"
    config.write_text(
        "image: {crop: center, flip_p: 0.0}\n"
        "caption: {prefix: ohwx, dropout: 0.0}\n"
        "buckets: {resolution: 128, min_bucket_reso: 64, max_bucket_reso: 256, bucket_reso_steps: 32}\n"
    )
    dataset = ImageCaptionDataset(varied, config=config)
    sample = dataset[SampleKey(0, 3)]
    assert sample["caption"].startswith("ohwx, ")
    assert max(sample["bucket"]) <= 256 and all(v % 32 == 0 for v in sample["bucket"])
    config.write_text("image: {crop: middle}\n")
    with pytest.raises(ConfigError, match=r"image\.crop must be one of \('center', 'random'\); got 'middle'"):
        ImageCaptionDataset(varied, config=config)
    config.write_text("buckets: {resolutoin: 512}\n")
    with pytest.raises(ConfigError, match=r"buckets: unknown setting\(s\) \['resolutoin'\]"):
        ImageCaptionDataset(varied, config=config)


def _tokenizer(folder, words):
    """A real fast tokenizer (WordLevel), trained offline and saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<pad>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.save_pretrained(folder)
    return folder


def test_tokenizer_presets_from_disk(varied, tmp_path):
    words = sorted({w for line in loader_fixtures.VARIED for w in line[2].replace(",", " ").split()} | {","})
    clip_l = _tokenizer(tmp_path / "clip_l", words)
    clip_g = _tokenizer(tmp_path / "clip_g", list(reversed(words)))
    t5 = _tokenizer(tmp_path / "t5", words)
    sdxl = Tokenize("sdxl", clip_l=clip_l, clip_g=clip_g)
    square = {"enable": False, "resolution": 64, "min_bucket_reso": 64}
    dataset = ImageCaptionDataset(varied, buckets=square, tokenizer=pickle.loads(pickle.dumps(sdxl)))
    batch = collate([dataset[i] for i in range(2)])
    assert batch["input_ids"].shape == batch["input_ids_2"].shape == (2, 77)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(clip_l)
    for ids, caption in zip(batch["input_ids"], batch["caption"]):
        decoded = reloaded.decode(ids, skip_special_tokens=True)
        assert decoded.replace(" ", "") == caption.replace(" ", "")
    assert not torch.equal(batch["input_ids"], batch["input_ids_2"])  # two different vocabularies
    flux = Tokenize("flux", clip_l=clip_l, t5=t5)("sks dog, grass")
    assert flux["input_ids"].shape == (77,) and flux["t5_input_ids"].shape == (512,)
    assert Tokenize("sd3", clip_l=clip_l, clip_g=clip_g, t5=t5, max_lengths={"t5": 128})("x")[
        "t5_input_ids"
    ].shape == (128,)
    with pytest.raises(ConfigError, match=r"needs paths for \['clip_g', 'clip_l'\]; missing \['clip_g'\]"):
        Tokenize("sdxl", clip_l=clip_l)
    with pytest.raises(ConfigError, match="unknown tokenizer preset 'sd2'"):
        Tokenize("sd2", clip_l=clip_l)


def test_collate_refuses_mixed_buckets(varied):
    dataset = ImageCaptionDataset(varied, buckets=BUCKETS)
    shapes = {tuple(dataset[i]["pixel_values"].shape): i for i in range(len(dataset))}
    a, b = list(shapes.values())[:2]
    with pytest.raises(ValueError, match="cannot stack 'pixel_values': shapes differ"):
        collate([dataset[a], dataset[b]])


def test_spawned_workers_get_a_pickled_dataset(varied):
    """With the spawn start method (macOS, Windows, CUDA setups) the dataset itself crosses processes."""
    dataset = ImageCaptionDataset(varied, image=RANDOM, buckets=BUCKETS, seed=2)
    sampler = BucketBatchSampler(dataset, batch_size=2, seed=2)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=2, multiprocessing_context="spawn"
    )
    spawned = list(loader)
    local = epoch_batches(dataset, sampler, 0, workers=0)
    assert [b["id"] for b in spawned] == [b["id"] for b in local]
    for a, b in zip(spawned, local):
        assert torch.equal(a["pixel_values"], b["pixel_values"]) and a["caption"] == b["caption"]


def test_importing_the_loader_does_not_import_torch():
    import subprocess
    import sys

    heavy = "('torch', 'transformers', 'diffusers', 'safetensors')"
    code = (
        f"import sys, captionary.loader; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_large_jpegs_decode_at_reduced_scale_with_the_same_picture(tmp_path):
    folder = tmp_path / "large"
    folder.mkdir()
    with Image.open(loader_fixtures.SAMPLES / "dog" / "00.jpg") as photo:
        photo.convert("RGB").resize((2048, 1536), Image.Resampling.LANCZOS).save(
            folder / "dog.jpg", quality=95
        )
    (folder / "dog.txt").write_text("sks dog\n")
    dataset = ImageCaptionDataset(folder, buckets=BUCKETS)
    geometry = dataset.geometry(0, 0)
    # 4:3 is 1/3 from both 1:1 and 5:3; in floating point 1:1 is a hair closer (as in kohya's numpy):
    # 256x256, the image scaled to height 256 (341x256). Twice that (682x512) is the 1/2 DCT scale.
    assert geometry["resized_size"] == (341, 256) and geometry["bucket"] == (256, 256)
    from captionary.loader.records import open_image

    assert open_image(dataset.records[0], min_size=geometry["resized_size"]).size == (1024, 768)  # 1/2 scale
    with Image.open(folder / "dog.jpg") as full:
        reference = dataset.image_transform.to_tensor(
            dataset.image_transform.pixels(full.convert("RGB"), geometry)
        )
    assert (dataset[0]["pixel_values"] - reference).abs().mean() < 0.01
