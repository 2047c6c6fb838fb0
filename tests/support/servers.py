"""Real servers on loopback for the tests: an ASGI app under uvicorn in a thread, free ports,
``/healthz`` counters. (``getgpt serve`` as a process: :mod:`.serve_process`; waiting:
:mod:`.waiting`, whose :func:`wait_until` is re-exported here for the tests that import it so.)"""

from __future__ import annotations

import asyncio
import contextlib
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


class _Server(uvicorn.Server):
    """uvicorn's server, which stops as soon as it is told to.

    uvicorn looks at ``should_exit`` every 0.1 s, then pauses 0.1 s before it waits, looking
    every 0.1 s, for the connections to close: ~0.2 s a stop, of nothing but waiting, paid by
    every test that starts a server here. This one is woken by :meth:`stop` and looks every 5 ms,
    doing the same steps in the same order (measured: a stop 0.19 -> 0.01 s).
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)  # uvicorn's tick, cut short by stop()

    def stop(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's Server.shutdown, less its fixed 0.1 s pause and with 5 ms looks, not 0.1 s ones.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._ended(), timeout=self.config.timeout_graceful_shutdown)
        except asyncio.TimeoutError:
            for task in self.server_state.tasks:
                task.cancel()
        await self.lifespan.shutdown()

    async def _ended(self) -> None:
        while self.server_state.connections or self.server_state.tasks:
            await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()


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
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 10, "uvicorn started")
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"{scheme}://127.0.0.1:{port}/"
    finally:
        server.stop()
        thread.join(10)
        listener.close()


# One client for polling: a fresh httpx client per poll would cost more than the poll itself.
_http = httpx.Client(timeout=10, verify=SSL_CONTEXT)


def health(url: str) -> dict[str, int]:
    """The integer counters of a getgpt server's ``/healthz``."""
    return {k: v for k, v in _http.get(url + "healthz").json().items() if isinstance(v, int)}
