"""Text-encoder outputs cached as safetensors files, keyed by the encoder id and the caption text.

Every caption text a dataset can produce without randomness is encoded once by `prepare` (each of
an image's captions with its prefix/suffix, and the empty caption, whose embedding stands in when
caption dropout fires). Tag shuffling and tag dropout make new texts every epoch, which no cache can
hold: they are refused with a clear error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captionary.core.atomic import write_atomic
from captionary.errors import ConfigError

if TYPE_CHECKING:
    from captionary.loader.caption_transforms import CaptionTransform
    from captionary.loader.dataset import ImageCaptionDataset


class TextEmbeddingCache:
    """`TextEmbeddingCache(folder, encode, encoder_id="sdxl-te")`; pass as `ImageCaptionDataset(text_cache=)`.

    `encode(list_of_captions)` returns a dict of batch-first tensors (e.g. `prompt_embeds`,
    `pooled_prompt_embeds`); samples then carry those tensors for their caption.
    """

    def __init__(
        self,
        folder: str | Path,
        encode: Callable[[list[str]], dict[str, Any]] | None = None,
        *,
        encoder_id: str,
    ):
        self.folder = Path(folder)
        self.encode = encode
        self.encoder_id = encoder_id
        self.encoded = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "encode": None}

    def check(self, transform: CaptionTransform) -> None:
        if transform.shuffle_tags or transform.tag_dropout > 0:
            raise ConfigError(
                "caption.shuffle_tags / caption.tag_dropout make a new text every epoch: a text-embedding "
                "cache would freeze one order; encode captions in the training loop instead"
            )

    def path(self, caption: str) -> Path:
        digest = hashlib.blake2b(f"{self.encoder_id}\0{caption}".encode(), digest_size=16).hexdigest()
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def get(self, caption: str) -> dict[str, Any]:
        from safetensors.torch import load_file

        path = self.path(caption)
        if not path.exists():
            if self.encode is None:
                raise ConfigError(
                    f"text-embedding cache miss for caption {caption!r} in {self.folder}: "
                    "call TextEmbeddingCache(..., encode=...).prepare(dataset) first"
                )
            self._store([caption])
        return load_file(path)

    def prepare(self, dataset: ImageCaptionDataset, batch_size: int = 32, progress: bool = True) -> int:
        """Encode every caption text the dataset can produce (and the empty one); returns how many."""
        from tqdm import tqdm

        texts = {""}
        transform = dataset.caption_transform
        for record in dataset.records:
            texts.update(transform.variants(record.captions))
        todo = sorted(t for t in texts if not self.path(t).exists())
        with tqdm(total=len(todo), desc="text embeddings", disable=not progress or not todo) as bar:
            for start in range(0, len(todo), batch_size):
                self._store(todo[start : start + batch_size])
                bar.update(len(todo[start : start + batch_size]))
        return len(todo)

    def _store(self, captions: Iterable[str]) -> None:
        from safetensors.torch import save

        captions = list(captions)
        outputs = self.encode(captions)
        self.encoded += len(captions)
        for number, caption in enumerate(captions):
            path = self.path(caption)
            path.parent.mkdir(parents=True, exist_ok=True)
            tensors = {k: v[number].detach().cpu().contiguous() for k, v in outputs.items()}
            write_atomic(str(path), save(tensors, metadata={"encoder_id": self.encoder_id}))
