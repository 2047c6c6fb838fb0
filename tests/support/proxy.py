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
from dataclasses import dataclass
from urllib.parse import urlsplit

from .loopback import LoopbackServer, read_head

__all__ = ["Proxied", "TestProxy"]


@dataclass
class Proxied:
    """One request the proxy was asked to carry."""

    method: str
    target: str
    authorization: str | None


class TestProxy(LoopbackServer):
    """An HTTP proxy on 127.0.0.1, in its own thread and event loop."""

    __test__ = False  # not a test class, whatever its name
    # A request line or Content-Length that does not parse ends the connection like a lost peer.
    quiet = (*LoopbackServer.quiet, ValueError)

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.requests: list[Proxied] = []
        self._wanted = None
        if credentials is not None:
            pair = f"{credentials[0]}:{credentials[1]}".encode()
            self._wanted = "Basic " + base64.b64encode(pair).decode()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        method, target = head.method, head.target
        authorization = head.fields.get("proxy-authorization")
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
            body = await reader.readexactly(int(head.fields.get("content-length", "0")))
            await self._forward(method, target, head.lines, body, writer)

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
