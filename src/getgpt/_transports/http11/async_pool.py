"""Keep-alive connections to one endpoint on an asyncio event loop (uvloop included): the lean
path of :class:`getgpt.AsyncClient` and of the server's forwarding backends."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import AsyncIterator
from typing import cast

from ...protocol.errors import ConnectError, GetGptError, Timeout, TransportError
from ..base import Request
from ..bounds import Bound, head_bound, reply_bound, within
from .origin import Endpoint
from .pool_base import PoolBase, WriteFailed, detail, via
from .reader import ResponseReader, check_tunnel

__all__ = ["AsyncPool", "AsyncPooledResponse"]

# Past this much unread body the connection stops reading, so a slow consumer holds the server
# back through TCP rather than buffering the whole reply in memory; and a read takes at most
# _READ bytes (uvloop's own reads take up to 256 KB). A server's forwarded stream whose client
# reads nothing holds both: 1 MiB and 256 KB reads made it 3.1 MiB a stream, these 0.6 MiB
# (200 streams, tests/chaos/test_unread_replies.py).
_PAUSE_AT = 64 << 10
_READ = 64 << 10


def _has_news(transport: asyncio.BaseTransport | None) -> bool:
    """Whether an idle connection's socket has something to read: the server closed it (or sent
    what nobody asked for) and the loop has not run its callback yet. Found when a request was
    sent on a connection closed a moment before, in the same turn of the loop that resumed the
    caller (tests/client/test_lean_path.py); poll, not select, which fails past descriptor 1023."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    if not hasattr(select, "poll"):  # Windows: select takes sockets of any number there
        return bool(select.select([sock], [], [], 0)[0])
    watch = select.poll()
    watch.register(sock.fileno(), select.POLLIN)
    return bool(watch.poll(0))


class _Connection(asyncio.BufferedProtocol):
    """One connection: feeds what arrives to the current reply's reader and wakes its reader."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader: ResponseReader | None = None
        self.error: BaseException | None = None
        self.closed = False
        #: Why the connection was lost (None: closed cleanly, or not lost).
        self.lost: BaseException | None = None
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self._buf: memoryview | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the methods but not the base class: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    # A buffered protocol: the loop reads into the connection's own buffer, whose size bounds a
    # read; the parser copies the body out of it at once.
    def get_buffer(self, sizehint: int) -> memoryview:
        buf = self._buf
        if buf is None:
            buf = self._buf = memoryview(bytearray(_READ))
        return buf

    def buffer_updated(self, nbytes: int) -> None:
        assert self._buf is not None
        self.data_received(self._buf[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
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
        self.lost = exc
        reader = self.reader
        if reader is not None and self.error is None:
            try:
                reader.eof()
            except Exception as cut:
                # A reset says more than "closed early" does.
                broke = f"connection to {reader.url} broke"
                self.error = cut if exc is None else TransportError(f"{broke}: {detail(exc)}")
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            url = reader.url if reader is not None else "the server"
            why = detail(exc) if exc else "connection lost"
            drained.set_exception(WriteFailed(f"connection to {url} broke while sending the request: {why}"))
        self._wake()

    def pause_writing(self) -> None:
        self._drained = self.loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    @property
    def gone(self) -> bool:
        """Closed, or its transport closing: uvloop closes a transport on a reset at once and
        calls connection_lost on a later turn of the loop, so ``closed`` alone can lag."""
        transport = self.transport
        return self.closed or transport is None or transport.is_closing()

    def refuse_if_lost(self, url: str) -> None:
        """A :class:`ConnectError` if the connection is gone before a request is written on it.

        A new connection can be reset between the connect and the first write -- by a server
        killed with it still in its listen queue -- and the loop may close the transport in that
        gap (the hop out of ``wait_for``). Written to anyway, uvloop raised RuntimeError (a
        gateway's "the backend failed" instead of trying the next upstream) and asyncio dropped
        the bytes, so the request waited out its head timeout (tests/client/test_lean_path.py,
        test_a_new_connection_reset_before_the_request_is_written_...)."""
        if self.gone:
            why = detail(self.lost) if self.lost is not None else "the server closed it"
            raise ConnectError(f"connection to {url} failed before the request was sent: {why}")

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float | None, why: str | None = None) -> None:
        """Until more has arrived, the connection closed, or ``timeout`` passed: a Timeout saying
        ``why``, or that a read timed out."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        waiter = self._waiter = self.loop.create_future()
        if timeout is None:
            await waiter
            return
        timer = self.loop.call_later(timeout, _time_out, waiter, self.reader, why)
        try:
            await waiter
        finally:
            timer.cancel()

    async def drain(self, timeout: float | None, url: str) -> None:
        drained = self._drained
        if drained is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(drained), timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"timed out sending the request to {url}") from None


def _time_out(waiter: asyncio.Future[None], reader: ResponseReader | None, why: str | None) -> None:
    if not waiter.done():
        url = reader.url if reader is not None else "the server"
        waiter.set_exception(Timeout(why or f"timed out waiting for {url}"))


async def _wait_within(conn: _Connection, read: float | None, bound: Bound | None) -> None:
    """One wait for more bytes: the read timeout, cut short to end within ``bound``."""
    wait = within(read, bound)
    await conn.wait(wait, bound.message if bound is not None and wait != read else None)


