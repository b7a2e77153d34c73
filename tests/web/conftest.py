"""Fixtures of the web-source tests: a local image board per test (127.0.0.1), shut down after it."""

from __future__ import annotations

import pytest
from booru_server import Board, serve


@pytest.fixture
def board_server():
    servers = []

    def start(board: Board) -> str:
        httpd, url = serve(board)
        servers.append(httpd)
        return url

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
