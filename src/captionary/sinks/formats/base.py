"""What every export format is (`ExportFormat`), and the common flow of the file formats (`FileExport`):
an image file per item, sidecar files and/or one manifest of all items written at the end."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from captionary.core.hashing import canonical_json, hash_bytes
from captionary.core.item import Item
from captionary.errors import describe_error
from captionary.pipeline.context import SinkContext
from captionary.sinks.captions import SKIP, Captions
from captionary.sinks.card import write_card
from captionary.sinks.encoding import PlannedFile, cheap_copy
from captionary.sinks.files import NotOurs, OutputFiles
from captionary.sinks.naming import Names

if TYPE_CHECKING:
    from captionary.sinks.save import Save

log = logging.getLogger("captionary")

WriteResult = bool | str | Future
"""Per item: True (written), False (already up to date, or left out), a reason it failed, or a write in
progress (a future several items may share: its result is their `(item, outcome)` pairs)."""
WRITE_TASK = 8
"""Items a save thread writes per task: one hand-off (submit, wake, done-callback) per 8 items, not per
item, as `load` reads 8 files per task."""


class ExportFormat(Protocol):
    """One way of laying a dataset out on disk. Built with the `save` step (its parameters)."""

    name: ClassVar[str]
    text_only_rows: ClassVar[bool]  # exports items without an image (prompt items) as rows

    def __init__(self, save: Save) -> None: ...

    @classmethod
    def validate(cls, save: Save) -> None:
        """Refuse parameters this format cannot honour (raise ParamError through `require`)."""

    def open(self, ctx: SinkContext) -> None: ...

    def write(self, items: Sequence[Item]) -> list[WriteResult]: ...

    def close(self, complete: bool) -> None: ...

    def usage(self) -> dict[str, int]:
        """Counters for the run summary (items without a caption, hand-edited files kept)."""
        ...


def failed_items(ctx: SinkContext) -> set[str]:
    """Ids of the items that failed anywhere in this run: their earlier files are kept."""
    return {e["item"] for e in ctx.errors if e["item"]}


class FileExport:
    """An image file per item (placed by `place`), the files `sidecars` adds beside it, and the manifest
    files `manifests` makes of every item's `row`, written at the end of a complete run. Unchanged files
    are not rewritten; files the sink did not write, or a person edited since, are never touched."""

    name: ClassVar[str] = ""
    text_only_rows: ClassVar[bool] = False
    writes_card: ClassVar[bool] = True  # a dataset card (README.md) at the root, for the Hub
    image_folder: ClassVar[str] = ""  # e.g. "train/": where images go under the output folder

    def __init__(self, save: Save):
        self.save = save

    @classmethod
    def validate(cls, save: Save) -> None:
        pass

    # --- what a format says -------------------------------------------------------------------------
    def place(self, item: Item, stem: str) -> str:
        """Where the item's files go (path without extension under the output folder), from its stem."""
        return self.image_folder + stem

    def key(self, item: Item, name: str) -> str:
        """The output stem of an item's (checked) source name (naming: source)."""
        return self.place(item, name)

    def sidecars(self, item: Item, stem: str, caption: Any) -> list[PlannedFile]:
        return []

    def row(self, item: Item, image_path: str | None, caption: Any) -> dict[str, Any] | None:
        """The item's manifest row (None: this format has no manifest)."""
        return None

    def manifests(self, rows: list[dict[str, Any]]) -> Iterable[tuple[str, bytes]]:
        """(relative path, bytes) of the manifest files, from every item's row in path order."""
        return []

    def outside_ok(self) -> frozenset[str]:
        """Manifest paths of this format that lie outside the output folder."""
        return frozenset()

    # --- the flow -----------------------------------------------------------------------------------
    def open(self, ctx: SinkContext) -> None:
        self.ctx = ctx
        root = self.save.path.resolve()
        self.files = OutputFiles(
            ctx,
            f"{root}::{self.name}",
            root,
            overwrite_edited=self.save.overwrite_edited,
            outside_ok=self.outside_ok(),
        )
        self.names = Names(self.save.naming, self.files.claimed_names(), self.key, self.place)
        self.encoding = self.save.renderer()
        self.captions = Captions(self.save.caption_property, self.save.missing_caption)
        self.rows: dict[str, dict[str, Any]] = {}  # manifest rows by image path (or item id)
        self.exported = 0
        self.pool = ThreadPoolExecutor(self.save.threads, thread_name_prefix="captionary-save")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="captionary-save-ready")

    def write(self, items: Sequence[Item]) -> list[WriteResult]:
        """Plan each item's files; those already on disk as planned cost a stat, the rest go to threads,
        several items to a task (the items of one task share its future). An image still to encode, or
        a large original to copy, goes to the `threads` save threads; files whose bytes are in hand
        (encoded by a pool worker, captions, small originals: `cheap_copy`) to the one thread that
        writes those: creating files from several threads costs more than it overlaps (they wait on
        the folder's lock and on the GIL: README, first runs)."""
        results: list[WriteResult] = []
        in_hand: list[tuple[int, Item, list[PlannedFile]]] = []  # (position in results, item, files)
        to_make: list[tuple[int, Item, list[PlannedFile]]] = []
        for item in items:
            try:
                planned = self.plan(item)
            except Exception as exc:
                results.append(describe_error(exc))
                continue
            files = [f for f in planned if not self.files.unchanged(f.relative, f.digest)]
            if files:
                image = planned[0] if item.has_image else None
                makes = image is not None and image in files
                makes = makes and not rendered(item, image) and not cheap_copy(item, image)
                (to_make if makes else in_hand).append((len(results), item, files))
            results.append(False)
        self._hand(self.writer, write_tasks(in_hand, 1), results)
        self._hand(self.pool, write_tasks(to_make, self.save.threads), results)
        return results

    def _hand(self, pool: ThreadPoolExecutor, tasks: list[list], results: list[WriteResult]) -> None:
        for task in tasks:
            future = pool.submit(self._write_task, [(item, files) for _, item, files in task])
            for position, _, _ in task:
                results[position] = future

    def close(self, complete: bool) -> None:
        self.writer.shutdown()
        self.pool.shutdown()
        if not complete:
            return
        for relative, data in self.manifests([self.rows[path] for path in sorted(self.rows)]):
            try:
                self.files.write(relative, None, hash_bytes(data), data)
            except NotOurs as exc:  # a manifest someone else wrote, or edited: left as it is
                self.files.kept_edited.append(relative)
                log.warning("manifest not written: %s", exc)
        if self.writes_card:
            write_card(self.files, self.save, self.ctx, self.captions, self.exported)
        self.files.remove_stale(failed_items(self.ctx))
        self.report_manifest()

    def report_manifest(self) -> None:
        """Say where a manifest outside the output folder went (kohya_json)."""

    def usage(self) -> dict[str, int]:
        counts = dict(self.captions.counts)
        if self.files.kept_edited:
            counts["edited_files_kept"] = len(self.files.kept_edited)
        return counts

    def plan(self, item: Item) -> list[PlannedFile]:
        if not item.has_image:
            if not self.text_only_rows:
                return []  # a prompt item (no pixels yet): image formats leave it out, it goes on
            caption = self.captions.of(item)
            if caption is not SKIP:
                self.rows[f"~{item.id}"] = self.row(item, None, caption) or {}
                self.exported += 1
            return []
        caption = self.captions.of(item)
        if caption is SKIP:
            return []
        stem = self.names.stem(item)
        self.exported += 1
        image = self.encoding.plan(item, stem, lambda: self.ctx.ws.blobs.get(item.id))
        row = self.row(item, image.relative, caption)
        if row is not None:
            self.rows[image.relative] = row
        return [image, *self.sidecars(item, stem, caption)]

    def _write_task(self, task: list[tuple[Item, list[PlannedFile]]]) -> list[tuple[Item, bool | str]]:
        """Runs in a save thread: each item's files, each item's outcome (True or why it failed)."""
        return [(item, self._write_files(item, files)) for item, files in task]

    def _write_files(self, item: Item, files: list[PlannedFile]) -> bool | str:
        try:
            for f in files:
                self.files.write(f.relative, item.id, f.digest, f.content)
            return True
        except NotOurs as exc:
            return str(exc)
        except Exception as exc:
            return describe_error(exc)


def rendered(item: Item, image: PlannedFile) -> bool:
    """The item carries the image file's bytes (a pool worker encoded them: `Sink.renderer`)."""
    return item.rendered is not None and item.rendered[0] == image.digest


def write_tasks(todo: list, threads: int) -> list[list]:
    """`todo` cut into tasks for `threads` threads: up to WRITE_TASK items each, and no fewer tasks
    than threads while there are items enough (a few items, say one pool task's, still spread)."""
    if not todo:
        return []
    size = max(1, min(WRITE_TASK, -(-len(todo) // threads)))
    return [todo[start : start + size] for start in range(0, len(todo), size)]


def properties_row(item: Item, caption_property: str) -> dict[str, Any]:
    """The item's properties without its caption (which a manifest names its own way)."""
    return {k: v for k, v in item.props.items() if k != caption_property}


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(canonical_json(row) + "\n" for row in rows).encode()
