"""`load_booru`: posts of an image board (Danbooru, Moebooru, Gelbooru-API sites, e621, Zerochan, or
a user's own adapter), their tags, rating and score as properties; crawled politely and resumably."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import field
from typing import ClassVar, Literal

from captionary.core import optional
from captionary.core.locations import is_http
from captionary.errors import ConfigError, ParamError
from captionary.pipeline.context import SourceContext
from captionary.pipeline.step import Ingested, Source, require
from captionary.sources.records import should_verify
from captionary.sources.web.client import PoliteClient, user_agent
from captionary.sources.web.crawler import Crawl, CrawlOptions
from captionary.sources.web.posts import DEFAULT_TAG_ORDER, TagStyle, tag_key, wanted_ratings
from captionary.sources.web.site import Credentials, Site, site_class


class LoadBooru(Source):
    """Load posts of an image board with their tags, rating and score (resumable, rate-limited).

    `site`: danbooru, konachan, yandere, moebooru, gelbooru, safebooru, e621, zerochan, or a
    `module:Class` of your own (a `captionary.sources.web.site.Site` subclass); `base_url` points it
    at a mirror or another install of the same software. `tags` is the site's search, `limit` the
    number of posts kept (None: all), `rating` the ratings kept (g, s, q, e or words), `blacklist`
    skips posts with any of those tags, `min_score` posts scored lower. `variant: sample` fetches the
    site's large sample instead of the original. Items get `tags` (the categories of `tag_order`, in
    that order, underscores to spaces except kaomoji, minus `exclude_tags`), `<category>_tags` per
    category, `rating`, `score`, `post_id`, `post_url`, `source_url`, `md5`, `site`.

    Politeness: `requests_per_second` (API pages), `downloads_per_second` (files), `concurrency`
    (downloads at once) and `page_size` default to each site's (0: no limit); retries back off and
    honour `Retry-After`; a file over `max_file_mb` is that post's error. The login / API key come
    from the environment: `<PREFIX>_LOGIN` and `<PREFIX>_API_KEY` (Gelbooru: `_USER_ID`, `_API_KEY`;
    Moebooru: `_LOGIN`, `_PASSWORD_HASH`) with PREFIX the site name in capitals (`DANBOORU`, `E621`,
    ...) or `credentials_env`. The listing's cursor is kept in the workspace: an interrupted crawl
    resumes, a larger `limit` fetches only the posts beyond the old one, and a post (by id, then md5)
    is never downloaded twice.
    """

    name: ClassVar[str] = "load_booru"
    cache_exclude: ClassVar[tuple[str, ...]] = (
        "requests_per_second",
        "downloads_per_second",
        "concurrency",
        "page_size",
        "retries",
        "max_file_mb",
        "timeout",
        "user_agent",
        "credentials_env",
    )

    site: str
    tags: list[str] = field(default_factory=list)
    limit: int | None = None
    rating: list[str] = field(default_factory=list)
    variant: Literal["original", "sample"] = "original"
    base_url: str | None = None
    tag_order: list[str] = field(default_factory=lambda: list(DEFAULT_TAG_ORDER))
    replace_underscores: bool = True
    escape_brackets: bool = False
    exclude_tags: list[str] = field(default_factory=list)
    blacklist: list[str] = field(default_factory=list)
    min_score: int | None = None
    requests_per_second: float | None = None
    downloads_per_second: float | None = None
    concurrency: int | None = None
    page_size: int | None = None
    retries: int = 4
    max_file_mb: float | None = 200.0
    timeout: float = 30.0
    user_agent: str | None = None
    credentials_env: str | None = None
    verify: bool | None = None

    def validate(self) -> None:
        optional.require("httpx", "web")
        try:
            cls = site_class(self.site)
        except ConfigError as exc:
            raise ParamError(f"load_booru.site: {exc}", param="site") from None
        require(
            self.base_url is None or is_http(self.base_url),
            self,
            f"must be an http(s):// URL; got {self.base_url!r}",
            param="base_url",
        )
        require(bool(self.base_url or cls.base_url), self, f"site {self.site!r} needs a base_url", "base_url")
        require(self.limit is None or self.limit >= 1, self, f"must be >= 1; got {self.limit}", "limit")
        try:
            wanted_ratings(self.rating)
        except ValueError as exc:
            raise ParamError(f"load_booru.rating: {exc}", param="rating") from None
        for param in ("requests_per_second", "downloads_per_second"):
            value = getattr(self, param)
            require(value is None or value >= 0, self, f"must be >= 0 (0: no limit); got {value}", param)
        require(self.concurrency is None or self.concurrency >= 1, self, "must be >= 1", "concurrency")
        require(self.page_size is None or self.page_size >= 1, self, "must be >= 1", "page_size")
        require(self.retries >= 0, self, f"must be >= 0; got {self.retries}", "retries")
        require(self.max_file_mb is None or self.max_file_mb > 0, self, "must be > 0", "max_file_mb")
        require(self.timeout > 0, self, f"must be > 0; got {self.timeout}", "timeout")
        require(bool(self.tag_order), self, "name at least one tag category", "tag_order")

    @property
    def site_class(self) -> type[Site]:
        return site_class(self.site)

    def environment(self) -> tuple[str, str]:
        """The environment variables the login and API key are read from."""
        return self.site_class.environment(self.credentials_env)

    def scan(self, ctx: SourceContext) -> Iterator[Ingested]:
        cls = self.site_class
        site = cls(self.base_url, Credentials.from_env(self.environment()))
        if self.page_size is not None:
            site.page_size = self.page_size
        concurrency = self.concurrency or cls.concurrency
        client = PoliteClient(
            requests_per_second=_rate(self.requests_per_second, cls.requests_per_second),
            downloads_per_second=_rate(self.downloads_per_second, cls.downloads_per_second),
            connections=concurrency,
            retries=self.retries,
            timeout=self.timeout,
            agent=self.user_agent or site.user_agent(user_agent()),
            max_bytes=int(self.max_file_mb * 2**20) if self.max_file_mb else None,
        )
        options = CrawlOptions(
            tags=tuple(self.tags),
            limit=self.limit,
            ratings=wanted_ratings(self.rating),
            blacklist=frozenset(map(tag_key, self.blacklist)),
            min_score=self.min_score,
            sample=self.variant == "sample",
            style=TagStyle(
                order=tuple(self.tag_order),
                replace_underscores=self.replace_underscores,
                escape_brackets=self.escape_brackets,
                exclude=frozenset(map(tag_key, self.exclude_tags)),
            ),
            concurrency=concurrency,
            verify=should_verify(self.verify, ctx),
        )
        try:
            yield from Crawl(ctx, site, client, options).run()
        finally:
            client.close()


def _rate(value: float | None, default: float) -> float | None:
    """A rate setting: None takes the site's default, 0 lifts the limit."""
    if value is None:
        return default
    return value or None
