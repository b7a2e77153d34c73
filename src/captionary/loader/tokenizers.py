"""Tokenizer presets for SD 1.5, SDXL, SD3 and FLUX, loaded from tokenizers on disk (or a local cache).

A preset names which tokenizers a model family uses and their max lengths; the paths (or ids already
in the Hugging Face cache) are given by the caller. The callable turns a caption into tensors:
`input_ids` (CLIP-L), `input_ids_2` (OpenCLIP-G), `t5_input_ids` (T5), each padded to its length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionary.errors import ConfigError


@dataclass(frozen=True)
class TokenizerSpec:
    name: str  # the role: clip_l, clip_g or t5
    output: str  # the sample key
    max_length: int


PRESETS: dict[str, tuple[TokenizerSpec, ...]] = {
    "sd15": (TokenizerSpec("clip_l", "input_ids", 77),),
    "sdxl": (TokenizerSpec("clip_l", "input_ids", 77), TokenizerSpec("clip_g", "input_ids_2", 77)),
    "sd3": (
        TokenizerSpec("clip_l", "input_ids", 77),
        TokenizerSpec("clip_g", "input_ids_2", 77),
        TokenizerSpec("t5", "t5_input_ids", 256),
    ),
    "flux": (TokenizerSpec("clip_l", "input_ids", 77), TokenizerSpec("t5", "t5_input_ids", 512)),
}


class Tokenize:
    """`Tokenize("sdxl", clip_l="path/tok1", clip_g="path/tok2")(caption)` -> {"input_ids": ..., ...}.

    Tokenizers load on first use in each process (the object pickles as paths, for DataLoader workers).
    `max_lengths` overrides a preset's lengths (e.g. {"t5": 256} for FLUX schnell).
    """

    def __init__(self, preset: str, max_lengths: dict[str, int] | None = None, **paths: str | Path):
        if preset not in PRESETS:
            raise ConfigError(f"unknown tokenizer preset {preset!r}; valid: {', '.join(PRESETS)}")
        self.preset = preset
        specs = PRESETS[preset]
        roles = {s.name for s in specs}
        missing = sorted(roles - set(paths))
        unknown = sorted(set(paths) - roles)
        if missing or unknown:
            raise ConfigError(
                f"tokenizer preset {preset!r} needs paths for {sorted(roles)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {unknown}" if unknown else "")
            )
        lengths = max_lengths or {}
        self.specs = tuple(TokenizerSpec(s.name, s.output, lengths.get(s.name, s.max_length)) for s in specs)
        self.paths = {k: str(v) for k, v in paths.items()}
        self._loaded: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loaded": {}}

    def tokenizer(self, role: str) -> Any:
        if role not in self._loaded:
            from captionary.core.optional import require

            transformers = require("transformers", "loader")
            try:
                self._loaded[role] = transformers.AutoTokenizer.from_pretrained(self.paths[role])
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load the {role} tokenizer from {self.paths[role]}: {exc}"
                ) from None
        return self._loaded[role]

    def __call__(self, caption: str) -> dict[str, Any]:
        out = {}
        for spec in self.specs:
            encoded = self.tokenizer(spec.name)(
                caption,
                max_length=spec.max_length,
                padding="max_length",
                truncation=True,
                return_tensors="pt",
            )
            out[spec.output] = encoded["input_ids"][0]
        return out
