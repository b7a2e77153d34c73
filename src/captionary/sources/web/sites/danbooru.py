"""Danbooru (danbooru.donmai.us and any Danbooru install): `/posts.json`, `page=b<id>` cursors."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.sources.web.posts import Post, rating_word
from captionary.sources.web.site import Cursor, Page, Request, Site
from captionary.sources.web.sites.fields import as_int, as_text, extension, records, words

CATEGORIES = ("general", "character", "copyright", "artist", "meta")


class Danbooru(Site):
    """Danbooru's JSON API. Anonymous searches take at most two tags; a login
    (`DANBOORU_LOGIN` / `DANBOORU_API_KEY`, sent as HTTP Basic auth) allows more."""

    name: ClassVar[str] = "danbooru"
    base_url: ClassVar[str] = "https://danbooru.donmai.us"
    requests_per_second: ClassVar[float] = 2.0
    downloads_per_second: ClassVar[float] = 4.0
    concurrency: ClassVar[int] = 2
    page_size: ClassVar[int] = 200

    def page_request(self, tags: list[str], cursor: Cursor) -> Request:
        params: dict[str, Any] = {"tags": " ".join(tags), "limit": self.page_size}
        if cursor is not None:
            params["page"] = cursor  # "b<id>": the posts below that id, newest first
        auth = (self.credentials.login, self.credentials.api_key) if self.credentials.login else None
        return Request(f"{self.url}/posts.json", params, auth=auth)

    def parse_page(self, answer: Any, cursor: Cursor) -> Page:
        posts = [self.post(r) for r in records(answer) if as_int(r.get("id")) is not None]
        lowest = min((int(p.id) for p in posts), default=None)
        return Page(posts, None if lowest is None else f"b{lowest}")

    def post(self, r: dict) -> Post:
        file_url = self.absolute(as_text(r.get("file_url")))
        return Post(
            id=str(r["id"]),
            file_url=file_url,
            sample_url=self.absolute(as_text(r.get("large_file_url"))),
            md5=as_text(r.get("md5")),
            tags={c: words(r.get(f"tag_string_{c}")) for c in CATEGORIES},
            rating=rating_word(r.get("rating")),
            score=as_int(r.get("score")),
            source=as_text(r.get("source")),
            ext=as_text(r.get("file_ext")) or extension(file_url),
            width=as_int(r.get("image_width")),
            height=as_int(r.get("image_height")),
            deleted=bool(r.get("is_deleted")) or bool(r.get("is_banned")),
        )
