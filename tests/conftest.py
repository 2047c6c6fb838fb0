"""Shared fixtures: real servers on loopback ports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

import getgpt
from getgpt._senders import lean_endpoint

from .scripted import Live


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server in a thread; yield its base URL (ending in ``/``)."""
    port = free_port()
    scheme = "https" if options.get("ssl_certfile") else "http"
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"{scheme}://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live() -> Iterator[tuple[Live, str]]:
    """The scripted server of tests/scripted.py on a loopback port."""
    script = Live()
    app = Starlette(routes=[Route("/api/chat/stream", script.chat, methods=["POST"])])
    with serve(app) as url:
        yield script, url


@pytest.fixture(params=["lean", "httpx"])
def via(request: pytest.FixtureRequest) -> Any:
    """Makes clients that send one of the two ways: the lean HTTP/1.1 path, or through httpx.

    ``via(getgpt.Client, url, **options)``; the same test must pass both ways.
    """

    def make(kind: type[Any], url: str, **options: Any) -> Any:
        if request.param == "httpx":
            timeout = options.get("timeout", getgpt.DEFAULT_TIMEOUT)
            asynchronous = issubclass(kind, getgpt.AsyncClient)
            options["http_client"] = (httpx.AsyncClient if asynchronous else httpx.Client)(timeout=timeout)
        assert lean_endpoint(url, {}) is not None  # the URL itself never forces httpx here
        return kind(url, **options)

    return make
