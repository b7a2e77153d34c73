"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests (a stand-in for a paid API).

It decodes every image it receives and answers from what it saw, so a test can check that the right
pixels arrived: "a 512x384 image (brown) for dog/00". A scripted misbehaviour per prompt marker
(429 with Retry-After, 500, a slow answer, a truncated answer) lets tests check retries, timeouts and
finish reasons. Every request is logged with its arrival time; the peak of simultaneous requests is
kept.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageStat


@dataclass
class Hit:
    at: float
    prompt: str
    body: dict[str, Any]
    status: int = 200


@dataclass
class FakeOpenAI:
    """`script[marker]` is a list of actions for requests whose prompt contains `marker`, used in
    order (then plain answers): "429:<retry-after>", "500", "slow:<seconds>", "bad-json", "drop" (the
    answer's head and half its body, then the connection closed), "empty-502" (no body at all)."""

    script: dict[str, list[str]] = field(default_factory=dict)
    ignore_n: bool = False  # answer one choice whatever n is (as llama.cpp does)
    delay: float = 0.0  # every answer takes this long (to observe concurrency)
    api_key: str | None = None  # when set, requests must carry it
    prefix: str = ""  # put before every answer (e.g. "The image shows ")
    hold_after: int | None = None  # requests after this many wait until `release` is set
    tls: tuple[str, str] | None = None  # (certificate, key) files: serve https
    hits: list[Hit] = field(default_factory=list)
    active: int = 0
    peak: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hits_for(self, marker: str) -> list[Hit]:
        return [h for h in self.hits if marker in h.prompt]

    def next_action(self, prompt: str) -> str | None:
        with self.lock:
            for marker, actions in self.script.items():
                if marker in prompt and actions:
                    return actions.pop(0)
        return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        fake = self.fake
        with fake.lock:
            fake.active += 1
            fake.peak = max(fake.peak, fake.active)
        self.counted = True
        try:
            self._answer(fake)
        finally:
            self._uncount()

    def _uncount(self) -> None:
        """The request stops counting as active just before its answer is written: once the client has
        read it, it may rightly send the next request before this thread gets to run again."""
        if self.counted:
            self.counted = False
            with self.fake.lock:
                self.fake.active -= 1

    def _answer(self, fake: FakeOpenAI) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts, images = _content(body["messages"])
        prompt = " ".join(texts)
        hit = Hit(time.monotonic(), prompt, body, status=0)  # 0: not answered (yet)
        with fake.lock:
            fake.hits.append(hit)
            held = fake.hold_after is not None and len(fake.hits) > fake.hold_after
        if held:
            fake.release.wait()
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}}, hit)
        if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            return self._send(401, {"error": {"message": "Incorrect API key provided"}}, hit)
        action = fake.next_action(prompt)
        if fake.delay:
            time.sleep(fake.delay)
        if action and action.startswith("429"):
            return self._send(429, {"error": {"message": "Rate limit reached"}}, hit, action.split(":")[1])
        if action == "500":
            return self._send(500, {"error": {"message": "The server had an error"}}, hit)
        if action == "400":
            return self._send(400, {"error": {"message": "Invalid image"}}, hit)
        if action and action.startswith("slow"):
            time.sleep(float(action.split(":")[1]))
        if action == "bad-json":
            return self._send_raw(200, b"<html>gateway</html>", hit)
        if action == "empty-502":
            return self._send_raw(502, b"", hit)
        if action == "drop":
            return self._drop(hit)
        described = "; ".join(_describe(image) for image in images) or "no image"
        words = f"{fake.prefix}{described} for: {prompt}".split()
        n = 1 if fake.ignore_n else body.get("n", 1)
        choices = []
        for index in range(n):
            answer = words + (
                [f"(variant {index + (body.get('seed') or 0)})"] if n > 1 or body.get("seed") else []
            )
            cut = len(answer) > body["max_tokens"]
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": " ".join(answer[: body["max_tokens"]])},
                    "finish_reason": "length" if cut else "stop",
                }
            )
        completion = sum(len(c["message"]["content"].split()) for c in choices)
        usage = {"prompt_tokens": len(prompt.split()) + 85 * len(images), "completion_tokens": completion}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._send(
            200, {"id": "chatcmpl-test", "object": "chat.completion", "choices": choices, "usage": usage}, hit
        )

    def _drop(self, hit: Hit) -> None:
        hit.status = -1
        self._uncount()
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b'{"choices": [')
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, payload: dict[str, Any], hit: Hit, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after else {}
        self._send_raw(status, json.dumps(payload).encode(), hit, headers)

    def _send_raw(self, status: int, data: bytes, hit: Hit, headers: dict[str, str] | None = None) -> None:
        hit.status = status
        self._uncount()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            pass


def _content(messages: list[dict[str, Any]]) -> tuple[list[str], list[Image.Image]]:
    texts, images = [], []
    for message in messages:
        content = message["content"]
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if part["type"] == "text":
                texts.append(part["text"])
            elif part["type"] == "image_url":
                url = part["image_url"]["url"]
                header, data = url.split(",", 1)
                assert header == "data:image/jpeg;base64", header
                images.append(Image.open(io.BytesIO(base64.b64decode(data))))
    return texts, images


def _describe(image: Image.Image) -> str:
    red, green, blue = ImageStat.Stat(image.convert("RGB")).mean
    return f"a {image.width}x{image.height} {image.format} image (mean {red:.0f},{green:.0f},{blue:.0f})"
