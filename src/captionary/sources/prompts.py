"""`load_prompts`: items without pixels yet, one per prompt (times `n`), writing `prompt` and `seed`.

An image generation step later gives each its image; until then steps that read pixels refuse them
and image sinks skip them (`Item.has_image`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from captionary.core.db import db_text
from captionary.core.hashing import canonical_json
from captionary.core.item import NO_IMAGE, Item
from captionary.core.manifest_rows import Row, csv_rows, jsonl_rows
from captionary.pipeline.context import SourceContext
from captionary.pipeline.step import Ingested, Source, require
from captionary.sources.records import stat_fingerprint

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
UPSERT_SOURCE_FILE = "INSERT OR REPLACE INTO source_files VALUES (?, ?, ?, ?, ?, ?)"


class LoadPrompts(Source):
    """Text items (prompt, seed) from a .txt, .jsonl or .csv file, `n` per prompt, pixels given later.

    .txt: a prompt per line (`#` comments); .jsonl / .csv: a `prompt` column, an optional `seed`,
    other columns as properties. Seeds are the file's (+ copy index) or derived from prompt and index."""

    name: ClassVar[str] = "load_prompts"

    path: Path
    n: int = 1
    prompt_column: str = "prompt"

    def validate(self) -> None:
        require(self.path.is_file(), self, f"file not found: {self.path}", param="path")
        require(
            self.path.suffix.lower() in FORMATS,
            self,
            f"cannot read {self.path.name}: use a .txt, .jsonl or .csv file",
            param="path",
        )
        require(self.n >= 1, self, f"must be at least 1; got {self.n}", param="n")

    def scan(self, ctx: SourceContext) -> Iterator[Ingested]:
        path = self.path.resolve()
        key = "prompts:" + db_text(str(path))
        fingerprint = f"{stat_fingerprint(str(path))}|n={self.n}|{self.prompt_column}"
        known = ctx.ws.query("SELECT fingerprint FROM source_files WHERE path = ?", (key,))
        cached = bool(known) and known[0][0] == fingerprint
        seen: dict[str, str] = {}
        stem = path.stem
        for row_number, (where, row) in enumerate(self._rows(path), start=1):
            where = db_text(where)
            if isinstance(row, str):
                yield Ingested(where, error=f"{where}: {row}")
                continue
            try:
                copies = list(self._copies(row))
            except ValueError as exc:
                yield Ingested(where, error=f"{where}: {exc}")
                continue
            for copy, props in enumerate(copies):
                item_id = hashlib.sha256(canonical_json(props).encode()).hexdigest()
                source = f"{where}#{copy}" if self.n > 1 else where
                first = seen.setdefault(item_id, source)
                if first != source:
                    yield Ingested(source, dropped=f"exact duplicate of {first}")
                    continue
                name = f"{stem}_{row_number:05d}_{copy}" if self.n > 1 else f"{stem}_{row_number:05d}"
                item = Item(item_id, NO_IMAGE, props, source, name, ctx.ws.blobs, "", NO_IMAGE)
                yield Ingested(source, item, cached=cached)
        if not cached:
            ctx.writer.write(UPSERT_SOURCE_FILE, (key, fingerprint, None, stem, None, None))

    def _rows(self, path: Path) -> Iterator[tuple[str, Row]]:
        label = path.name
        kind = FORMATS[path.suffix.lower()]
        if kind == "jsonl":
            yield from jsonl_rows(path, label)
        elif kind == "csv":
            yield from csv_rows(path, label)
        else:
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    text = line.strip()
                    if text and not text.startswith("#"):
                        yield f"{label}:{number}", {self.prompt_column: text}

    def _copies(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The `n` items of one row: its columns, `prompt`, and `seed` (the row's seed + copy, or
        derived from the prompt and the copy's index)."""
        prompt = row.get(self.prompt_column)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"no {self.prompt_column!r} text in this row")
        given = row.get("seed")
        if given not in (None, ""):
            try:
                given = int(given)
            except (TypeError, ValueError):
                raise ValueError(f"seed must be an integer; got {row.get('seed')!r}") from None
        extra = {k: v for k, v in row.items() if k not in (self.prompt_column, "seed", "")}
        for copy in range(self.n):
            seed = given + copy if isinstance(given, int) else derived_seed(prompt, copy)
            yield {**extra, "prompt": prompt.strip(), "seed": seed}


def derived_seed(prompt: str, index: int) -> int:
    """A stable seed for copy `index` of `prompt` (the same in every run, on every machine)."""
    digest = hashlib.blake2b(f"{prompt}\0{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF
