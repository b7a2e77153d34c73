"""Text-encoder outputs cached per caption text, with a tiny random CLIPTextModel and a real tokenizer
built here; the empty caption's embedding serves caption dropout; random tag order is refused."""

from __future__ import annotations

import loader_fixtures
import pytest

from captionary.errors import ConfigError
from captionary.loader import ImageCaptionDataset, TextEmbeddingCache

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
varied = loader_fixtures.varied
SQUARE = {"enable": False, "resolution": 32, "min_bucket_reso": 32}


class TinyTextEncoder:
    """A real CLIP text transformer with random weights and a word-level tokenizer; counts captions."""

    def __init__(self):
        from tokenizers import Tokenizer, models, pre_tokenizers

        words = sorted({w for row in loader_fixtures.VARIED for w in row[2].replace(",", " ").split()})
        vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<pad>", ",", "ohwx", *words])}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
        )
        self.tokenizer = transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
        )
        torch.manual_seed(0)
        config = transformers.CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=16, eos_token_id=2, pad_token_id=3, bos_token_id=1,
        )  # fmt: skip
        self.model = transformers.CLIPTextModel(config).eval()
        self.captions = 0

    def __call__(self, captions: list[str]) -> dict:
        self.captions += len(captions)
        ids = self.tokenizer(
            captions, padding="max_length", max_length=16, truncation=True, return_tensors="pt"
        )
        with torch.no_grad():
            out = self.model(input_ids=ids["input_ids"])
        return {"prompt_embeds": out.last_hidden_state, "pooled_prompt_embeds": out.pooler_output}


def test_captions_are_encoded_once_and_dropout_uses_the_empty_embedding(varied, tmp_path):
    encoder = TinyTextEncoder()
    cache = TextEmbeddingCache(tmp_path / "te", encoder, encoder_id="tiny-clip")
    caption = {"prefix": "ohwx", "dropout": 0.3}
    dataset = ImageCaptionDataset(varied, buckets=SQUARE, caption=caption, text_cache=cache)
    texts = 1 + sum(len(r.captions) for r in dataset.records)  # each caption + the empty one
    assert cache.prepare(dataset) == texts == encoder.captions
    empty = encoder([""])["prompt_embeds"][0]
    dropped = kept = 0
    for epoch in range(6):
        for index in range(len(dataset)):
            sample = dataset[(index, epoch)]
            direct = encoder([sample["caption"]])
            torch.testing.assert_close(sample["prompt_embeds"], direct["prompt_embeds"][0])
            torch.testing.assert_close(sample["pooled_prompt_embeds"], direct["pooled_prompt_embeds"][0])
            if sample["caption"] == "":
                dropped += 1
                torch.testing.assert_close(sample["prompt_embeds"], empty)
            else:
                kept += 1
                assert sample["caption"].startswith("ohwx, ")
    assert dropped and kept
    assert encoder.captions == texts + 1 + 6 * len(dataset)  # only the direct encodes above
    assert cache.prepare(dataset) == 0


def test_random_tag_order_cannot_be_cached(varied, tmp_path):
    cache = TextEmbeddingCache(tmp_path / "te", TinyTextEncoder(), encoder_id="tiny-clip")
    with pytest.raises(ConfigError, match=r"shuffle_tags / caption\.tag_dropout make a new text every epoch"):
        ImageCaptionDataset(varied, buckets=SQUARE, caption={"shuffle_tags": True}, text_cache=cache)
    reader = TextEmbeddingCache(tmp_path / "empty", encoder_id="tiny-clip")
    dataset = ImageCaptionDataset(varied, buckets=SQUARE, text_cache=reader)
    with pytest.raises(
        ConfigError, match=r"text-embedding cache miss for caption 'a cat' .*\.prepare\(dataset\) first"
    ):
        dataset[0]
