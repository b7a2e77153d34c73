"""Gelbooru-API sites (Gelbooru, Safebooru.org, other Gelbooru installs): `index.php?page=dapi&s=post
&q=index&json=1` by page number (`pid`); tag categories from the tag API (`s=tag`)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from captionary.sources.web.posts import Post, rating_word
from captionary.sources.web.site import Cursor, Get, Page, Request, Site
from captionary.sources.web.sites.fields import as_int, as_text, extension, records, words

log = logging.getLogger(__name__)

TAG_TYPES = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta", 6: "general"}
"""The tag API's `type` numbers (6: deprecated, kept as general)."""
TAG_NAMES = {"tag": "general", "metadata": "meta", "deprecated": "general"}
TAG_BATCH = 100  # tag names per tag API request


class Gelbooru(Site):
    """Gelbooru's DAPI in JSON. `GELBOORU_USER_ID` / `GELBOORU_API_KEY` (from the account's options
    page) are sent as `user_id` / `api_key`; `pid` pages stop at the API's offset cap (20000 posts)."""

    name: ClassVar[str] = "gelbooru"
    base_url: ClassVar[str] = "https://gelbooru.com"
    requests_per_second: ClassVar[float] = 2.0
    downloads_per_second: ClassVar[float] = 4.0
    concurrency: ClassVar[int] = 2
    page_size: ClassVar[int] = 100
    credential_names: ClassVar[tuple[str, str]] = ("USER_ID", "API_KEY")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.kinds: dict[str, str] = {}  # tag -> category, asked once per crawl

    def dapi(self, what: str, params: dict[str, Any]) -> Request:
        params = {"page": "dapi", "s": what, "q": "index", "json": 1, **params}
        if self.credentials.login:
            params |= {"user_id": self.credentials.login, "api_key": self.credentials.api_key}
        return Request(f"{self.url}/index.php", params)

    def page_request(self, tags: list[str], cursor: Cursor) -> Request:
        return self.dapi("post", {"tags": " ".join(tags), "limit": self.page_size, "pid": cursor or 0})

    def parse_page(self, answer: Any, cursor: Cursor) -> Page:
        rows = records(answer, "post")  # Gelbooru: {"@attributes": ..., "post": [...]}; Safebooru: [...]
        posts = [self.post(r) for r in rows if as_int(r.get("id")) is not None]
        return Page(posts, int(cursor or 0) + 1 if posts else None)

    def post(self, r: dict) -> Post:
        image, directory = as_text(r.get("image")), r.get("directory")
        file_url = as_text(r.get("file_url"))
        if file_url is None and image and directory is not None:
            file_url = f"{self.url}/images/{directory}/{image}"
        sample_url = as_text(r.get("sample_url"))
        if sample_url is None and r.get("sample") in (True, 1, "1", "true") and image:
            sample_url = f"{self.url}/samples/{directory}/sample_{image.rsplit('.', 1)[0]}.jpg"
        return Post(
            id=str(r["id"]),
            file_url=self.absolute(file_url),
            sample_url=self.absolute(sample_url),
            md5=as_text(r.get("md5")) or as_text(r.get("hash")),
            tags={"general": words(r.get("tags"))},  # categories: see complete()
            rating=rating_word(r.get("rating"), three_levels=True),
            score=as_int(r.get("score")),
            source=as_text(r.get("source")),
            ext=extension(image or file_url),
            width=as_int(r.get("width")),
            height=as_int(r.get("height")),
            deleted=r.get("status") == "deleted",
        )

    def complete(self, posts: list[Post], get: Get) -> list[Post]:
        """Sort each post's tags into categories, asking the tag API about tags not seen yet (when it
        cannot answer, the tags stay `general`)."""
        unknown = sorted({t for p in posts for t in p.tags.get("general", [])} - self.kinds.keys())
        for start in range(0, len(unknown), TAG_BATCH):
            batch = unknown[start : start + TAG_BATCH]
            try:
                answer = get(self.dapi("tag", {"names": " ".join(batch), "limit": len(batch)}))
                for row in records(answer, "tag"):
                    self.kinds[str(row.get("name"))] = _kind(row.get("type"))
            except (OSError, ValueError) as exc:
                log.warning("%s: tag categories unavailable (%s); tags stay general", self.url, exc)
            for tag in batch:
                self.kinds.setdefault(tag, "general")
        for post in posts:
            grouped: dict[str, list[str]] = {}
            for tag in post.tags.get("general", []):
                grouped.setdefault(self.kinds.get(tag, "general"), []).append(tag)
            post.tags = grouped
        return posts

    def post_url(self, post_id: str) -> str:
        return f"{self.url}/index.php?page=post&s=view&id={post_id}"


def _kind(value: Any) -> str:
    number = as_int(value)
    if number is not None:
        return TAG_TYPES.get(number, "general")
    text = str(value or "general").lower()
    return TAG_NAMES.get(text, text)


class Safebooru(Gelbooru):
    """Safebooru.org (a Gelbooru 0.2 install: no md5 field but `hash`, file URLs built from
    `directory` / `image`)."""

    name: ClassVar[str] = "safebooru"
    base_url: ClassVar[str] = "https://safebooru.org"
