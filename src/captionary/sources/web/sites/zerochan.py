"""Zerochan: `/<Tag>?json` pages by number; each post's files from `/<id>?json` (one request per post,
as its API documentation describes). Tags come without categories: all are `general`."""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from urllib.parse import quote_plus

from captionary.sources.web.posts import Post
from captionary.sources.web.site import Cursor, Get, Page, Request, Site
from captionary.sources.web.sites.fields import as_int, as_text, extension, records

log = logging.getLogger(__name__)


class Zerochan(Site):
    """Zerochan's JSON API (asks for a User-Agent naming you: set `user_agent`); at most one request
    a second. Posts have no rating (a `rating:` filter drops them)."""

    name: ClassVar[str] = "zerochan"
    base_url: ClassVar[str] = "https://www.zerochan.net"
    requests_per_second: ClassVar[float] = 1.0
    downloads_per_second: ClassVar[float] = 2.0
    concurrency: ClassVar[int] = 2
    page_size: ClassVar[int] = 100

    def page_request(self, tags: list[str], cursor: Cursor) -> Request:
        path = ",".join(quote_plus(t) for t in tags)
        return Request(f"{self.url}/{path}", {"json": "", "l": self.page_size, "p": cursor or 1})

    def parse_page(self, answer: Any, cursor: Cursor) -> Page:
        rows = records(answer, "items")
        posts = [
            Post(
                id=str(r["id"]),
                file_url=None,  # the entry request gives it (complete)
                tags={"general": [t for t in r.get("tags") or [] if isinstance(t, str)]},
                source=as_text(r.get("source")),
                width=as_int(r.get("width")),
                height=as_int(r.get("height")),
            )
            for r in rows
            if as_int(r.get("id")) is not None
        ]
        return Page(posts, int(cursor or 1) + 1 if posts else None)

    def complete(self, posts: list[Post], get: Get) -> list[Post]:
        """Each post's file URLs (and full tag list) from its entry; a post whose entry cannot be read
        keeps no file URL (it is skipped, and asked again on a later listing of a new page only)."""
        for post in posts:
            try:
                entry = get(Request(f"{self.url}/{post.id}", {"json": ""}))
            except (OSError, ValueError) as exc:
                log.warning("zerochan post %s: %s", post.id, exc)
                continue
            if not isinstance(entry, dict):
                continue
            post.file_url = self.absolute(as_text(entry.get("full")))
            post.sample_url = self.absolute(as_text(entry.get("large")))
            post.ext = extension(post.file_url)
            tags = [t for t in entry.get("tags") or [] if isinstance(t, str)]
            if tags:
                post.tags = {"general": tags}
            post.source = as_text(entry.get("source")) or post.source
        return posts

    def post_url(self, post_id: str) -> str:
        return f"{self.url}/{post_id}"