class AsyncPooledResponse:
    """A reply whose head has arrived; its body is read with :meth:`reads`."""

    def __init__(
        self, pool: AsyncPool, conn: _Connection, reader: ResponseReader, bound: Bound | None
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._reader = reader
        self._bound = bound
        self.status_code = reader.status_code
        self.reason_phrase = reader.reason_phrase
        self.headers = reader.headers

    async def reads(self) -> AsyncIterator[bytes]:
        """The body, one read per wake-up (or per decoded block), empty ones skipped."""
        reader, conn, bound = self._reader, self._conn, self._bound
        assert conn is not None, "the reply was closed"
        timeout = self._pool.timeouts.read
        while True:
            data = reader.take()
            if data:
                yield data
                if bound is not None and reader.more:
                    bound.left()  # a decoded block at a time, each one checked
            elif conn.error is not None:
                raise conn.error
            elif reader.complete:
                return
            elif bound is None:
                await conn.wait(timeout)
            else:
                await _wait_within(conn, timeout, bound)

    async def read(self) -> bytes:
        return b"".join([read async for read in self.reads()])

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.reader = None
        reader = self._reader
        reader.release()
        if reader.complete and reader.keep_alive and conn.error is None:
            self._pool._release(conn)
        elif conn.transport is not None:
            conn.transport.close()


class AsyncPool(PoolBase[_Connection]):
    """Keep-alive connections to one endpoint, for the event loop that opened them."""

    async def send(self, body: bytes, *, deadline: float | None = None) -> AsyncPooledResponse:
        """POSTs ``body`` and returns once the reply's head has arrived."""
        return await self._exchange(*self._post(body), deadline)

    async def request(self, request: Request, *, deadline: float | None = None) -> AsyncPooledResponse:
        """Sends ``request`` and returns once the response's head has arrived."""
        return await self._exchange(*self._outgoing(request), deadline)

    async def _exchange(
        self, data: bytes, reader: ResponseReader, deadline: float | None
    ) -> AsyncPooledResponse:
        url = reader.url
        whole = reply_bound(deadline, url)
        conn = await self._acquire(url, whole)
        conn.reader = reader
        transport = conn.transport
        assert transport is not None
        timeouts = self.timeouts
        write_error: WriteFailed | None = None
        try:
            conn.refuse_if_lost(url)
            transport.write(data)
            try:
                await conn.drain(within(timeouts.write, whole), url)
            except WriteFailed as exc:
                reader.broken_request = True
                write_error = exc  # the server may have answered early (a 413): look first
            bound = head_bound(timeouts, deadline, url)
            while not reader.head_done:
                if conn.error is not None:
                    if write_error is not None:
                        raise TransportError(write_error.message) from write_error.__cause__
                    raise conn.error
                await _wait_within(conn, timeouts.read, bound)
        except BaseException:
            conn.reader = None
            reader.release()
            transport.close()
            raise
        return AsyncPooledResponse(self, conn, reader, whole)

    async def _acquire(self, url: str, whole: Bound | None) -> _Connection:
        loop = asyncio.get_running_loop()
        keepalive = self.keepalive
        while self._idle:
            conn = self._idle.pop()
            if conn.loop is not loop:
                continue  # opened under another event loop (an earlier asyncio.run): unusable here
            if (
                # Gone, perhaps before its protocol has heard: a write then raised RuntimeError
                # under uvloop (found by bench.routing's failover drill).
                conn.gone or time.monotonic() - conn.idle_since > keepalive or _has_news(conn.transport)
            ):
                if conn.transport is not None:
                    conn.transport.close()
                continue
            return conn
        try:
            return await asyncio.wait_for(self._connect(loop, url), within(self.timeouts.connect, whole))
        except asyncio.TimeoutError as exc:
            raise Timeout(f"timed out connecting to {via(self.endpoint, url)}") from exc

    async def _connect(self, loop: asyncio.AbstractEventLoop, url: str) -> _Connection:
        where, tls = self.endpoint, self.tls
        host, port = where.address
        direct_tls = tls if not where.tunnel else None
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(loop),
                host,
                port,
                ssl=direct_tls,
                server_hostname=where.host if direct_tls is not None else None,
            )
        except OSError as exc:  # ssl.SSLError included
            raise ConnectError(f"connection to {via(where, url)} failed: {detail(exc)}") from exc
        transport = conn.transport
        assert transport is not None
        try:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if where.tunnel:
                assert tls is not None
                await _open_tunnel(conn, where, url)
                try:
                    upgraded = await loop.start_tls(transport, conn, tls, server_hostname=where.host)
                except OSError as exc:
                    raise ConnectError(f"connection to {url} failed: {detail(exc)}") from exc
                if upgraded is None:
                    raise ConnectError(f"connection to {url} failed: the TLS handshake did not complete")
                conn.transport = upgraded
        except BaseException:
            transport.close()
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        if self._closed or conn.closed or len(self._idle) >= self.max_idle:
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


async def _open_tunnel(conn: _Connection, where: Endpoint, url: str) -> None:
    """Asks the proxy for a tunnel to the endpoint's origin (``CONNECT``); the caller bounds the time."""
    assert where.proxy is not None and conn.transport is not None
    proxy = where.proxy.url
    reader = conn.reader = ResponseReader(proxy)
    try:
        conn.refuse_if_lost(proxy)
        conn.transport.write(where.connect_request())
        while not reader.head_done:
            if conn.error is not None:
                raise conn.error
            await conn.wait(None)
    except GetGptError as exc:
        raise ConnectError(f"the proxy {proxy} opened no tunnel to {url}: {exc}") from exc
    finally:
        conn.reader = None
        reader.release()
    check_tunnel(reader, proxy, url)
