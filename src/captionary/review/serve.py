"""ReviewServer: the review app on a socket, served by uvicorn in a background thread (during a run)
or in the foreground (`captionary serve`)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captionary.core.optional import require
from captionary.errors import ConfigError
from captionary.executors.review_host import set_review_host

if TYPE_CHECKING:
    import socket

# secrets and socket are imported when a server starts: `import captionary` registers this module.

DEFAULT_PORT = 8765


class ReviewServer:
    """Binds at once (so the URL is known), serves on `start()` or `serve_forever()`.

    host: 127.0.0.1 by default; `0.0.0.0` opens it to the LAN (to review on a phone). Every request
    needs the random token in `url` either way. port: None tries 8765 and falls back to a free port;
    0 picks a free port; any other number must be free. progress: the serving run's step counts.
    """

    def __init__(
        self,
        workspace: str | Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        progress: Callable[[], list[dict[str, Any]]] | None = None,
    ):
        require("fastapi", "review", user="the review app")
        require("uvicorn", "review", user="the review app")
        self.workspace = Path(workspace)
        self.progress = progress  # the run's per-step counts, when a run serves the app
        self.host = host
        import secrets

        self.token = secrets.token_urlsafe(24)
        self.sock = _bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.server: Any = None
        self.app: Any = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        shown = _lan_address() if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/?token={self.token}"

    def _server(self) -> Any:
        import uvicorn

        from captionary.review.guard import loopback_hosts
        from captionary.review.server import create_app

        hosts = loopback_hosts(self.host, self.port)  # on a loopback bind: DNS rebinding is refused
        self.app = create_app(self.workspace, self.token, self.progress, hosts)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        return self.server

    def start(self) -> ReviewServer:
        """Serve in a daemon thread; returns once the server accepts connections."""
        server = self._server()
        self.thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self.sock]}, name="captionary-review", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise ConfigError(f"the review server did not start on {self.host}:{self.port}")
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C or SIGTERM."""
        try:
            self._server().run(sockets=[self.sock])
        finally:
            self._release()

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self._release()

    def _release(self) -> None:
        if self.app is not None:
            self.app.state.close()
            self.app = None
        with contextlib.suppress(OSError):
            self.sock.close()


def _bind(host: str, port: int | None) -> socket.socket:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in [DEFAULT_PORT, 0] if port is None else [port]:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if port is None and candidate == DEFAULT_PORT:
                continue
            raise ConfigError(f"cannot serve the review app on {host}:{candidate}: {exc.strerror}") from None
        sock.listen(128)
        sock.set_inheritable(False)
        return sock
    raise AssertionError("unreachable")


def _lan_address() -> str:
    """This machine's address on the LAN (no packet is sent), for a URL a phone can open."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _start(workspace: Path, **options: Any) -> ReviewServer:
    return ReviewServer(workspace, **options).start()


set_review_host(_start)  # human stages serve this app (they cannot import it: it stands above them)
