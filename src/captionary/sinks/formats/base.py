"""What every export format is (`ExportFormat`), and the common flow of the file formats (`FileExport`):
an image file per item, sidecar files and/or one manifest of all items written at the end."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from captionary.core.hashing import canonical_json, hash_bytes
from captionary.core.item import Item
from captionary.errors import describe_error
from captionary.sinks.encoding import PlannedFile
from captionary.sinks.files import NotOurs, OutputFiles
from captionary.sinks.naming import Names

if TYPE_CHECKING:
    from captionary.sinks.save import Save

WriteResult = bool | str | Future
"""Per item: True (written), False (already up to date), a reason it failed, or a write in progress."""


class ExportFormat(Protocol):
    """One way of laying a dataset out on disk. Built with the `save` step (its parameters)."""

    name: ClassVar[str]

    def __init__(self, save: Save) -> None: ...

    @classmethod
    def validate(cls, save: Save) -> None:
        """Refuse parameters this format cannot honour (raise ParamError through `require`)."""

    def open(self, ctx: Any) -> None: ...

    def write(self, items: Sequence[Item]) -> list[WriteResult]: ...

    def close(self, complete: bool) -> None: ...


def caption_text(caption: Any) -> str:
    """A caption property as text: a list (caption variations) one per line."""
    return "\n".join(map(str, caption)) if isinstance(caption, list) else str(caption)


class FileExport:
    """An image file per item (under `image_folder`), the files `sidecars` adds beside it, and the
    manifest files `manifests` makes of every item's `row`, written at the end of a complete run.
    Unchanged files are not rewritten; files the sink did not write are never touched."""

    name: ClassVar[str] = ""
    image_folder: ClassVar[str] = ""  # e.g. "train/": where images go under the output folder

    def __init__(self, save: Save):
        self.save = save

    @classmethod
    def validate(cls, save: Save) -> None:
        pass

    # --- what a format says -------------------------------------------------------------------------
    def key(self, name: str) -> str:
        """The stem an item's source name gives (naming: source)."""
        return name

    def sidecars(self, item: Item, stem: str) -> list[PlannedFile]:
        return []

    def row(self, item: Item, image_path: str) -> dict[str, Any] | None:
        """The item's manifest row (None: this format has no manifest)."""
        return None

    def manifests(self, rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        """(relative path, bytes) of the manifest files, from every item's row in path order."""
        return []

    # --- the flow -----------------------------------------------------------------------------------
    def open(self, ctx: Any) -> None:
        self.ctx = ctx
        root = self.save.path.resolve()
        self.files = OutputFiles(ctx, f"{root}::{self.name}", root)
        claims = {
            stem.removeprefix(self.image_folder): item for stem, item in self.files.claimed_names().items()
        }
        self.names = Names(self.save.naming, claims, self.key)
        self.encoding = self.save.renderer()
        self.rows: dict[str, dict[str, Any]] = {}  # manifest rows by image path
        self.pool = ThreadPoolExecutor(self.save.threads, thread_name_prefix="captionary-save")

    def write(self, items: Sequence[Item]) -> list[WriteResult]:
        """Plan each item's files; those already on disk as planned cost a stat, the rest go to threads."""
        results: list[WriteResult] = []
        for item in items:
            try:
                planned = self.plan(item)
            except Exception as exc:
                results.append(describe_error(exc))
                continue
            todo = [f for f in planned if not self.files.unchanged(f.relative, f.digest)]
            results.append(self.pool.submit(self._write_files, item, todo) if todo else False)
        return results

    def close(self, complete: bool) -> None:
        self.pool.shutdown()
        if not complete:
            return
        for relative, data in self.manifests([self.rows[path] for path in sorted(self.rows)]):
            self.files.write(relative, None, hash_bytes(data), data)
        failed = {e["item"] for e in self.ctx.errors if e["item"]}
        self.files.remove_stale(failed)

    def plan(self, item: Item) -> list[PlannedFile]:
        stem = self.names.stem(item)
        image = self.encoding.plan(item, self.image_folder + stem, lambda: self.ctx.ws.blobs.get(item.id))
        row = self.row(item, image.relative)
        if row is not None:
            self.rows[image.relative] = row
        return [image, *self.sidecars(item, stem)]

    def _write_files(self, item: Item, files: list[PlannedFile]) -> tuple[Item, bool | str]:
        try:
            for f in files:
                self.files.write(f.relative, item.id, f.digest, f.content)
            return item, True
        except NotOurs as exc:
            return item, str(exc)
        except Exception as exc:
            return item, describe_error(exc)


def properties_row(item: Item, caption_property: str) -> dict[str, Any]:
    """The item's properties without its caption (which a manifest names its own way)."""
    return {k: v for k, v in item.props.items() if k != caption_property}


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(canonical_json(row) + "\n" for row in rows).encode()
