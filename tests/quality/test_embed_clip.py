"""clip_embed, clip_score and aesthetic with tiny random CLIP / SigLIP models built here (no hub)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from captionary import ItemError, Load, Workspace  # noqa: E402
from captionary.core.arrays import is_array_ref  # noqa: E402
from captionary.steps.scores.aesthetic import Aesthetic  # noqa: E402
from captionary.steps.scores.clip_embed import ClipEmbed  # noqa: E402
from captionary.steps.scores.clip_score import ClipScore  # noqa: E402

WORDS = ["a", "photo", "of", "dog", "cat", "drawing", "toy", "teapot", "duck", "painting"]


def tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token=specials[1],
        eos_token=specials[2],
        pad_token=specials[2],
    )


def tiny_text_vision(vocab_size: int) -> dict:
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {**small, "vocab_size": vocab_size, "max_position_embeddings": 16, "bos_token_id": 1}
    text.update(eos_token_id=2, pad_token_id=2)
    return {"text_config": text, "vision_config": {**small, "image_size": 32, "patch_size": 8}}


def build_clip(folder: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = tokenizer()
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(**tiny_text_vision(len(tok)), projection_dim=16)).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_siglip(folder: Path) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    tok = tokenizer()
    torch.manual_seed(1)
    model = SiglipModel(SiglipConfig(**tiny_text_vision(len(tok)))).eval()
    processor = SiglipProcessor(
        image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_siglip2(folder: Path) -> Path:
    """SigLIP 2 (NaFlex: variable patch counts with an attention mask)."""
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

    tok = tokenizer()
    config = tiny_text_vision(len(tok))
    config["vision_config"].pop("image_size")
    config["vision_config"].update(num_patches=16, patch_size=16)
    torch.manual_seed(2)
    model = Siglip2Model(Siglip2Config(**config)).eval()
    processor = Siglip2Processor(image_processor=Siglip2ImageProcessor(max_num_patches=16), tokenizer=tok)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return build_clip(tmp_path_factory.mktemp("tiny-clip"))


def reference_embeddings(folder: Path, items) -> np.ndarray:
    """The model called directly with transformers, as a user would without captionary."""
    from transformers import AutoModel, AutoProcessor

    processor, model = AutoProcessor.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    images = [item.image.convert("RGB") for item in items]
    with torch.no_grad():
        out = model.get_image_features(**processor(images=images, return_tensors="pt"))
    features = getattr(out, "pooler_output", out)
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def test_clip_embed_matches_the_model_and_is_cached(photos, ws_path, clip_dir):
    embed = ClipEmbed(model=str(clip_dir), batch_size=5, device="cpu")
    with Workspace(ws_path) as ws:
        first = ws.run(Load(photos) >> embed, progress=False)
        items = sorted(ws.items(), key=lambda i: i.name)
        assert first.step("clip_embed").computed == 12 and not first.errors
        refs = [item["clip_embedding"] for item in items]
        assert all(is_array_ref(r) and r["shape"] == [16] and r["dtype"] == "float32" for r in refs)
        assert {r["model"] for r in refs} == {embed.model_id()} and embed.model_id().startswith("dir:")
        got = np.stack([item.array("clip_embedding") for item in items])
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(got, reference_embeddings(clip_dir, items), atol=2e-5)
        assert len({tuple(np.round(row, 5)) for row in got}) == 12  # different photos, different embeddings
        assert len({r["array"] for r in refs}) == 3  # batches of 5, 5 and 2: one blob each

        again = ws.run(
            Load(photos) >> ClipEmbed(model=str(clip_dir), batch_size=3, device="cpu"), progress=False
        )
        assert again.step("clip_embed").cached == 12  # batch size is not part of the cache key


def test_retrained_model_in_the_same_folder_recomputes(photos, ws_path, tmp_path):
    folder = build_clip(tmp_path / "clip", seed=0)
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> ClipEmbed(model=str(folder), device="cpu"), progress=False)
        before = {i.name: i["clip_embedding"]["array"] for i in ws.items()}
        build_clip(folder, seed=7)
        summary = ws.run(Load(photos) >> ClipEmbed(model=str(folder), device="cpu"), progress=False)
        after = {i.name: i["clip_embedding"]["array"] for i in ws.items()}
    assert summary.step("clip_embed").computed == 12
    assert all(before[name] != after[name] for name in before)


def test_siglip_model_embeds_too(photos, ws_path, tmp_path):
    folder = build_siglip(tmp_path / "siglip")
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> ClipEmbed(model=str(folder), device="cpu"), progress=False)
        items = sorted(ws.items(), key=lambda i: i.name)
        assert not summary.errors
        got = np.stack([item.array("clip_embedding") for item in items])
        assert got.shape == (12, 32)
        np.testing.assert_allclose(got, reference_embeddings(folder, items), atol=2e-5)


def test_siglip_scores_prompts_with_its_own_padding(photos, ws_path, tmp_path):
    folder = str(build_siglip(tmp_path / "siglip"))
    score = ClipScore(prompts=["a photo of a dog"], negatives=["a drawing"], model=folder, device="cpu")
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> ClipEmbed(model=folder, device="cpu") >> score, progress=False)
        items = list(ws.items())
    assert not summary.errors
    assert all(
        0 <= i["clip_match"] <= 1 and i["clip_label"] in ("a photo of a dog", "a drawing") for i in items
    )


def test_siglip2_with_its_patch_masks(photos, ws_path, tmp_path):
    folder = build_siglip2(tmp_path / "siglip2")
    score = ClipScore(prompts=["a photo of a cat"], negatives=["a drawing"], model=str(folder), device="cpu")
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> ClipEmbed(model=str(folder), device="cpu") >> score, progress=False)
        items = sorted(ws.items(), key=lambda i: i.name)
    assert not summary.errors
    got = np.stack([item.array("clip_embedding") for item in items])
    np.testing.assert_allclose(got, reference_embeddings(folder, items), atol=2e-5)
    assert all(0 <= i["clip_match"] <= 1 for i in items)


def test_unloadable_model_fails_each_item_with_the_reason(photos, ws_path, tmp_path):
    (tmp_path / "empty").mkdir()
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> ClipEmbed(model=str(tmp_path / "empty")), progress=False)
    assert summary.step("clip_embed").failed == 12
    assert all("cannot load" in e["reason"] and "empty" in e["reason"] for e in summary.errors)


def test_images_prefetched_for_a_failed_batch_are_not_kept(photos, ws_path, tmp_path):
    (tmp_path / "empty").mkdir()
    step = ClipEmbed(model=str(tmp_path / "empty"), batch_size=4)
    with Workspace(ws_path) as ws:
        ws.run(Load(photos), progress=False)
        items = list(ws.items())[:4]
        step.prefetch(items)  # as the batch stage does when it queues a batch
        assert len(step.runtime.queued) == 4
        with pytest.raises(ItemError, match="cannot load the model"):
            step.compute_batch(items)
        assert step.runtime.queued == {}
        step.teardown()


def test_clip_score_against_prompts_matches_a_direct_computation(photos, ws_path, clip_dir):
    from transformers import AutoModel, AutoProcessor

    prompts, negatives = ["a photo of a dog", "a photo of a cat"], ["a drawing", "a painting"]
    score = ClipScore(prompts=prompts, negatives=negatives, model=str(clip_dir), device="cpu")
    with Workspace(ws_path) as ws:
        summary = ws.run(
            Load(photos) >> ClipEmbed(model=str(clip_dir), device="cpu") >> score, progress=False
        )
        items = sorted(ws.items(), key=lambda i: i.name)
        assert not summary.errors and summary.step("clip_score").computed == 12

        processor, model = AutoProcessor.from_pretrained(clip_dir), AutoModel.from_pretrained(clip_dir).eval()
        with torch.no_grad():
            inputs = processor(text=prompts + negatives, return_tensors="pt", padding=True)
            text = getattr(model.get_text_features(**inputs), "pooler_output", None)
            text = torch.nn.functional.normalize(text, dim=-1)
            images = torch.from_numpy(np.stack([i.array("clip_embedding") for i in items]))
            cosine = images @ text.T
            probs = (model.logit_scale.exp() * cosine).softmax(dim=1)
        for item, cos, prob in zip(items, cosine, probs):
            assert item["clip_score"] == pytest.approx(float(cos[:2].max()), abs=1e-5)
            assert item["clip_match"] == pytest.approx(float(prob[:2].sum()), abs=1e-5)
            assert item["clip_label"] == (prompts + negatives)[int(cos.argmax())]

        # other prompts: recomputed; the embeddings stay cached
        other = ClipScore(prompts=["a toy"], model=str(clip_dir), device="cpu")
        again = ws.run(Load(photos) >> ClipEmbed(model=str(clip_dir), device="cpu") >> other, progress=False)
        assert again.step("clip_embed").cached == 12 and again.step("clip_score").computed == 12
        assert all("clip_match" not in i.props and i["clip_label"] == "a toy" for i in ws.items())


def test_clip_score_refuses_embeddings_of_another_model(photos, ws_path, clip_dir, tmp_path):
    other = build_clip(tmp_path / "other", seed=3)
    pipeline = (
        Load(photos)
        >> ClipEmbed(model=str(clip_dir), device="cpu")
        >> ClipScore(prompts=["a dog"], model=str(other), device="cpu")
    )
    with Workspace(ws_path) as ws:
        summary = ws.run(pipeline, progress=False)
    assert summary.step("clip_score").failed == 12
    assert all("clip_embedding was computed by" in e["reason"] for e in summary.errors)

    with Workspace(ws_path) as ws:  # no clip_embed before it
        summary = ws.run(Load(photos) >> ClipScore(prompts=["a dog"], model=str(other)), progress=False)
    assert summary.step("clip_score").failed == 12
    assert "no property 'clip_embedding' (run the step that computes it first)" in summary.errors[0]["reason"]


def laion_layout_mlp(dims: list[int], relu: bool = False):
    """The improved-aesthetic-predictor layout (Linear/Dropout alternating, last two Linear back to
    back), with small dims instead of 768-1024-128-64-16-1."""
    nn = torch.nn
    layers: list = []
    for index, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if relu and index < len(dims) - 2:
            layers.append(nn.ReLU())
        if index < len(dims) - 3:
            layers.append(nn.Dropout(0.2))

    class Predictor(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(*layers)

        def forward(self, x):
            return self.layers(x)

    torch.manual_seed(5)
    return Predictor().eval()


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_aesthetic_mlp_matches_torch(photos, ws_path, clip_dir, tmp_path, fmt):
    mlp = laion_layout_mlp([16, 32, 8, 6, 4, 1])
    assert [k for k in mlp.state_dict() if k.endswith("weight")] == [
        f"layers.{i}.weight" for i in (0, 2, 4, 6, 7)
    ]
    path = tmp_path / f"mlp.{fmt}"
    if fmt == "pth":
        torch.save(mlp.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(mlp.state_dict(), str(path))
    with Workspace(ws_path) as ws:
        summary = ws.run(
            Load(photos) >> ClipEmbed(model=str(clip_dir), device="cpu") >> Aesthetic(checkpoint=str(path)),
            progress=False,
        )
        items = list(ws.items())
        assert not summary.errors
        with torch.no_grad():
            expected = mlp(torch.from_numpy(np.stack([i.array("clip_embedding") for i in items])))[:, 0]
        for item, value in zip(items, expected.tolist()):
            assert item["aesthetic"] == pytest.approx(value, abs=1e-4)
        assert len({i["aesthetic"] for i in items}) > 6


def test_aesthetic_relu_variant_and_a_dimension_mismatch(photos, ws_path, clip_dir, tmp_path):
    relu = laion_layout_mlp([16, 8, 4, 1], relu=True)
    torch.save(relu.state_dict(), tmp_path / "relu.pth")
    wrong = laion_layout_mlp([768, 16, 4, 1])
    torch.save(wrong.state_dict(), tmp_path / "l14.pth")
    embed = ClipEmbed(model=str(clip_dir), device="cpu")
    with Workspace(ws_path) as ws:
        ws.run(
            Load(photos) >> embed >> Aesthetic(checkpoint=str(tmp_path / "relu.pth"), activation="relu"),
            progress=False,
        )
        items = list(ws.items())
        with torch.no_grad():
            expected = relu(torch.from_numpy(np.stack([i.array("clip_embedding") for i in items])))[:, 0]
        assert [i["aesthetic"] for i in items] == pytest.approx(expected.tolist(), abs=1e-4)

        summary = ws.run(
            Load(photos) >> embed >> Aesthetic(checkpoint=str(tmp_path / "l14.pth")), progress=False
        )
    assert summary.step("aesthetic").failed == 12
    assert "takes 768-d embeddings, but clip_embedding has 16" in summary.errors[0]["reason"]


def test_unreadable_or_wrong_checkpoints_name_the_file(photos, ws_path, clip_dir, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    conv = tmp_path / "conv.safetensors"
    from safetensors.torch import save_file

    save_file({"layers.0.weight": torch.zeros(4, 16, 3, 3), "layers.0.bias": torch.zeros(4)}, str(conv))
    embed = ClipEmbed(model=str(clip_dir), device="cpu")
    with Workspace(ws_path) as ws:
        bad = ws.run(Load(photos) >> embed >> Aesthetic(checkpoint=str(garbage)), progress=False)
        wrong = ws.run(Load(photos) >> embed >> Aesthetic(checkpoint=str(conv)), progress=False)
    assert bad.step("aesthetic").failed == 12
    assert f"cannot read MLP checkpoint {garbage}" in bad.errors[0]["reason"]
    assert wrong.step("aesthetic").failed == 12
    assert "layers.0.weight has shape [4, 16, 3, 3], not a Linear layer" in wrong.errors[0]["reason"]


def test_aesthetic_checks_its_checkpoint_when_built(tmp_path):
    from captionary import ParamError

    with pytest.raises(ParamError, match="no such file"):
        Aesthetic(checkpoint=str(tmp_path / "missing.pth"))


def test_derived_images_and_fast_decode_of_large_jpegs(photos, ws_path, tmp_path, clip_dir):
    from captionary import Resize

    big = tmp_path / "big"
    big.mkdir()
    for n, source in enumerate(sorted(photos.rglob("*.jpg"))[:4]):
        Image.open(source).convert("RGB").resize((2400, 1800)).save(big / f"{n}.jpg", quality=92)
    with Workspace(ws_path) as ws:
        # a resized (derived) image is what the model sees
        ws.run(
            Load(big) >> Resize(max_edge=100) >> ClipEmbed(model=str(clip_dir), device="cpu"), progress=False
        )
        items = sorted(ws.items(), key=lambda i: i.name)
        assert items[0].width == 100
        got = np.stack([item.array("clip_embedding") for item in items])
        np.testing.assert_allclose(got, reference_embeddings(clip_dir, items), atol=2e-5)

        # originals: a JPEG decoded at a reduced DCT scale gives nearly the same embedding, cached apart
        fast = ClipEmbed(model=str(clip_dir), device="cpu")
        full = ClipEmbed(model=str(clip_dir), device="cpu", fast_decode=False)
        ws.run(Load(big) >> fast, progress=False)
        quick = {i.name: i.array("clip_embedding") for i in ws.items()}
        summary = ws.run(Load(big) >> full, progress=False)
        assert summary.step("clip_embed").computed == 4  # fast_decode is part of the cache key
        exact = {i.name: i.array("clip_embedding") for i in ws.items()}
        np.testing.assert_allclose(
            np.stack(list(exact.values())), reference_embeddings(clip_dir, list(ws.items())), atol=2e-5
        )
        for name in quick:
            assert float(quick[name] @ exact[name]) > 0.99
