"""A crawl's place in a site's listing, kept in the workspace (`web_crawls`, `web_posts`): an
interrupted crawl resumes at the page it stopped at, and a re-run never asks for a page again."""

from __future__ import annotations

import json
import time

from captionary.core.hashing import canonical_json
from captionary.pipeline.context import SourceContext
from captionary.sources.web.posts import Post
from captionary.sources.web.site import Cursor

INSERT_POST = "INSERT OR IGNORE INTO web_posts VALUES (?, ?, ?, ?)"
UPSERT_CRAWL = "INSERT OR REPLACE INTO web_crawls VALUES (?, ?, ?, ?)"


class CrawlState:
    """The listing so far of one search (`query`: the site, its address and the search tags)."""

    def __init__(self, ctx: SourceContext, query: str):
        self.ctx = ctx
        self.query = query
        rows = ctx.ws.query("SELECT cursor, exhausted FROM web_crawls WHERE query = ?", (query,))
        self.cursor: Cursor = json.loads(rows[0][0]) if rows and rows[0][0] is not None else None
        self.exhausted = bool(rows[0][1]) if rows else False
        self.posts = [
            Post.from_json(json.loads(data))
            for (data,) in ctx.ws.query(
                "SELECT data FROM web_posts WHERE query = ? ORDER BY position", (query,)
            )
        ]
        self.ids = {post.id for post in self.posts}

    def record(self, posts: list[Post], cursor: Cursor) -> None:
        """A page was read: remember its new posts, then the next cursor (in that order, so a crash
        between the two only makes the next run read this page again)."""
        start = len(self.posts)
        rows = [(self.query, p.id, start + i, canonical_json(p.to_json())) for i, p in enumerate(posts)]
        self.posts.extend(posts)
        self.ids.update(p.id for p in posts)
        self.ctx.writer.write_many(INSERT_POST, rows)
        self.exhausted = cursor is None
        self.cursor = cursor if cursor is not None else self.cursor
        row = (self.query, json.dumps(self.cursor), int(self.exhausted), time.time())
        self.ctx.writer.write(UPSERT_CRAWL, row)
