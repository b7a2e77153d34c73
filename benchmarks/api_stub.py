"""A stand-in OpenAI-compatible chat-completions server for benchmarks, in a process of its own.

asyncio, HTTP/1.1 with keep-alive, no framework: every `POST .../chat/completions` is answered
`latency` seconds after its last byte arrived (a timer, so any number of requests wait at once) with
`tokens` words.
`GET /stats` answers the requests served and the CPU seconds the server process has used, so a
benchmark can show the server is not the bottleneck (its CPU per request, its capacity per core).

    with ApiStub(latency=0.1, tokens=40) as stub:
        stub.url       # http://127.0.0.1:PORT/v1
        stub.stats()   # {"requests": N, "cpu_s": S}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request


def _answer(tokens: int) -> bytes:
    body = json.dumps(
        {
            "choices": [
                {"index": 0, "message": {"content": " ".join(["word"] * tokens)}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": tokens},
        }
    ).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection: requests parsed as their bytes arrive (no stream reader), each
    answered `latency` seconds after its last byte, by a timer: the server's own work per request
    stays a small share of the answer's time even when 64 requests arrive at once."""

    def __init__(self, server: _Server):
        self.server = server
        self.buffer = bytearray()
        self.body_left = -1  # bytes of the current request's body still to come; -1: reading a head
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.body_left > 0 and not self.buffer:  # the usual case: more of a body, nothing to parse
            if len(data) < self.body_left:
                self.body_left -= len(data)
                return
            data = data[self.body_left :]
            self.body_left = 0
            self._request_done()
        self.buffer += data
        while True:
            if self.body_left > 0:
                if len(self.buffer) < self.body_left:
                    self.body_left -= len(self.buffer)
                    self.buffer.clear()
                    return
                del self.buffer[: self.body_left]
                self.body_left = 0
                self._request_done()
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            self.body_left = _content_length(self.head)
            if self.body_left == 0:
                self._request_done()

    def _request_done(self) -> None:
        self.body_left = -1
        if self.head.startswith(b"GET /stats"):
            self.transport.write(self.server.stats())
        else:
            asyncio.get_running_loop().call_later(self.server.latency, self._answer)

    def _answer(self) -> None:
        if not self.transport.is_closing():
            self.server.served += 1
            self.transport.write(self.server.answer)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class _Server:
    def __init__(self, latency: float, tokens: int):
        self.latency = latency
        self.answer = _answer(tokens)
        self.served = 0

    def stats(self) -> bytes:
        body = json.dumps({"requests": self.served, "cpu_s": time.process_time()}).encode()
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def _serve(latency: float, tokens: int) -> None:
    state = _Server(latency, tokens)
    server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(state), "127.0.0.1", 0, backlog=1024
    )
    print(server.sockets[0].getsockname()[1], flush=True)  # the port, for the parent
    async with server:
        await server.serve_forever()


class ApiStub:
    """The server in a child process (so its work never competes for the benchmark's GIL)."""

    def __init__(self, latency: float = 0.1, tokens: int = 40):
        command = [sys.executable, __file__, "--latency", str(latency), "--tokens", str(tokens)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        if not port.isdigit():
            self.process.kill()
            raise RuntimeError("the API stub did not start")
        self.url = f"http://127.0.0.1:{port}/v1"

    def stats(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/stats", timeout=10) as answer:
            return json.loads(answer.read())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> ApiStub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--tokens", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(_serve(args.latency, args.tokens))
