"""A lean HTTP/1.1 client for one endpoint: one write per request, a C parser for the reply.

The clients send one kind of request to one URL, again and again. Through httpx every request
pays for a general-purpose stack -- request and URL objects, cookies, auth and event hooks, the
connection pool's bookkeeping, h11's pure-Python parser, two socket writes -- which costs several
times what the request itself does on a local network, and h11 turns every HTTP chunk of a
stream into its own event. Here the request head is serialised once per endpoint, a request is
one write, and the reply is parsed by httptools (llhttp, the parser of Node.js and uvicorn), which
de-chunks in C and hands over the body of a whole network read at once.

:class:`ReplyReader` is sans-IO and shared: :class:`Pool` drives it from blocking sockets,
:class:`AsyncPool` from an asyncio protocol. Failures raise httpx's own exception classes, so the
clients map one set of errors whichever way a request went. :func:`endpoint` returns None for
what this module leaves to httpx: proxies, credentials in the URL, non-ASCII hosts or paths.
"""

from __future__ import annotations

import asyncio
import re
import select
import socket
import ssl
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import httpx

from ._senders import KEEPALIVE

__all__ = [
    "AsyncPool",
    "AsyncResponse",
    "Endpoint",
    "Pool",
    "ReplyReader",
    "Response",
    "endpoint",
]

_READ_SIZE = 65536
# Past this much unread body the asyncio protocol stops reading, so a slow consumer holds the
# server back through TCP rather than buffering the whole reply in memory.
_PAUSE_AT = 1 << 20
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_DECOMPRESSORS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_NO_RESPONSE = "Server disconnected without sending a response."
_CUT_SHORT = "peer closed connection without sending complete message body"


@dataclass(frozen=True)
class Endpoint:
    """Where requests go, with everything of a request except its body serialised once."""

    scheme: str
    host: str
    port: int
    #: The request up to and including ``Content-Length: ``.
    prefix: bytes

    def request(self, body: bytes) -> bytes:
        """The whole request for ``body``: one write."""
        return b"%s%d\r\n\r\n%s" % (self.prefix, len(body), body)


