"""The crawl every site shares: walk the listing (resuming from the workspace), filter posts, reuse
what the workspace already has (by post id, then by md5), download the rest concurrently within the
site's limits, check md5, and ingest the images through the sources' records."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from captionary.core.cache import decode_props
from captionary.core.hashing import canonical_json
from captionary.core.images import Verify
from captionary.core.item import Item
from captionary.pipeline.context import SourceContext
from captionary.pipeline.step import Ingested
from captionary.sources.records import UPSERT_SOURCE_FILE, SourceRecords, unmarked
from captionary.sources.web.client import FetchError, PoliteClient
from captionary.sources.web.posts import IMAGE_EXTENSIONS, Post, TagStyle, tag_key
from captionary.sources.web.site import Request, Site
from captionary.sources.web.state import CrawlState

KEY_PREFIX = "booru:"
MD5_ATTEMPTS = 2  # a file whose md5 does not match is fetched once more (a truncated transfer)


@dataclass(frozen=True)
class CrawlOptions:
    """What the `load_booru` step asks of a crawl."""

    tags: tuple[str, ...]
    limit: int | None
    ratings: frozenset[str]
    blacklist: frozenset[str]  # tag_key spellings
    min_score: int | None
    sample: bool
    style: TagStyle
    concurrency: int
    verify: Verify


class Crawl:
    def __init__(self, ctx: SourceContext, site: Site, client: PoliteClient, options: CrawlOptions):
        self.ctx = ctx
        self.site = site
        self.client = client
        self.options = options
        self.host = site.url.split("://", 1)[-1]
        self.label = site.name or type(site).__name__.lower()
        self.query = canonical_json({"site": self.label, "url": site.url, "tags": list(options.tags)})

    # --- the run ----------------------------------------------------------------------------------
    def run(self) -> Iterator[Any]:
        options = self.options
        records = SourceRecords(self.ctx, KEY_PREFIX, options.verify, complete=False)  # all sites, queries
        by_md5 = {
            fingerprint[4:36]: key
            for key, (fingerprint, item, _, _) in records.known.items()
            if fingerprint.startswith("md5:") and item
        }
        state = CrawlState(self.ctx, self.query)
        if options.limit is not None:
            self.ctx.expect(options.limit)  # posts kept; dropped ones add to the count as they come
        pending: deque[tuple[Post, str, Future]] = deque()
        taken = dropped = 0
        pool = ThreadPoolExecutor(options.concurrency, thread_name_prefix="captionary-crawl")
        try:
            for post in self.listing(state):
                if isinstance(post, Ingested):  # a page that could not be read
                    yield post
                    break
                key = f"{KEY_PREFIX}{self.host}/{post.id}"
                reason = self.skip_reason(post)
                if reason is not None:
                    dropped += 1
                    if options.limit is not None:
                        self.ctx.expect(options.limit + dropped)
                    yield Ingested(key, dropped=reason)
                    continue
                taken += 1
                known = self.known(records, by_md5, key, post)
                if known is not None:
                    yield known
                else:
                    if post.md5 and not options.sample:
                        by_md5[post.md5.lower()] = key  # another post of this file in this run: a duplicate
                    pending.append((post, key, pool.submit(self.download, post)))
                while len(pending) > 2 * options.concurrency or (pending and pending[0][2].done()):
                    yield self.ingest(records, *pending.popleft())
                if options.limit is not None and taken >= options.limit:
                    break  # before the listing is asked for another post (and maybe another page)
            while pending:
                yield self.ingest(records, *pending.popleft())
        finally:
            self.client.stopped.set()  # a stopped run: downloads in flight give up instead of retrying
            pool.shutdown(wait=True, cancel_futures=True)

    def listing(self, state: CrawlState) -> Iterator[Any]:
        """The posts listed so far, then new pages as they are needed (each remembered at once)."""
        yield from list(state.posts)
        while not state.exhausted:
            request = self.site.page_request(list(self.options.tags), state.cursor)
            try:
                page = self.site.parse_page(self.client.json(request), state.cursor)
                new = self.site.complete([p for p in page.posts if p.id not in state.ids], self.client.json)
            except (FetchError, ValueError) as exc:
                yield Ingested(request.url, error=f"{self.label} listing: {exc}")
                return
            except (KeyError, TypeError, AttributeError, IndexError) as exc:  # an answer of another shape
                reason = f"{type(exc).__name__}: {exc}"
                yield Ingested(request.url, error=f"{self.label} listing: unexpected answer ({reason})")
                return
            next_cursor = None if page.next == state.cursor else page.next  # a site ignoring the cursor
            state.record(new, next_cursor)
            yield from new

    # --- posts ------------------------------------------------------------------------------------
    def skip_reason(self, post: Post) -> str | None:
        options = self.options
        if post.deleted:
            return "deleted on the site"
        url = self.file_url(post)
        if not url:
            return "no file URL (the site hides it: a login may be needed)"
        if post.ext and post.ext.lower() not in IMAGE_EXTENSIONS:
            return f"not an image ({post.ext})"
        if options.ratings and post.rating not in options.ratings:
            return f"rating {post.rating or 'unknown'} not wanted"
        if options.min_score is not None and (post.score is None or post.score < options.min_score):
            return f"score {post.score} below {options.min_score}"
        blacklisted = next((t for t in post.all_tags() if tag_key(t) in options.blacklist), None)
        if blacklisted is not None:
            return f"blacklisted tag {blacklisted}"
        return None

    def file_url(self, post: Post) -> str | None:
        return (post.sample_url or post.file_url) if self.options.sample else post.file_url

    def fingerprint(self, post: Post) -> str:
        if post.md5 and not self.options.sample:
            return f"md5:{post.md5.lower()}"
        return f"{'sample' if self.options.sample else 'url'}:{self.file_url(post)}"

    def props(self, post: Post) -> dict[str, Any]:
        props = self.options.style.props(post)
        props |= {
            "site": self.label,
            "post_id": post.id,
            "post_url": self.site.post_url(post.id),
            "rating": post.rating,
            "score": post.score,
            "source_url": post.source,
            "md5": post.md5,
            "file_url": self.file_url(post),
        }
        return {k: v for k, v in props.items() if v is not None}

    def name(self, post: Post) -> str:
        return f"{self.label}_{post.id}"

    # --- the workspace's copy ---------------------------------------------------------------------
    def known(self, records: SourceRecords, by_md5: dict[str, str], key: str, post: Post) -> Any:
        """The item of a post read before (this key with the same file), or of another post with the
        same md5: no download. None: download it."""
        fingerprint = self.fingerprint(post)
        previous = records.known.get(key)
        if previous is not None and unmarked(previous[0])[0] == fingerprint and previous[1]:
            return self.reuse(records, key, post, previous)
        other = by_md5.get(post.md5.lower()) if post.md5 and not self.options.sample else None
        if other is not None and other != key:
            if other not in records.known:  # downloading in this run
                return Ingested(key, dropped=f"exact duplicate of {other}")
            return self.reuse(records, key, post, records.known[other])
        return None

    def reuse(self, records: SourceRecords, key: str, post: Post, previous: tuple) -> Any:
        recorded, item_id, stored, format = previous
        old = dict(decode_props(stored))
        props = {**self.props(post), "width": old.get("width"), "height": old.get("height")}
        fingerprint = self.fingerprint(post) + unmarked(recorded)[1]
        row = (key, fingerprint, item_id, self.name(post), canonical_json(props), format)
        if (recorded, canonical_json(old)) != (fingerprint, row[4]) or key not in records.known:
            self.ctx.writer.write(UPSERT_SOURCE_FILE, row)  # new options (tags) or a new post: no download
            records.known[key] = (fingerprint, item_id, row[4], format)
        item = Item(item_id, None, props, key, self.name(post), self.ctx.ws.blobs, format)
        return records.unique(item, cached=True)

    def download(self, post: Post) -> bytes | str:
        """The post's file (md5-checked where the site gives it), or the reason it failed."""
        url = self.file_url(post)
        check = post.md5.lower() if post.md5 and not self.options.sample else None
        reason = ""
        for _ in range(MD5_ATTEMPTS if check else 1):
            try:
                data = self.client.get(Request(url), "files")
            except FetchError as exc:
                return f"download failed: {exc}"
            got = hashlib.md5(data).hexdigest() if check else None
            if got == check:
                return data
            reason = f"md5 mismatch: got {got} for {len(data)} bytes, the site says {check}"
        return f"{url}: {reason} (truncated or corrupt download)"

    def ingest(self, records: SourceRecords, post: Post, key: str, future: Future) -> Any:
        result = future.result()
        if isinstance(result, str):
            return Ingested(key, error=result)
        url = self.file_url(post) or key
        record = records.ingest_bytes(
            key, result, url, self.name(post), self.fingerprint(post), self.props(post)
        )
        if record.item is None:
            return record
        recorded = self.fingerprint(post) + records.mark  # as ingest_bytes wrote it
        props = canonical_json(record.item.props)
        records.known[key] = (recorded, record.item.id, props, record.item.format)
        return records.unique(record.item, cached=False)
