"""`openai` backend: any OpenAI-compatible chat-completions endpoint (OpenAI, Gemini's compatible
endpoint, vLLM or llama.cpp servers, Ollama, LM Studio, OpenRouter).

Images go as base64 JPEG data URLs, downscaled to `max_image_edge`. Requests run concurrently, at most
`concurrency` at a time, on one event loop thread (`http_loop.py`: aiohttp's client when it is
installed, else httpx's; `transport` chooses); 429 and 5xx answers, timeouts and dropped
connections are retried up to `max_retries` times with exponential backoff, waiting at least what a
`Retry-After` header asks. The API key comes from the environment variable `api_key_env` (default
`OPENAI_API_KEY`); a local server needs none.
"""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

from captionary.backends.base import Backend, Request, Result
from captionary.backends.http_clients import Answer, ConnectionFailed, RequestTimeout, resolve
from captionary.backends.http_loop import HttpLoop
from captionary.backends.json_body import DataUrl, json_body
from captionary.errors import ConfigError

if TYPE_CHECKING:
    from PIL.Image import Image

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


class OpenAIBackend(Backend):
    """Chat completions over HTTP (aiohttp or httpx), concurrent, with bounded retries."""

    name: ClassVar[str] = "openai"
    extra: ClassVar[str] = "openai"
    options: ClassVar[dict[str, Any]] = {
        "base_url": "https://api.openai.com/v1",
        "api_key_env": None,  # None: OPENAI_API_KEY, optional for a local server
        "concurrency": 8,
        "timeout": 120.0,  # seconds per attempt
        "max_retries": 5,
        "retry_backoff": 1.0,  # first wait in seconds; doubles per attempt (with jitter)
        "max_retry_wait": 60.0,  # no single wait longer than this, whatever Retry-After says
        "jpeg_quality": 90,
        "extra_body": {},  # merged into every request body (e.g. top_k for a vLLM server)
        "transport": "auto",  # auto (aiohttp when installed, else httpx) | aiohttp | httpx
    }
    cache_options: ClassVar[tuple[str, ...]] = ("jpeg_quality", "extra_body")
    default_max_image_edge: ClassVar[int | None] = 1024
    streams: ClassVar[bool] = True

    def __init__(self, config: Any):
        super().__init__(config)
        self._http: HttpLoop | None = None
        self._lock = threading.Lock()
        self.requests_sent = 0  # HTTP requests, retries included
        self.retries = 0

    # --- lifecycle ---------------------------------------------------------------------------------
    def preflight(self) -> None:
        resolve(self.settings["transport"])
        self._api_key()

    def load(self) -> None:
        with self._lock:  # the step may send its first requests (submit) while setup() loads
            if self._http is None:
                self._open()

    def _open(self) -> None:
        headers = {"Content-Type": "application/json"}
        if key := self._api_key():
            headers["Authorization"] = f"Bearer {key}"
        self._http = HttpLoop(
            base_url=str(self.settings["base_url"]).rstrip("/"),
            headers=headers,
            timeout=float(self.settings["timeout"]),
            concurrency=self.concurrency,
            transport=self.settings["transport"],
        )

    @property
    def concurrency(self) -> int:
        return max(1, int(self.settings["concurrency"]))

    def close(self) -> None:
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()

    def _api_key(self) -> str | None:
        env = self.settings["api_key_env"] or "OPENAI_API_KEY"
        key = os.environ.get(env)
        if key:
            return key
        if self.settings["api_key_env"] or not _on_own_network(str(self.settings["base_url"])):
            raise ConfigError(f"openai backend: the environment variable {env} (the API key) is not set")
        return None  # a server on this machine or the local network may need no key

    # --- generation --------------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> list[Result]:
        return [future.result() for future in [self.submit(request) for request in requests]]

    def submit(self, request: Request | Callable[[], Request]) -> Future[Result]:
        """The request queued for the next free one of `concurrency` connections."""
        http = self._http or self._loaded()
        return http.submit(self._complete(http, request))

    def _loaded(self) -> HttpLoop:
        self.load()
        assert self._http is not None
        return self._http

    async def _complete(self, http: HttpLoop, request: Request | Callable[[], Request]) -> Result:
        async with http.slots:  # slots are taken in the order requests were submitted
            if not isinstance(request, Request):
                request = request() if _ready(request) else await http.in_thread(request)
            return await self._complete_request(http, request)

    async def _complete_request(self, http: HttpLoop, request: Request) -> Result:
        """All `n` texts of one request (asking again for the rest when a server ignores `n`)."""
        try:
            if all(isinstance(image, str) for image in request.images):
                images = list(request.images)
            else:  # PIL images: encoded off the loop
                images = await http.in_thread(lambda: [self._data_url_of(image) for image in request.images])
        except OSError as exc:
            return Result(error=f"cannot encode the image: {exc}")
        result = Result()
        want = request.params.n
        for attempt in range(want):  # a server that ignores n answers one text per call
            missing = want - len(result.texts)
            if missing <= 0:
                break
            body = self._body(request, images, missing, attempt)
            answer = await self._post_async(http, body)
            if isinstance(answer, str):
                return Result(error=answer, prompt_tokens=result.prompt_tokens)
            try:
                texts, reasons, usage = _parse(answer)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                return Result(
                    error=f"malformed chat completion ({type(exc).__name__}: {exc}): {answer!r:.300}"
                )
            result.texts += texts[:missing]
            result.finish_reasons += reasons[:missing]
            result.prompt_tokens += usage.get("prompt_tokens", 0) or 0
            result.completion_tokens += usage.get("completion_tokens", 0) or 0
            if not texts:
                break
        return result

    def _body(self, request: Request, images: list[str], n: int, attempt: int) -> dict[str, Any]:
        params = request.params
        messages = request.messages()
        urls = iter(images)
        for message in messages:
            message["content"] = [
                {"type": "image_url", "image_url": {"url": next(urls)}} if part["type"] == "image" else part
                for part in message["content"]
            ]
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
        }
        if n > 1:
            body["n"] = n
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.seed is not None:
            body["seed"] = params.seed + attempt
        if params.stop:
            body["stop"] = list(params.stop)
        body.update(self.settings["extra_body"] or {})
        return body

    def _post(self, body: dict[str, Any], path: str = "/chat/completions") -> dict[str, Any] | str:
        """`_post_async` from a thread of one's own (waits for the answer)."""
        http = self._http or self._loaded()
        return http.call(self._post_async(http, body, path))

    async def _post_async(
        self, http: HttpLoop, body: dict[str, Any], path: str = "/chat/completions"
    ) -> dict[str, Any] | str:
        """The decoded JSON answer, or an error message once retries are spent."""
        retries = int(self.settings["max_retries"])
        for attempt in range(retries + 1):
            with self._lock:
                self.requests_sent += 1
            wait: float | None = None
            try:
                response = await http.client.post(path, json_body(body), JSON_HEADERS)
            except RequestTimeout:
                problem = f"timed out after {self.settings['timeout']} s"
            except ConnectionFailed as exc:
                problem = f"connection failed: {exc}"
            else:
                if response.status == 200:
                    try:
                        return response.json()
                    except ValueError:
                        return f"HTTP 200 with a body that is not JSON: {response.text[:200]!r}"
                problem = f"HTTP {response.status}: {_error_message(response)}"
                if response.status not in RETRY_STATUS:
                    return problem
                wait = _retry_after(response.headers.get("retry-after"))
            if attempt == retries:
                return f"{problem} (gave up after {retries + 1} attempts)"
            backoff = float(self.settings["retry_backoff"]) * 2**attempt * (1 + random.random() / 4)
            with self._lock:
                self.retries += 1
            await asyncio.sleep(min(float(self.settings["max_retry_wait"]), max(wait or 0.0, backoff)))
        raise AssertionError("unreachable")

    def prepare_image(self, image: Image) -> str:
        """The JPEG data URL (encoded in the step's decode threads, ahead of the request)."""
        return self._data_url(image)

    def _data_url_of(self, image: Image | str) -> str:
        return image if isinstance(image, str) else self._data_url(image)

    def _data_url(self, image: Image) -> str:
        edge = self.settings["max_image_edge"]
        if image.mode != "RGB":
            image = image.convert("RGB")
        if edge and max(image.size) > edge:
            image = image.copy()
            image.thumbnail((edge, edge))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(self.settings["jpeg_quality"]))
        return DataUrl("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))


JSON_HEADERS = {"content-type": "application/json"}


def _ready(build: Callable[[], Request]) -> bool:
    """Whether a request's builder says it will not block (then it runs on the loop: a round trip
    through a helper thread cost ~3 ms of a 0.1 s answer's slot at 64 requests in flight)."""
    ready = getattr(build, "ready", None)
    return bool(ready is not None and ready())


def _parse(answer: dict[str, Any]) -> tuple[list[str], list[str], dict[str, int]]:
    texts, reasons = [], []
    for choice in answer["choices"]:
        content = choice["message"]["content"]
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(part.get("text", "") for part in content)
        texts.append(str(content or ""))
        reasons.append(str(choice.get("finish_reason") or "stop"))
    return texts, reasons, answer.get("usage") or {}


def _on_own_network(url: str) -> bool:
    """localhost or a private address (a server of one's own, which may need no API key)."""
    host = urlparse(url).hostname or ""
    if host in LOCAL_HOSTS or host.endswith(".local"):
        return True
    try:
        return ipaddress.ip_address(host).is_private
    except ValueError:
        return False


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error_message(response: Answer) -> str:
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)[:300]
    except (ValueError, AttributeError):
        pass
    return response.text[:300] or response.reason
