"""Moebooru (Konachan, Yande.re and other installs): `/post.json` by page number; tag categories
come with `api_version=2&include_tags=1`."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.sources.web.posts import Post, rating_word
from captionary.sources.web.site import Cursor, Page, Request, Site
from captionary.sources.web.sites.fields import as_int, as_text, extension, records, words

TAG_TYPES = {"faults": "meta", "style": "meta"}
"""Moebooru tag types that are called otherwise here (circle stays `circle`)."""


class Moebooru(Site):
    """A Moebooru install (set `base_url`). `<PREFIX>_LOGIN` / `<PREFIX>_PASSWORD_HASH` log in
    (the site's salted SHA-1 of the password, as its API docs describe)."""

    name: ClassVar[str] = "moebooru"
    requests_per_second: ClassVar[float] = 1.0
    downloads_per_second: ClassVar[float] = 2.0
    concurrency: ClassVar[int] = 2
    page_size: ClassVar[int] = 100
    credential_names: ClassVar[tuple[str, str]] = ("LOGIN", "PASSWORD_HASH")

    def page_request(self, tags: list[str], cursor: Cursor) -> Request:
        params: dict[str, Any] = {
            "tags": " ".join(tags),
            "limit": self.page_size,
            "page": cursor or 1,
            "api_version": 2,
            "include_tags": 1,
        }
        if self.credentials.login:
            params |= {"login": self.credentials.login, "password_hash": self.credentials.api_key}
        return Request(f"{self.url}/post.json", params)

    def parse_page(self, answer: Any, cursor: Cursor) -> Page:
        kinds = answer.get("tags") if isinstance(answer, dict) else None
        kinds = kinds if isinstance(kinds, dict) else {}
        rows = records(answer, "posts")
        posts = [self.post(r, kinds) for r in rows if as_int(r.get("id")) is not None]
        return Page(posts, (int(cursor or 1) + 1) if posts else None)

    def post(self, r: dict, kinds: dict[str, Any]) -> Post:
        tags: dict[str, list[str]] = {}
        for tag in words(r.get("tags")):
            kind = kinds.get(tag) if isinstance(kinds.get(tag), str) else "general"
            tags.setdefault(TAG_TYPES.get(kind, kind), []).append(tag)
        file_url = self.absolute(as_text(r.get("file_url")))
        sample = as_text(r.get("sample_url")) or as_text(r.get("jpeg_url"))  # jpeg_url: full size
        return Post(
            id=str(r["id"]),
            file_url=file_url,
            sample_url=self.absolute(sample),
            md5=as_text(r.get("md5")),
            tags=tags,
            rating=rating_word(r.get("rating"), three_levels=True),
            score=as_int(r.get("score")),
            source=as_text(r.get("source")),
            ext=as_text(r.get("file_ext")) or extension(file_url),
            width=as_int(r.get("width")),
            height=as_int(r.get("height")),
            deleted=r.get("status") == "deleted",
        )

    def post_url(self, post_id: str) -> str:
        return f"{self.url}/post/show/{post_id}"


class Konachan(Moebooru):
    """Konachan.com (`KONACHAN_LOGIN` / `KONACHAN_PASSWORD_HASH`)."""

    name: ClassVar[str] = "konachan"
    base_url: ClassVar[str] = "https://konachan.com"


class Yandere(Moebooru):
    """Yande.re (`YANDERE_LOGIN` / `YANDERE_PASSWORD_HASH`)."""

    name: ClassVar[str] = "yandere"
    base_url: ClassVar[str] = "https://yande.re"