def endpoint(url: str, headers: Mapping[str, str]) -> Endpoint | None:
    """The endpoint for POSTs to ``url``, or None when httpx must carry them.

    Raises ValueError for a header that could not be sent as given (a CR or LF in a value, a
    name that is not a token), as httpx would.
    """
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise ValueError(f"invalid HTTP header {name!r}: {value!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or parts.username is not None or parts.password is not None:
        return None
    host = parts.hostname
    if not host or not url.isascii() or _proxied(scheme, host):
        return None
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = f"[{host}]" if ":" in host else host
    if port != (443 if scheme == "https" else 80):
        authority += f":{port}"
    # Identity unless told otherwise: a compressed stream must be decoded before it can be parsed.
    fields = {"accept": ("Accept", "*/*"), "accept-encoding": ("Accept-Encoding", "identity")}
    fields.update((name.lower(), (name, value)) for name, value in headers.items())
    for own in ("host", "content-length", "transfer-encoding", "connection"):
        fields.pop(own, None)
    lines = [f"POST {target} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in fields.values()]
    prefix = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
    return Endpoint(scheme, host, port, prefix)


def _proxied(scheme: str, host: str) -> bool:
    # httpx honours the proxy environment variables; a request they route goes through httpx.
    proxies = urllib.request.getproxies()
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


class ReplyReader:
    """The reply to one request, parsed as bytes arrive (sans-IO).

    :meth:`feed` takes what the network gave; :meth:`take` returns the body received since the
    last call, de-chunked and decoded; :meth:`eof` is called when the peer closes. Interim 1xx
    replies are skipped.
    """

    def __init__(self) -> None:
        self._body: list[bytes] = []
        # httptools calls the bound C method directly: one HTTP chunk costs no Python frame.
        # It looks its callbacks up once, when the parser is made, so this comes first.
        self.on_body = self._body.append
        self._decompressor: Any = None
        self._refusal: httpx.DecodingError | None = None
        self.status_code = 0
        self.reason_phrase = ""
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.complete = False
        #: False once the connection cannot carry another request.
        self.keep_alive = False
        #: Set by the driver when the request could not be written whole.
        self.broken_request = False
        self._framed = False
        # Where the reply's body ends in _body once it is complete: what follows is another
        # message's, which the parser reports through the same callback.
        self._end: int | None = None
        #: Bytes fed since the body was last taken.
        self.unread = 0
        self._parser = httptools.HttpResponseParser(self)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the reply: the connection is out of step
            self.keep_alive = False
            return
        self.headers = {}
        self.reason_phrase = ""

    def on_status(self, status: bytes) -> None:
        self.reason_phrase += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self._parser.get_status_code()
        if status < 200:
            return
        self.status_code = status
        self.head_done = True
        headers = self.headers
        self._framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
        coding = headers.get("content-encoding", "identity").strip().lower()
        if coding in _DECOMPRESSORS:
            self._decompressor = zlib.decompressobj(_DECOMPRESSORS[coding])
        elif coding not in ("identity", ""):
            # Raised by feed(): httptools would hide an exception raised here behind its own.
            self._refusal = httpx.DecodingError(f"unsupported content-encoding {coding!r}")

    def on_message_complete(self) -> None:
        if self.complete or not self.head_done:
            return  # an interim reply (100 Continue, 103 Early Hints) ended; the real one follows
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive() and not self.broken_request
        self._end = len(self._body)

    # the driver's side

    def feed(self, data: bytes | memoryview) -> None:
        self.unread += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise httpx.RemoteProtocolError("the server switched protocols") from None
        except httptools.HttpParserError as exc:
            raise httpx.RemoteProtocolError(f"malformed HTTP reply: {exc}") from None
        if self._refusal is not None:
            raise self._refusal

    def eof(self) -> None:
        """The peer closed the connection; raises unless the reply is whole."""
        self.keep_alive = False
        if self.complete:
            return
        if not self.head_done:
            raise httpx.RemoteProtocolError(_NO_RESPONSE)
        if self._framed:
            raise httpx.RemoteProtocolError(_CUT_SHORT)
        self.complete = True  # a body delimited by the end of the connection

    def take(self) -> bytes:
        pieces = self._body
        self.unread = 0
        if self._end is not None:
            del pieces[self._end :]
            self._end = 0
        if not pieces:
            return b""
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        if self._decompressor is not None:
            try:
                data = self._decompressor.decompress(data)
            except zlib.error as exc:
                raise httpx.DecodingError(f"bad compressed body: {exc}") from None
        return data


def _expired(since: float, keepalive: float) -> bool:
    return time.monotonic() - since > keepalive


class _PoolBase:
    """Settings shared by both pools."""

    def __init__(
        self,
        where: Endpoint,
        timeout: httpx.Timeout,
        verify: bool | ssl.SSLContext = True,
        max_idle: int = 20,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self.endpoint = where
        self.timeout = timeout
        self.max_idle = max_idle
        self.keepalive = keepalive
        self._ssl: ssl.SSLContext | None = None
        if where.scheme == "https":
            if isinstance(verify, ssl.SSLContext):
                self._ssl = verify  # the caller's, as given: not ours to change
            else:
                self._ssl = httpx.create_ssl_context(verify=verify)
                self._ssl.set_alpn_protocols(["http/1.1"])


# -- blocking sockets -----------------------------------------------------------------------


class Response:
    """A reply whose head has arrived; its body is read with :meth:`reads`."""

    def __init__(self, pool: Pool, sock: socket.socket, reader: ReplyReader, buffer: memoryview) -> None:
        self._pool = pool
        self._sock: socket.socket | None = sock
        self._reader = reader
        self._buffer = buffer
        self.status_code = reader.status_code
        self.reason_phrase = reader.reason_phrase
        self.headers = reader.headers

    def reads(self) -> Iterator[bytes]:
        """The body, one piece per network read (empty reads skipped)."""
        reader, sock, buffer = self._reader, self._sock, self._buffer
        assert sock is not None, "the reply was closed"
        data = reader.take()
        if data:
            yield data
        while not reader.complete:
            _pull(sock, reader, buffer)
            data = reader.take()
            if data:
                yield data

    def read(self) -> bytes:
        return b"".join(self.reads())

    def close(self) -> None:
        """Gives the connection back if the reply was read to its end, else closes it."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._reader.complete and self._reader.keep_alive:
            self._pool._release(sock)
        else:
            sock.close()


def _answer_anyway(write_error: httpx.WriteError, pull: Callable[[], None], reader: ReplyReader) -> None:
    """After a failed write, the reply's head if the server sent one; else ``write_error``.

    A server may refuse a request early (413: too large) and close the connection before reading
    all of it: its answer says more than the broken write does.
    """
    try:
        while not reader.head_done:
            pull()
    except httpx.TransportError:
        raise write_error from None


def _pull(sock: socket.socket, reader: ReplyReader, buffer: memoryview) -> None:
    """One read from ``sock`` into ``reader``."""
    # Into a buffer kept for the whole reply: recv() would allocate 64 KB per read and shrink
    # it, and the heap fragments around the text the client keeps (bench/memory.py).
    try:
        size = sock.recv_into(buffer)
    except TimeoutError as exc:  # socket.timeout is TimeoutError from 3.10
        raise httpx.ReadTimeout(str(exc) or "timed out") from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
    if size:
        reader.feed(buffer[:size])
    else:
        reader.eof()


class Pool:
    """Keep-alive connections to one endpoint; thread-safe as list append and pop are."""

    def __init__(self, where: Endpoint, timeout: httpx.Timeout, **options: Any) -> None:
        self._base = _PoolBase(where, timeout, **options)
        self._idle: list[tuple[socket.socket, float]] = []
        self._closed = False

    def send(self, body: bytes) -> Response:
        """POSTs ``body`` and returns once the reply's head has arrived."""
        sock = self._acquire()
        reader = ReplyReader()
        buffer = memoryview(bytearray(_READ_SIZE))
        try:
            try:
                self._write(sock, self._base.endpoint.request(body))
            except httpx.WriteError as exc:
                reader.broken_request = True
                _answer_anyway(exc, lambda: _pull(sock, reader, buffer), reader)
            while not reader.head_done:
                _pull(sock, reader, buffer)
        except BaseException:
            sock.close()
            raise
        return Response(self, sock, reader, buffer)

    def _acquire(self) -> socket.socket:
        idle, base = self._idle, self._base
        while idle:
            try:
                sock, since = idle.pop()
            except IndexError:  # another thread took the last one
                break
            # The server may have closed it while idle: any readable byte (or EOF) means so.
            if _expired(since, base.keepalive) or select.select([sock], [], [], 0)[0]:
                sock.close()
                continue
            return sock
        return self._connect()

    def _connect(self) -> socket.socket:
        base, where = self._base, self._base.endpoint
        timeout = base.timeout
        try:
            sock = socket.create_connection((where.host, where.port), timeout=timeout.connect)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if base._ssl is not None:
                try:
                    sock = base._ssl.wrap_socket(sock, server_hostname=where.host)
                except TimeoutError as exc:
                    raise httpx.ConnectTimeout(str(exc) or "timed out") from exc
                except OSError as exc:  # ssl.SSLError included: a bad certificate, a failed handshake
                    raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
            sock.settimeout(timeout.read)
        except BaseException:
            sock.close()
            raise
        return sock

    def _write(self, sock: socket.socket, data: bytes) -> None:
        timeout = self._base.timeout
        sock.settimeout(timeout.write)
        try:
            sock.sendall(data)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
        sock.settimeout(timeout.read)

    def _release(self, sock: socket.socket) -> None:
        if self._closed or len(self._idle) >= self._base.max_idle:
            sock.close()
        else:
            self._idle.append((sock, time.monotonic()))

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for sock, _ in idle:
            sock.close()


# -- asyncio ---------------------------------------------------------------------------------


class _Protocol(asyncio.Protocol):
    """One connection: feeds what arrives to the current reply's reader and wakes its reader."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader: ReplyReader | None = None
        self.error: BaseException | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the methods but not the base class: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is None or self.error is not None:
            self.closed = True  # bytes nobody asked for: the connection is out of step
            return
        try:
            reader.feed(data)
        except Exception as exc:
            self.error = exc
        if reader.unread > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reader = self.reader
        if reader is not None and self.error is None:
            try:
                reader.eof()
            except Exception as cut:
                # A reset says more than "closed early" does.
                self.error = cut if exc is None else httpx.ReadError(str(exc) or type(exc).__name__)
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_exception(httpx.WriteError(str(exc) if exc else "connection lost"))
        self._wake()

    def pause_writing(self) -> None:
        self._drained = self.loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Until more has arrived, the connection closed, or ``timeout`` passed (ReadTimeout)."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        waiter = self._waiter = self.loop.create_future()
        if timeout is None:
            await waiter
            return
        timer = self.loop.call_later(timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    async def drain(self, timeout: float | None) -> None:
        drained = self._drained
        if drained is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(drained), timeout)
        except asyncio.TimeoutError:
            raise httpx.WriteTimeout("timed out writing the request") from None


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("timed out waiting for the server"))


class AsyncResponse:
    """A reply whose head has arrived; its body is read with :meth:`reads`."""

    def __init__(self, pool: AsyncPool, conn: _Protocol, reader: ReplyReader) -> None:
        self._pool = pool
        self._conn: _Protocol | None = conn
        self._reader = reader
        self.status_code = reader.status_code
        self.reason_phrase = reader.reason_phrase
        self.headers = reader.headers

    async def reads(self) -> AsyncIterator[bytes]:
        """The body, one piece per wake-up (empty ones skipped)."""
        reader, conn = self._reader, self._conn
        assert conn is not None, "the reply was closed"
        timeout = self._pool._base.timeout.read
        while True:
            data = reader.take()
            if data:
                yield data
            elif conn.error is not None:
                raise conn.error
            elif reader.complete:
                return
            else:
                await conn.wait(timeout)

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.reads()])

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.reader = None
        if self._reader.complete and self._reader.keep_alive and conn.error is None:
            self._pool._release(conn)
        elif conn.transport is not None:
            conn.transport.close()


class AsyncPool:
    """Keep-alive connections to one endpoint, for the event loop that opened them."""

    def __init__(self, where: Endpoint, timeout: httpx.Timeout, **options: Any) -> None:
        self._base = _PoolBase(where, timeout, **options)
        self._idle: list[_Protocol] = []
        self._closed = False

    async def send(self, body: bytes) -> AsyncResponse:
        """POSTs ``body`` and returns once the reply's head has arrived."""
        conn = await self._acquire()
        reader = conn.reader = ReplyReader()
        transport = conn.transport
        assert transport is not None
        write_error: httpx.WriteError | None = None
        try:
            transport.write(self._base.endpoint.request(body))
            try:
                await conn.drain(self._base.timeout.write)
            except httpx.WriteError as exc:
                reader.broken_request = True
                write_error = exc  # the server may have answered early (a 413): look first
            while not reader.head_done:
                if conn.error is not None:
                    raise write_error or conn.error
                await conn.wait(self._base.timeout.read)
        except BaseException:
            conn.reader = None
            transport.close()
            raise
        return AsyncResponse(self, conn, reader)

    async def _acquire(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        keepalive = self._base.keepalive
        while self._idle:
            conn = self._idle.pop()
            if conn.loop is not loop:
                continue  # opened under another event loop (an earlier asyncio.run): unusable here
            if conn.closed or _expired(conn.idle_since, keepalive) or conn.transport is None:
                if conn.transport is not None:
                    conn.transport.close()
                continue
            return conn
        return await self._connect(loop)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        base, where = self._base, self._base.endpoint
        timeout = base.timeout.connect
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Protocol(loop),
                    where.host,
                    where.port,
                    ssl=base._ssl,
                    server_hostname=where.host if base._ssl is not None else None,
                ),
                timeout,
            )
        except asyncio.TimeoutError as exc:
            raise httpx.ConnectTimeout("timed out connecting") from exc
        except OSError as exc:  # ssl.SSLError included
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        transport = conn.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _release(self, conn: _Protocol) -> None:
        if self._closed or conn.closed or len(self._idle) >= self._base.max_idle:
            if conn.transport is not None:
                conn.transport.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.transport is not None and not conn.loop.is_closed():
                conn.transport.close()
