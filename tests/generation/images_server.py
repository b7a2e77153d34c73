"""A real OpenAI-compatible images server on 127.0.0.1 for tests (a stand-in for a paid API).

`POST /v1/images/generations` answers in the documented shape: `{"created", "data": [{"b64_json"}],
"usage"}` with a PNG of the asked `size`, filled with a colour derived from the prompt (so a test can
check which prompt an image answers). A scripted misbehaviour per prompt marker ("429:<retry-after>",
"500", "400", "bad-b64") lets tests check retries and per-item failures. Every request is logged.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


def prompt_colour(prompt: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


@dataclass
class FakeImagesAPI:
    script: dict[str, list[str]] = field(default_factory=dict)
    hits: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)  # (path, body, status)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeImagesAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_action(self, prompt: str) -> str | None:
        with self.lock:
            for marker, actions in self.script.items():
                if marker in prompt and actions:
                    return actions.pop(0)
        return None

    def statuses(self, marker: str) -> list[int]:
        return [status for _, body, status in self.hits if marker in body.get("prompt", "")]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeImagesAPI

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/images/generations":
            return self._send(404, {"error": {"message": f"no route {self.path}"}}, body)
        action = self.fake.next_action(body["prompt"])
        if action and action.startswith("429"):
            return self._send(429, {"error": {"message": "Rate limit reached"}}, body, action.split(":")[1])
        if action == "500":
            return self._send(500, {"error": {"message": "The server had an error"}}, body)
        if action == "400":
            return self._send(
                400, {"error": {"message": "Your request was rejected by the safety system"}}, body
            )
        width, height = map(int, body.get("size", "1024x1024").split("x"))
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), prompt_colour(body["prompt"])).save(buffer, format="PNG")
        data = "%%%not base64" if action == "bad-b64" else base64.b64encode(buffer.getvalue()).decode()
        usage = {"input_tokens": len(body["prompt"].split()), "output_tokens": 272, "total_tokens": 0}
        self._send(200, {"created": 1, "data": [{"b64_json": data}], "usage": usage}, body)

    def _send(
        self, status: int, payload: dict[str, Any], body: dict[str, Any], retry_after: str | None = None
    ) -> None:
        with self.fake.lock:
            self.fake.hits.append((self.path, body, status))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)
