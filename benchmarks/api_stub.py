"""A stand-in OpenAI-compatible chat-completions server for benchmarks, in a process of its own.

asyncio, HTTP/1.1 with keep-alive, no framework: every `POST .../chat/completions` is answered after
`latency` seconds (an `asyncio.sleep`, so any number of requests wait at once) with `tokens` words.
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


async def _serve(latency: float, tokens: int) -> None:
    answer = _answer(tokens)
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"GET /stats"):
                    body = json.dumps({"requests": served, "cpu_s": time.process_time()}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                else:
                    await asyncio.sleep(latency)
                    served += 1
                    writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
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
