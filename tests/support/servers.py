"""Real servers on loopback for the tests: an ASGI app under uvicorn in a thread, free ports,
``/healthz`` counters. (``getgpt serve`` as a process: :mod:`.serve_process`; waiting:
:mod:`.waiting`, whose :func:`wait_until` is re-exported here for the tests that import it so.)"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from .processes import SSL_CONTEXT
from .waiting import wait_until

__all__ = ["free_port", "health", "serve", "wait_until"]


def free_port() -> int:
    """A port nothing listens on now, for a server in another process that is told its port.

    Another process may take it before that server binds it: rare (the kernel hands out ports
    from a range of ~28,000), and the server then fails to start with a clear error.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server in a thread; yield its base URL (ending in ``/``).

    The listening socket is bound here and handed to uvicorn, so no other process (another xdist
    worker) can take its port between the choice and the bind, as with :func:`free_port`.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    scheme = "https" if options.get("ssl_certfile") else "http"
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 10, "uvicorn started")
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"{scheme}://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


# One client for polling: a fresh httpx client per poll would cost more than the poll itself.
_http = httpx.Client(timeout=10, verify=SSL_CONTEXT)


def health(url: str) -> dict[str, int]:
    """The integer counters of a getgpt server's ``/healthz``."""
    return {k: v for k, v in _http.get(url + "healthz").json().items() if isinstance(v, int)}
