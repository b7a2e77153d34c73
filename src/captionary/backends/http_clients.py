"""The async HTTP clients the API backends post through, behind one small interface.

`post(path, content, headers)` answers an `Answer` (status, body, headers) or raises `RequestTimeout`
or `ConnectionFailed`; the backends' retries and error messages know nothing else of the library.

Two clients, chosen by the backends' `transport` option:

- `aiohttp`: aiohttp's `ClientSession`, used directly. On 2 cores, 64 requests at a time of ~30 KB
  bodies cost 0.24 ms of client CPU per request against the benchmarks' stub server, against 0.70 ms
  through httpx's API over aiohttp's transport (httpx-aiohttp) and 12.5 ms through httpx's own pool,
  whose cost grows with the number of connections (`python benchmarks/caption.py --backends openai`
  prints the bare client's rate).
- `httpx`: `httpx.AsyncClient`, for a machine that has httpx and not aiohttp.

`auto` takes aiohttp when it is installed (the `openai` extra brings it), else httpx.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from captionary.errors import ConfigError

Transport = Literal["auto", "aiohttp", "httpx"]


class RequestTimeout(Exception):
    """No complete answer within the timeout."""


class ConnectionFailed(Exception):
    """The connection could not be made, or broke before the answer was complete."""


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: its status, body and headers (names looked up case-insensitively)."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    reason: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class AsyncClient(Protocol):
    async def post(self, path: str, content: bytes, headers: Mapping[str, str]) -> Answer: ...

    async def aclose(self) -> None: ...


def installed(transport: Literal["aiohttp", "httpx"]) -> bool:
    try:
        __import__(transport)
    except ImportError:
        return False
    return True


def resolve(transport: Transport) -> Literal["aiohttp", "httpx"]:
    """The client `transport` names, installed; ConfigError naming the extra when it is not."""
    if transport == "auto":
        if installed("aiohttp"):
            return "aiohttp"
        if installed("httpx"):
            return "httpx"
        raise ConfigError("the API backends need aiohttp (pip install 'captionary[openai]')")
    if transport not in ("aiohttp", "httpx"):
        raise ConfigError(f"transport must be auto, aiohttp or httpx, not {transport!r}")
    if not installed(transport):
        extra = "pip install 'captionary[openai]'" if transport == "aiohttp" else "pip install httpx"
        raise ConfigError(f"transport: {transport} needs the {transport} package ({extra})")
    return transport


def trusted_roots() -> ssl.SSLContext:
    """TLS verification against the system's certificates (and `SSL_CERT_FILE` / `SSL_CERT_DIR`) and,
    when certifi is installed, its bundle too: httpx and the OpenAI SDK verify against certifi, and
    a Python without system certificates (python.org's macOS builds) has only that."""
    context = ssl.create_default_context()
    try:
        import certifi
    except ImportError:
        return context
    context.load_verify_locations(certifi.where())
    return context


async def open_client(
    transport: Literal["aiohttp", "httpx"],
    *,
    base_url: str,
    headers: Mapping[str, str],
    timeout: float,
    connections: int,
) -> AsyncClient:
    """A client for `base_url`, at most `connections` open, each attempt bounded by `timeout` seconds
    (made on the loop it is used on)."""
    if transport == "aiohttp":
        return AiohttpClient(base_url, headers, timeout, connections)
    return HttpxClient(base_url, headers, timeout, connections)


class AiohttpClient:
    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float, connections: int):
        import aiohttp

        self._aiohttp = aiohttp
        self._base_url = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=connections, ssl=trusted_roots()),
            trust_env=True,  # HTTP(S)_PROXY, NO_PROXY and .netrc, as httpx reads them
        )

    async def post(self, path: str, content: bytes, headers: Mapping[str, str]) -> Answer:
        aiohttp = self._aiohttp
        try:
            async with self._session.post(self._base_url + path, data=content, headers=headers) as response:
                body = await response.read()
                return Answer(response.status, body, response.headers, response.reason or "")
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise RequestTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise ConnectionFailed(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self._session.close()


class HttpxClient:
    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float, connections: int):
        import httpx

        self._httpx = httpx
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def post(self, path: str, content: bytes, headers: Mapping[str, str]) -> Answer:
        httpx = self._httpx
        try:
            response = await self._client.post(path, content=content, headers=dict(headers))
        except httpx.TimeoutException as exc:
            raise RequestTimeout(str(exc)) from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"{type(exc).__name__}: {exc}") from exc
        return Answer(response.status_code, response.content, response.headers, response.reason_phrase)

    async def aclose(self) -> None:
        await self._client.aclose()
