"""e621 (and e926): `/posts.json`, tags grouped by category, `page=b<id>` cursors."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.sources.web.posts import Post, rating_word
from captionary.sources.web.site import Cursor, Page, Request, Site
from captionary.sources.web.sites.fields import as_int, as_text, records


class E621(Site):
    """e621's JSON API (a descriptive User-Agent is required; at most 2 requests a second).
    `E621_LOGIN` / `E621_API_KEY` log in (HTTP Basic auth)."""

    name: ClassVar[str] = "e621"
    base_url: ClassVar[str] = "https://e621.net"
    requests_per_second: ClassVar[float] = 1.0
    downloads_per_second: ClassVar[float] = 2.0
    concurrency: ClassVar[int] = 2
    page_size: ClassVar[int] = 320

    def page_request(self, tags: list[str], cursor: Cursor) -> Request:
        params: dict[str, Any] = {"tags": " ".join(tags), "limit": self.page_size}
        if cursor is not None:
            params["page"] = cursor
        auth = (self.credentials.login, self.credentials.api_key) if self.credentials.login else None
        return Request(f"{self.url}/posts.json", params, auth=auth)

    def user_agent(self, default: str) -> str:
        """e621 asks clients to name the user they act for."""
        login = self.credentials.login
        return f"{default} (by {login} on e621)" if login else default

    def parse_page(self, answer: Any, cursor: Cursor) -> Page:
        if not isinstance(answer, dict):
            raise ValueError(f"expected an object with 'posts', got {type(answer).__name__}")
        posts = [self.post(r) for r in records(answer, "posts") if as_int(r.get("id")) is not None]
        lowest = min((int(p.id) for p in posts), default=None)
        return Page(posts, None if lowest is None else f"b{lowest}")

    def post(self, r: dict) -> Post:
        file = r.get("file") or {}
        sample = r.get("sample") or {}
        tags = r.get("tags") or {}
        sources = [s for s in r.get("sources") or [] if isinstance(s, str)]
        score = r.get("score")
        return Post(
            id=str(r["id"]),
            file_url=self.absolute(as_text(file.get("url"))),
            sample_url=self.absolute(as_text(sample.get("url"))) if sample.get("has") else None,
            md5=as_text(file.get("md5")),
            tags={c: [t for t in names if isinstance(t, str)] for c, names in tags.items() if names},
            rating=rating_word(r.get("rating"), three_levels=True),
            score=as_int(score.get("total")) if isinstance(score, dict) else as_int(score),
            source=sources[0] if sources else None,
            ext=as_text(file.get("ext")),
            width=as_int(file.get("width")),
            height=as_int(file.get("height")),
            deleted=bool((r.get("flags") or {}).get("deleted")),
        )
