"""A small HTTP forward proxy on loopback, for the tests of the clients' proxy support.

It answers what a real forward proxy does, and records what it was asked:

- an absolute-form request (``GET http://host:port/path HTTP/1.1``) is forwarded to that origin in
  origin form with ``Connection: close``, and the origin's answer relayed back until it closes;
- ``CONNECT host:port`` opens a tunnel: ``200`` then bytes relayed both ways until either side
  closes (TLS passes through untouched);
- with ``credentials`` set, a request without that ``Proxy-Authorization`` gets ``407``.

One request per client connection: the client is told ``Connection: close`` by the origin's own
reply (and a tunnel ends with its connection).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["Proxied", "TestProxy"]


@dataclass
class Proxied:
    """One request the proxy was asked to carry."""

    method: str
    target: str
    authorization: str | None


class TestProxy:
    """An HTTP proxy on 127.0.0.1, in its own thread and event loop."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.requests: list[Proxied] = []
        self._wanted = None
        if credentials is not None:
            pair = f"{credentials[0]}:{credentials[1]}".encode()
            self._wanted = "Basic " + base64.b64encode(pair).decode()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def __enter__(self) -> TestProxy:
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", 0)
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            fields = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
            authorization = fields.get("proxy-authorization")
            self.requests.append(Proxied(method, target, authorization))
            if self._wanted is not None and authorization != self._wanted:
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                await writer.drain()
                return
            if method == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                body = await reader.readexactly(int(fields.get("content-length", "0")))
                await self._forward(method, target, lines[1:], body, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            # Stopped with the server: end as a finished task, which asyncio's stream callback
            # (Python 3.11) expects of every connection's task.
            pass
        finally:
            writer.close()

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
        finally:
            up_writer.close()

    async def _forward(
        self, method: str, target: str, lines: list[str], body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kept = [
            line
            for line in lines
            if line and line.partition(":")[0].strip().lower() not in ("proxy-authorization", "connection")
        ]
        head = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"]) + "\r\n\r\n"
        up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            up_writer.write(head.encode("latin-1") + body)
            await up_writer.drain()
            await _relay(up_reader, writer)
        finally:
            up_writer.close()


async def _relay(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copies ``source`` into ``sink`` until ``source`` ends, then ends ``sink``'s writing side."""
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
