"""webdataset: `out/shard-000000.tar`, ... of `shard_size` samples each: `dog/00.jpg`, `dog/00.txt`,
`dog/00.json` (all properties), appended as items arrive (see sinks/shards.py)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, ClassVar

from captionary.core.hashing import canonical_json, hash_bytes
from captionary.core.item import Item
from captionary.errors import describe_error
from captionary.pipeline.context import SinkContext
from captionary.pipeline.step import require
from captionary.sinks.captions import SKIP, Captions, caption_text
from captionary.sinks.card import write_card
from captionary.sinks.files import NotOurs, OutputFiles
from captionary.sinks.formats.base import WriteResult, failed_items
from captionary.sinks.naming import Names
from captionary.sinks.shards import Member, ShardWriter, sample_key

if TYPE_CHECKING:
    from captionary.sinks.save import Save


class WebDataset:
    name: ClassVar[str] = "webdataset"
    text_only_rows: ClassVar[bool] = False

    def __init__(self, save: Save):
        self.save = save

    @classmethod
    def validate(cls, save: Save) -> None:
        require(
            save.caption_ext != ".json", save, "'.json' is taken by the properties file", param="caption_ext"
        )

    def open(self, ctx: SinkContext) -> None:
        self.ctx = ctx
        root = self.save.path.resolve()
        self.shards = ShardWriter(
            ctx, f"{root}::{self.name}", root, self.save.shard_size, self.save.overwrite_edited
        )
        self.names = Names(
            self.save.naming, self.shards.claimed_keys(), lambda item, name: sample_key(name), _as_is
        )
        self.captions = Captions(self.save.caption_property, self.save.missing_caption)
        self.exported = 0
        self.encoding = self.save.renderer()
        self.pool = ThreadPoolExecutor(self.save.threads, thread_name_prefix="captionary-save")

    def write(self, items: Sequence[Item]) -> list[WriteResult]:
        return [self._write_sample(item) for item in items]

    def close(self, complete: bool) -> None:
        self.pool.shutdown()
        self.shards.close(complete, keep_items=failed_items(self.ctx))
        if complete:
            card = OutputFiles(self.ctx, f"{self.shards.root}::{self.name}::card", self.shards.root)
            write_card(card, self.save, self.ctx, self.captions, self.exported)

    def usage(self) -> dict[str, int]:
        counts = dict(self.captions.counts)
        if self.shards.kept_edited:
            counts["edited_files_kept"] = len(self.shards.kept_edited)
        return counts

    def _write_sample(self, item: Item) -> WriteResult:
        """Plan one sample; skip it if its shard holds it unchanged, else append it (in a save thread:
        `threads` of them read and encode samples at once, each appended when ready)."""
        if not item.has_image:
            return False  # a prompt item: no image to export yet
        try:
            caption = self.captions.of(item)
            if caption is SKIP:
                return False
            stem = self.names.stem(item)
            self.exported += 1
            image = self.encoding.plan(item, stem, lambda: self.ctx.ws.blobs.get(item.id))
            members = [Member(image.relative[len(stem) :], image.content)]
            digests = [image.digest]
            text = caption_text(caption).encode()
            members.append(Member(self.save.caption_ext, lambda: text))
            digests.append(hash_bytes(text))
            props = canonical_json(item.props).encode()
            members.append(Member(".json", lambda: props))
            digests.append(hash_bytes(props))
        except Exception as exc:
            return describe_error(exc)
        digest = hash_bytes("\n".join(digests).encode())
        if self.shards.unchanged(item.id, digest):
            return False
        return self.pool.submit(self._append_sample, item, stem, digest, members)

    def _append_sample(
        self, item: Item, key: str, digest: str, members: list[Member]
    ) -> tuple[Item, bool | str]:
        try:
            self.shards.write(item.id, key, digest, members)
            return item, True
        except NotOurs as exc:
            return item, str(exc)
        except Exception as exc:
            return item, describe_error(exc)


def _as_is(item: Item, stem: str) -> str:
    return stem
