"""A user's own site adapter, named by import path (`site: my_board:MyBoard`): it reads a
Danbooru-shaped listing with page numbers, to show that the contract is all a site needs."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.sources.web.posts import Post, rating_word
from captionary.sources.web.site import Cursor, Page, Request, Site


class MyBoard(Site):
    name: ClassVar[str] = "myboard"
    requests_per_second: ClassVar[float] = 0  # a local server: no limit
    downloads_per_second: ClassVar[float] = 0
    page_size: ClassVar[int] = 2

    def page_request(self, tags: list[str], cursor: Cursor) -> Request:
        return Request(f"{self.url}/posts.json", {"tags": " ".join(tags), "limit": self.page_size,
                                                  "page": cursor or 1})  # fmt: skip

    def parse_page(self, answer: Any, cursor: Cursor) -> Page:
        posts = [
            Post(id=str(r["id"]), file_url=r.get("file_url"), md5=r.get("md5"),
                 tags={"general": r["tag_string_general"].split()}, rating=rating_word(r["rating"]))
            for r in answer
        ]  # fmt: skip
        return Page(posts, int(cursor or 1) + 1 if posts else None)
