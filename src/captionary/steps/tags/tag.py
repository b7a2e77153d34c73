"""`tag`: Danbooru-style tags from a WD14 ONNX tagger (`model.onnx` + `selected_tags.csv`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from captionary.backends.onnx import ImageInput, image_input, load_session, outputs
from captionary.core.fingerprints import file_fingerprint as fingerprint
from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.errors import ConfigError, ItemError, ParamError
from captionary.pipeline.model_step import ImageBatchStep
from captionary.pipeline.step import require
from captionary.steps.tags.cleanup import clean_tag
from captionary.steps.tags.labels import CHARACTER, GENERAL, RATING, TagLabels, read_labels
from captionary.steps.tags.model_files import TaggerFiles, hub_files, is_repo_id, local_files
from captionary.steps.tags.wd14 import MCUT_CHARACTER_FLOOR, above, prepare_image

if TYPE_CHECKING:
    import numpy as np
    from onnxruntime import InferenceSession
    from PIL.Image import Image

DEFAULT_SIZE = 448  # WD14 taggers' input size, used when a model leaves it dynamic


@dataclass
class _Loaded:
    session: InferenceSession
    spec: ImageInput
    output: str
    labels: TagLabels
    groups: dict[int, np.ndarray]  # category -> indexes of its tags


class Tag(ImageBatchStep):
    """Tag images with a WD14-style ONNX tagger: `tags` (by score), `tag_scores`, `rating`.

    `model` is a local folder (or `.onnx` file) with `selected_tags.csv` beside it, or a Hugging Face
    repo id fetched with huggingface_hub on first use (`revision` pins it). General tags score above
    `general_threshold`, characters above `character_threshold` (`*_mcut`: the MCut threshold
    instead); `rating` is the rating tag with the highest score. Tag names: underscores become
    spaces (kaomoji like `^_^` kept), `escape_brackets` writes `\\(`; `exclude` drops tags (either
    spelling). Existing `tags` (a web source's, a manifest's): by default an item that has them keeps
    them and is not tagged (the tagger fills only the gaps); `merge` keeps them first and appends the
    tagger's new ones; `force` replaces them. `rating_tag`
    puts the rating among the tags too (first or last, as kohya's `--use_rating_tags`).
    `fast_decode` decodes JPEGs at a reduced DCT scale no smaller than the model's input: about
    2.5x faster on large photos, pixels within ~1/255 on average of the reference preprocessing.
    """

    name: ClassVar[str] = "tag"
    version: ClassVar[int] = 1
    writes: ClassVar[tuple[str, ...]] = ("tags", "tag_scores", "rating")
    # the model enters the cache key through model_id() (files' fingerprint, or repo@revision)
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size", "threads", "providers", "model")

    model: str = "SmilingWolf/wd-vit-tagger-v3"
    revision: str | None = None
    general_threshold: float = 0.35
    character_threshold: float = 0.85
    general_mcut: bool = False
    character_mcut: bool = False
    characters: bool = True
    character_first: bool = False
    replace_underscores: bool = True
    escape_brackets: bool = False
    exclude: list[str] = field(default_factory=list)
    max_tags: int | None = None
    merge: bool = False
    force: bool = False
    rating_tag: Literal["none", "first", "last"] = "none"
    fast_decode: bool = False
    batch_size: int = 8
    threads: int | None = None
    providers: list[str] | None = None

    @property
    def reads(self) -> tuple[str, ...]:  # existing tags are an input unless replaced
        return () if self.force else ("tags",)

    def keeps(self, item: Item) -> bool:
        """An item whose existing tags stay as they are (neither merged nor forced): not tagged."""
        return not (self.merge or self.force) and bool(item.get("tags"))

    def validate(self) -> None:
        require_module("numpy", "onnx")
        ort = require_module("onnxruntime", "onnx")
        for param in ("general_threshold", "character_threshold"):
            value = getattr(self, param)
            require(0 <= value <= 1, self, f"must be between 0 and 1; got {value}", param=param)
        require(not (self.merge and self.force), self, "merge and force exclude each other", param="force")
        require(self.batch_size >= 1, self, f"must be >= 1; got {self.batch_size}", param="batch_size")
        require(self.threads is None or self.threads >= 1, self, "must be >= 1", param="threads")
        require(self.max_tags is None or self.max_tags >= 1, self, "must be >= 1", param="max_tags")
        if self.providers:
            missing = sorted(set(self.providers) - set(ort.get_available_providers()))
            available = ", ".join(ort.get_available_providers())
            require(not missing, self, f"{missing} not available (available: {available})", "providers")
        try:
            files = local_files(self.model)
            labels = read_labels(files.tags) if files else None
        except ConfigError as exc:
            raise ParamError(f"tag.model: {exc}", param="model") from None
        require(
            files is not None or is_repo_id(self.model),
            self,
            f"no such folder or file, and not a Hugging Face repo id: {self.model!r} (in {os.getcwd()})",
            param="model",
        )
        self.local = (files, labels)
        unescaped = (t.strip().replace("\\(", "(").replace("\\)", ")") for t in self.exclude)
        self.excluded = {clean_tag(t) for t in unescaped}

    @cached_property
    def fingerprint(self) -> str:
        files: TaggerFiles | None = self.local[0]
        if files is None:
            return f"hf:{self.model}@{self.revision or 'main'}"
        return f"wd14:{fingerprint(files.model)}:{fingerprint(files.tags)}"

    def model_id(self) -> str:
        return self.fingerprint

    # --- the model ---------------------------------------------------------------------------------
    def load_error(self, exc: Exception) -> str:
        if isinstance(exc, ConfigError):
            return f"tag: {exc}"
        return super().load_error(exc)

    def load_model(self) -> _Loaded:
        import numpy as np

        local_files_, local_labels = self.local
        files = local_files_ or hub_files(self.model, self.revision)
        labels = local_labels or read_labels(files.tags)
        session = load_session(files.model, self.providers, threads=self.threads)
        spec = image_input(session)
        if spec.layout != "NHWC" or spec.channels != 3:
            raise ConfigError(f"{files.model}: input {spec.name!r} is not NHWC with 3 channels (WD14 layout)")
        if spec.batch not in (None, 1):
            raise ConfigError(f"{files.model}: fixed batch size {spec.batch} is not supported")
        out = outputs(session)[0]
        n_scores = out.shape[-1] if out.shape else None
        if n_scores is not None and n_scores != len(labels):
            raise ConfigError(
                f"{files.model} outputs {n_scores} scores but {files.tags} lists {len(labels)} tags"
            )
        groups = {c: np.array(labels.indexes(c), dtype=np.int64) for c in (GENERAL, CHARACTER, RATING)}
        return _Loaded(session, spec, out.name, labels, groups)

    # --- images: prepared on every core, the next batch while the model runs the current one -------
    def prefetch(self, items: Sequence[Item]) -> None:
        super().prefetch([item for item in items if not self.keeps(item)])

    def input_size(self) -> int:
        return self.loaded().spec.height or DEFAULT_SIZE

    def draft_scale(self, width: int, height: int) -> float | None:
        return self.input_size() / max(width, height) if self.fast_decode else None

    def prepare(self, image: Image, item: Item) -> np.ndarray:
        """The model input of one item (the reference WD14 preprocessing)."""
        return prepare_image(image, self.input_size())

    def scores(self, items: Sequence[Item]) -> np.ndarray:
        """Model scores, one row per item."""
        import numpy as np

        loaded: _Loaded = self.loaded()
        spec = loaded.spec
        arrays = self.inputs(items)
        feeds = [np.stack(arrays)] if spec.batch is None else [a[None] for a in arrays]
        rows = [
            loaded.session.run([loaded.output], {spec.name: x.astype(spec.dtype, copy=False)})[0]
            for x in feeds
        ]
        scores = np.concatenate(rows).reshape(len(items), -1)
        if scores.shape[1] != len(loaded.labels):
            raise ItemError(f"tag: the model returned {scores.shape[1]} scores for {len(loaded.labels)} tags")
        return scores

    # --- the step ----------------------------------------------------------------------------------
    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        todo = [item for item in items if not self.keeps(item)]
        if not todo:
            return [None] * len(items)
        scores = self.scores(todo)
        loaded = self.loaded()
        found = {id(item): self.select(loaded, row, item) for item, row in zip(todo, scores)}
        return [found.get(id(item)) for item in items]

    def select(self, loaded: _Loaded, scores: np.ndarray, item: Item) -> dict[str, Any]:
        """One item's properties from its score row."""
        labels, groups = loaded.labels, loaded.groups
        general_threshold = None if self.general_mcut else self.general_threshold
        chosen = above(scores, groups[GENERAL], general_threshold).tolist()
        if self.characters:
            threshold = None if self.character_mcut else self.character_threshold
            chosen += above(scores, groups[CHARACTER], threshold, floor=MCUT_CHARACTER_FLOOR).tolist()
        values = {i: float(scores[i]) for i in chosen}
        by_score = sorted(chosen, key=lambda i: (-values[i], i))
        if self.character_first:
            by_score.sort(key=lambda i: labels.categories[i] != CHARACTER)
        picked: dict[str, float] = {}
        for i in by_score:
            raw = labels.names[i]
            name = clean_tag(raw, underscores=self.replace_underscores, escape=self.escape_brackets)
            if clean_tag(raw) not in self.excluded and name not in picked:
                picked[name] = round(values[i], 4)
        if self.max_tags is not None:
            picked = dict(list(picked.items())[: self.max_tags])
        tags = list(picked)
        if self.merge:
            existing = item.get("tags") or []
            if not isinstance(existing, list):
                raise ItemError(f"tag: the item's tags are a {type(existing).__name__}, not a list (merge)")
            tags = list(dict.fromkeys([*map(str, existing), *tags]))
        result: dict[str, Any] = {"tags": tags, "tag_scores": picked}
        if len(groups[RATING]):
            rating = labels.names[int(groups[RATING][scores[groups[RATING]].argmax()])]
            result["rating"] = rating
            if self.rating_tag == "first":
                result["tags"] = [rating, *(t for t in tags if t != rating)]
            elif self.rating_tag == "last":
                result["tags"] = [*(t for t in tags if t != rating), rating]
        return result
