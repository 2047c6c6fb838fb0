"""A raw asyncio TCP server on 127.0.0.1, in its own thread and event loop, for the test fakes.

The fakes that speak HTTP/1.1 by hand (:mod:`.faults`, :mod:`.proxy`, :mod:`.openai_upstream`)
share this lifecycle: ``with Fake() as fake`` starts the loop's thread and listens on a free
port; leaving the block closes the server, cancels every connection still open and waits for
them to end before the loop stops. A subclass writes :meth:`LoopbackServer.handle`, one call a
connection; the connection is closed when it returns. :func:`read_head` reads a request's head
the way those that parse it do.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

__all__ = ["Head", "LoopbackServer", "read_head"]

_Server = TypeVar("_Server", bound="LoopbackServer")


class LoopbackServer:
    """Listens on 127.0.0.1 while inside ``with``; each connection is served by :meth:`handle`."""

    #: What ends a connection quietly: its peer went away, or sent what cannot be read.
    quiet: tuple[type[Exception], ...] = (
        ConnectionError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
    )

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the server listens only inside its with block"
        return int(self._server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def __enter__(self: _Server) -> _Server:
        self._thread.start()
        start = asyncio.start_server(self._connection, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            # Let them finish (relays end, writers close) before the loop stops: a coroutine
            # left pending when its loop closes is reported as never finished.
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.handle(reader, writer)
        except self.quiet:
            pass
        except asyncio.CancelledError:
            # Stopped with the server: end as a finished task, which asyncio's stream callback
            # (Python 3.11) expects of every connection's task.
            pass
        finally:
            writer.close()


@dataclass
class Head:
    """A request's head: its request line split, its header lines as sent, and its fields by name."""

    method: str
    target: str
    lines: list[str]
    fields: dict[str, str]  # lower-cased names, stripped values; a repeated name keeps the last


async def read_head(reader: asyncio.StreamReader) -> Head:
    """The next request head on ``reader``; ValueError when its request line has no three parts."""
    request_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    fields = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
    return Head(method, target, lines, fields)
