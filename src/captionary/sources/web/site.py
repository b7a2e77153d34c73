"""The contract of a site adapter: how to ask a site for a page of posts and read its answer.

An adapter is small: it builds the request for one page (`page_request`), turns the decoded answer
into `Post`s and the cursor of the next page (`parse_page`), and, if the listing lacks something
(tag categories, file URLs), asks for it in `complete`. The shared crawler does the rest: politeness
(rate limits, concurrency, retries, `Retry-After`), the cursor kept in the workspace, filters, tags,
downloads and md5 checks. A user's own adapter is named by import path: `site: my_pkg.sites:MySite`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from captionary.core.plugins import plugin_class
from captionary.errors import ConfigError
from captionary.sources.web.posts import Post

Cursor = str | int | None
"""Where the next page starts (JSON-serialisable; None: the first page)."""


@dataclass
class Request:
    """One GET: `url` with query `params`; `auth` a (user, password) pair for HTTP Basic auth."""

    url: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None


@dataclass
class Page:
    """The posts of one page and the cursor of the next one (None: this was the last page)."""

    posts: list[Post]
    next: Cursor


@dataclass(frozen=True)
class Credentials:
    """A login and an API key (or password hash) read from the environment; both may be None."""

    login: str | None = None
    api_key: str | None = None

    @classmethod
    def from_env(cls, names: tuple[str, str]) -> Credentials:
        return cls(os.environ.get(names[0]) or None, os.environ.get(names[1]) or None)


Get = Callable[[Request], Any]
"""The crawler's polite JSON getter (rate-limited, retried), for `Site.complete`."""


class Site:
    """Base class of a site adapter. Subclass it, set the class attributes, implement `page_request`
    and `parse_page` (and `complete` when a listing lacks something).

    Class attributes: `name` (the `site:` value), `base_url` (the default instance), politeness
    defaults `requests_per_second` (API requests), `downloads_per_second` (file requests),
    `concurrency` (downloads at once), `page_size`, and `env_prefix`: the login and API key are read
    from the environment variables `<env_prefix>_<credential_names[0]>` and `..._<credential_names[1]>`
    (`DANBOORU_LOGIN`, `DANBOORU_API_KEY`).
    """

    name: ClassVar[str] = ""
    base_url: ClassVar[str] = ""
    requests_per_second: ClassVar[float] = 1.0
    downloads_per_second: ClassVar[float] = 2.0
    concurrency: ClassVar[int] = 2
    page_size: ClassVar[int] = 100
    env_prefix: ClassVar[str] = ""
    credential_names: ClassVar[tuple[str, str]] = ("LOGIN", "API_KEY")

    def __init__(self, base_url: str | None = None, credentials: Credentials | None = None):
        self.url = (base_url or self.base_url).rstrip("/")
        if not self.url:
            raise ConfigError(
                f"site {self.name or type(self).__name__!r} has no default address: set base_url"
            )
        self.credentials = credentials or Credentials()

    @classmethod
    def environment(cls, prefix: str | None = None) -> tuple[str, str]:
        """The environment variables the login and API key are read from."""
        prefix = prefix or cls.env_prefix or cls.name.upper()
        return f"{prefix}_{cls.credential_names[0]}", f"{prefix}_{cls.credential_names[1]}"

    def page_request(self, tags: list[str], cursor: Cursor) -> Request:
        """The request for the page at `cursor` (None: the first) of a search for `tags`."""
        raise NotImplementedError

    def parse_page(self, answer: Any, cursor: Cursor) -> Page:
        """The posts of a page (the decoded JSON answer to `page_request(tags, cursor)`) and the next
        cursor. Raise ValueError for an answer of the wrong shape."""
        raise NotImplementedError

    def complete(self, posts: list[Post], get: Get) -> list[Post]:
        """Fill in what a listing lacks, with further requests through `get` (default: nothing)."""
        return posts

    def user_agent(self, default: str) -> str:
        """The User-Agent to send (the `user_agent:` setting replaces it): `default` names captionary."""
        return default

    def post_url(self, post_id: str) -> str:
        """The post's page on the site (for the `post_url` property)."""
        return f"{self.url}/posts/{post_id}"

    def absolute(self, url: str | None) -> str | None:
        """A file URL as an absolute one (sites give `//host/...` or `/data/...` at times)."""
        if not url:
            return None
        if url.startswith("//"):
            return "https:" + url if self.url.startswith("https") else "http:" + url
        if url.startswith("/"):
            return self.url + url
        return url


SITES: dict[str, str] = {
    "danbooru": "captionary.sources.web.sites.danbooru:Danbooru",
    "moebooru": "captionary.sources.web.sites.moebooru:Moebooru",
    "konachan": "captionary.sources.web.sites.moebooru:Konachan",
    "yandere": "captionary.sources.web.sites.moebooru:Yandere",
    "gelbooru": "captionary.sources.web.sites.gelbooru:Gelbooru",
    "safebooru": "captionary.sources.web.sites.gelbooru:Safebooru",
    "e621": "captionary.sources.web.sites.e621:E621",
    "zerochan": "captionary.sources.web.sites.zerochan:Zerochan",
}
"""Site name -> "module:Class"; any other "module:Class" names a user's own adapter."""


def site_class(name: str) -> type[Site]:
    """The adapter class for `site:` (a name above or "module:Class"); ConfigError on a miss."""
    return plugin_class(name, SITES, Site, "site", "captionary.sources.web.site.Site")
