"""webdataset: `out/shard-000000.tar`, ... of `shard_size` samples each: `dog/00.jpg`, `dog/00.txt`,
`dog/00.json` (all properties), appended as items arrive (see sinks/shards.py)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from captionary.core.hashing import canonical_json, hash_bytes
from captionary.core.item import Item
from captionary.errors import describe_error
from captionary.pipeline.step import require
from captionary.sinks.files import NotOurs
from captionary.sinks.formats.base import WriteResult, caption_text
from captionary.sinks.naming import Names
from captionary.sinks.shards import Member, ShardWriter, sample_key

if TYPE_CHECKING:
    from captionary.sinks.save import Save


class WebDataset:
    name: ClassVar[str] = "webdataset"

    def __init__(self, save: Save):
        self.save = save

    @classmethod
    def validate(cls, save: Save) -> None:
        require(
            save.caption_ext != ".json", save, "'.json' is taken by the properties file", param="caption_ext"
        )

    def open(self, ctx: Any) -> None:
        self.ctx = ctx
        root = self.save.path.resolve()
        self.shards = ShardWriter(ctx, f"{root}::{self.name}", root, self.save.shard_size)
        self.names = Names(self.save.naming, self.shards.claimed_keys(), sample_key)
        self.encoding = self.save.renderer()
        self.pool = ThreadPoolExecutor(self.save.threads, thread_name_prefix="captionary-save")

    def write(self, items: Sequence[Item]) -> list[WriteResult]:
        return [self._write_sample(item) for item in items]

    def close(self, complete: bool) -> None:
        self.pool.shutdown()
        self.shards.close(complete, keep_items={e["item"] for e in self.ctx.errors if e["item"]})

    def _write_sample(self, item: Item) -> WriteResult:
        """Plan one sample; skip it if its shard holds it unchanged, else append it (in a save thread:
        `threads` of them read and encode samples at once, each appended when ready)."""
        try:
            stem = self.names.stem(item)
            image = self.encoding.plan(item, stem, lambda: self.ctx.ws.blobs.get(item.id))
            members = [Member(image.relative[len(stem) :], image.content)]
            digests = [image.digest]
            caption = item.get(self.save.caption_property)
            if caption is not None:
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
