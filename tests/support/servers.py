"""Real servers on loopback for the tests, and the small waits that go with them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

__all__ = ["free_port", "health", "serve", "wait_until"]


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


# One client for polling: a fresh httpx client per poll would cost more than the poll itself.
_http = httpx.Client(timeout=10)


def health(url: str) -> dict[str, int]:
    """The integer counters of a getgpt server's ``/healthz``."""
    return {k: v for k, v in _http.get(url + "healthz").json().items() if isinstance(v, int)}


def wait_until(condition: Callable[[], bool], limit: float) -> float:
    """Seconds until ``condition`` held; fails if it did not within ``limit``."""
    start = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - start
        assert elapsed < limit, f"condition still false after {elapsed:.2f} s"
        time.sleep(0.01)
    return time.monotonic() - start
