"""Bounds on what a client's connection may cost, kept where requests arrive: in front of uvicorn.

uvicorn (0.54, 0.55) bounds none of these on its httptools protocol: a request head may be any
size, may take for ever to arrive (its keep-alive timer is cancelled by any byte, so one byte a
second keeps a connection), a connection that never sends a request is never closed, nothing stops
the connections from using up the file descriptors (then ``accept`` fails and ``/healthz`` with
it), a client that stops reading leaves the response's task waiting on the socket for ever, and
every request in a network read is parsed at once (256 KiB of pipelined ``GET /healthz`` queued
~6,000 requests, ~15 MiB, behind one the client never read). So ``getgpt serve`` runs each
connection through :class:`Connection`, an :class:`asyncio.Protocol` that owns the socket's
transport and hands uvicorn's own protocol (made as uvicorn makes it, from uvicorn's settings) one
request at a time:

- **the head's size and header count**: a head is held here until it is whole, then given to
  uvicorn in one piece: at most ``max_head_bytes`` (request line and headers) and ``max_headers``
  header lines; beyond, ``431`` (``414`` while still in the request line). A refused head never
  reaches uvicorn.
- **what is read ahead**: once a request's head and body (:mod:`.framing` finds where it ends) are
  with uvicorn, what the client sends next is held unparsed until the app has answered, and the
  socket is no longer read once ``max_read_ahead`` bytes of it are held. So a pipelining client
  costs at most that many bytes beyond its request, and one network read more (up to 256 KiB,
  what asyncio's and uvloop's transports read at once), however much it sends.
- **time**: a connection may wait ``idle_timeout`` for a request to begin -- when new, and again
  after each answer -- and then ``head_timeout`` for the head to be whole (``408`` beyond). Both
  are deadlines that bytes do not push back, unlike uvicorn's keep-alive timer, kept to within
  :data:`SWEEP` seconds by one periodic sweep per server rather than a timer per connection.
- **connections**: at most ``max_connections`` open. One over it closes the connection that has
  waited longest for a request (idle or still sending its head): a request being answered is
  never cut for a newcomer. If every connection is busy, the newcomer may ask ``/healthz`` only
  (anything else gets ``503`` with ``Retry-After``) and is then closed; past a small overflow it
  is closed at once. Such a connection waits for its request like any other, so a newcomer may
  close it in turn. So the process stays below its file-descriptor limit and ``/healthz`` answers.
- **writes**: a response whose writes wait more than ``write_timeout`` for the client to read
  (the transport's buffer stays over its high-water mark) is aborted; the app sees the client
  gone, so a stream's backend is stopped and its slot freed.

A refusal is written straight to the socket, then the connection is half-closed and what the
client still sends is read and dropped until it has sent nothing for :data:`LINGER` seconds, for
:data:`LINGER_MOST` at most (closing with unread data
would reset the connection and could destroy the answer before the client reads it).

What this leans on is public contracts only: asyncio's protocol and transport methods, between
the socket and this class and between this class and uvicorn's protocol; uvicorn's ``http=``
setting (a protocol class, made with uvicorn's keyword arguments, passed on unread); and ASGI,
through which :class:`AnswerSignal` -- the app as uvicorn runs it -- tells a connection that its
request has been answered. uvicorn creates a request's task while it parses the head, so the
task's context carries the connection that gave the head (a :class:`~contextvars.ContextVar`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..api_error import ApiError, try_later
from .framing import BadFraming, Body, read_head
from .responses import send_error

__all__ = [
    "LINGER",
    "LINGER_MOST",
    "OVERFLOW",
    "SWEEP",
    "AnswerSignal",
    "Connection",
    "ConnectionBounds",
    "Limits",
    "body_arrived",
    "uvicorn_protocol",
]

log = logging.getLogger("getgpt.server")

#: Seconds a refused connection is kept half-closed, reading and dropping what still arrives.
LINGER = 2.0
#: Seconds a refused connection lingers at most, however steadily the client still sends: a
#: client writing a 32 MiB body on a loaded machine may need more than LINGER to finish it and read
#: the answer, and one sending for ever must not keep its descriptor.
LINGER_MOST = 10.0
#: Connections admitted past ``max_connections`` while every one is busy, to answer /healthz.
OVERFLOW = 16
#: Seconds between two sweeps for idle and head deadlines (less when a deadline is shorter).
SWEEP = 0.25

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}

#: The connection whose request uvicorn is being given: the request's task inherits it.
_giving: contextvars.ContextVar[Connection | None] = contextvars.ContextVar("getgpt_connection", default=None)


@dataclass(frozen=True)
class Limits:
    """The bounds of :class:`Connection`, from the server's settings."""

    max_head_bytes: int
    max_headers: int
    head_timeout: float
    idle_timeout: float
    write_timeout: float
    max_connections: int
    max_read_ahead: int = 64 << 10


@functools.cache
def uvicorn_protocol(name: str = "httptools") -> Callable[..., asyncio.Protocol]:
    """The protocol class uvicorn runs for its ``http=name`` setting, as :class:`uvicorn.Config`
    resolves it (no module of uvicorn's is named here)."""
    import uvicorn

    async def nothing(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never run
        raise RuntimeError("the probe's app is never run")

    probe = uvicorn.Config(
        nothing, http=name, ws="none", lifespan="off", log_config=None, proxy_headers=False
    )
    probe.load()
    protocol: Callable[..., asyncio.Protocol] = probe.http_protocol_class
    return protocol


class _Pool:
    """One server's connections: how many are open, and which wait, since when, oldest first.

    Idle and head deadlines are kept by one sweep a fraction of a second apart over two ordered
    tables, not by a timer per connection: a connection costs two dictionary entries instead of
    two timers made and cancelled (measured: a fifth more server CPU per short connection).
    Waits of equal length end in the order they began, so each sweep stops at the first entry
    not yet due.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open = 0
        self.overflow = 0
        #: Bytes held read ahead, by every connection.
        self.ahead = 0
        #: Told of every change to :attr:`ahead` (the /metrics gauge); no request without
        #: pipelining changes it.
        self.on_ahead: Callable[[int], None] | None = None
        #: Connections waiting for a request to begin -> since when (the loop's clock).
        self.idle: OrderedDict[Connection, float] = OrderedDict()
        #: Connections whose request head has begun and is not whole yet -> since when.
        self.heads: OrderedDict[Connection, float] = OrderedDict()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sweep_timer: asyncio.TimerHandle | None = None
        #: Connections due at the last sweep with bytes unread, and whether they were idle.
        self._deferred: list[tuple[Connection, bool]] = []
        self._every = max(0.01, min(SWEEP, limits.idle_timeout / 4, limits.head_timeout / 4))

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        if self._sweep_timer is None:
            self._sweep_timer = loop.call_later(self._every, self._sweep)

    def _sweep(self) -> None:
        assert self.loop is not None
        self._sweep_timer = None
        now = self.loop.time()
        # Those whose deadline came with bytes still unread, last time: due now, unless the loop
        # has read the bytes since and they began (or finished) a request.
        deferred, self._deferred = self._deferred, []
        for connection, idle in deferred:
            if connection.transport.is_closing() or connection.refused or connection.awaiting:
                continue
            if connection in self.idle or connection in self.heads or (idle and connection.head):
                continue  # waiting again, from a later moment
            self._expire(connection, idle)
        for table, timeout in ((self.idle, self.limits.idle_timeout), (self.heads, self.limits.head_timeout)):
            limit = now - timeout
            while table:
                connection, since = next(iter(table.items()))
                if since > limit:
                    break
                del table[connection]
                self._expire(connection, table is self.idle)
        if self.open:
            self._sweep_timer = self.loop.call_later(self._every, self._sweep)

    def _expire(self, connection: Connection, idle: bool) -> None:
        if _unread(connection.transport) > 0:
            # The client's bytes arrived, but this loop has not read them: uvloop runs due timers
            # before it reads sockets, so after a turn held up past the deadline (an overloaded
            # server taking a burst) the request would be dropped unread, with a reset. The loop
            # reads them first; the deadline is looked at again at the next sweep.
            self._deferred.append((connection, idle))
        elif idle:
            connection._idle_expired()
        else:
            connection._head_expired()

    def oldest_waiting(self) -> Connection | None:
        """The connection that has waited longest, idle or mid-head; None if none waits."""
        idle = next(iter(self.idle.items()), None)
        head = next(iter(self.heads.items()), None)
        if idle is None or (head is not None and head[1] < idle[1]):
            return None if head is None else head[0]
        return idle[0]

    def add_ahead(self, size: int) -> None:
        self.ahead += size
        if self.on_ahead is not None:
            self.on_ahead(size)

    def forget(self, connection: Connection) -> None:
        self.idle.pop(connection, None)
        self.heads.pop(connection, None)


def _unread(transport: Any) -> int:
    """Bytes received on ``transport``'s socket that nobody has read yet (0 where unknown)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        import array
        import fcntl
        import termios

        count = array.array("i", [0])
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
    except (ImportError, OSError, ValueError):
        return 0
    return int(count[0])


def _refusal(status: int, error: ApiError) -> bytes:
    body = error.json()
    head = [b"HTTP/1.1 %d %s" % (status, _REASONS[status]), b"content-type: application/json"]
    head += [f"{name.lower()}: {value}".encode("latin-1") for name, value in error.headers.items()]
    head += [b"content-length: %d" % len(body), b"connection: close", b"", b""]
    return b"\r\n".join(head) + body


def _too_many(limit: int) -> ApiError:
    return try_later(f"the server has {limit} connections open already", "too_many_connections")


class _UvicornsTransport(asyncio.Transport):
    """The transport uvicorn's protocol is given: the socket's, but for reading, which it may
    pause and resume for itself without undoing a pause of the bounds (the socket is read only
    while neither has paused it).

    What uvicorn calls for every chunk and response -- ``write``, ``get_extra_info`` -- is the
    socket transport's own method, set on the instance: a chunk written costs no call through
    this layer. ``close`` lingers while the client is still sending a body the app has refused
    (:meth:`Connection.close_for_uvicorn`). The rest of asyncio's transport is passed on.
    """

    def __init__(self, connection: Connection, transport: asyncio.Transport) -> None:
        # asyncio.Transport.__init__ only keeps ``extra`` for get_extra_info, which is the
        # socket transport's own here.
        self._connection = connection
        self._transport = transport
        self.write = transport.write  # type: ignore[method-assign]
        self.get_extra_info = transport.get_extra_info  # type: ignore[method-assign]

    def close(self) -> None:
        self._connection.close_for_uvicorn()

    def is_closing(self) -> bool:
        return self._connection.refused or self._transport.is_closing()

    def pause_reading(self) -> None:
        self._connection.uvicorn_paused = True
        self._connection._flow()

    def resume_reading(self) -> None:
        self._connection.uvicorn_paused = False
        self._connection._flow()

    def is_reading(self) -> bool:
        return not self._connection.uvicorn_paused

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def abort(self) -> None:
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError("the connection bounds hand over no connection (no WebSocket)")

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._connection.uvicorn


class Connection(asyncio.Protocol):
    """One client connection with the bounds above, in front of uvicorn's protocol for it; made by
    :meth:`ConnectionBounds.protocol`.

    The defaults are class attributes: a connection that never needs one costs no assignment
    (a new connection's cost is the bounds' only measurable one; see bench/server_throughput.py).
    """

    transport: asyncio.Transport
    head: bytes | bytearray = b""  # the request head so far, not yet given to uvicorn
    ahead: bytes = b""  # bytes read past the request being answered, from ``ahead_at``: held, unparsed
    ahead_at = 0
    body: Body | None = None  # the body of the request given last, while it still arrives
    awaiting = False  # a request is with uvicorn and its app has not finished with it
    uvicorn_paused = False  # uvicorn's protocol has paused reading (a body it has not taken yet)
    reading = True  # the socket is being read
    close_after = False  # the connection cannot carry another request (a protocol switch asked)
    counted = False  # counted in the pool's ``open``
    overflow = False  # admitted past max_connections: /healthz only
    refused = False
    linger: asyncio.TimerHandle | None = None
    lingering_since = 0.0  # when the connection began to linger (the loop's clock)
    last_read = 0.0  # when a lingering connection last had bytes to drop
    write_timer: asyncio.TimerHandle | None = None

    def __init__(self, *, pool: _Pool, make: Callable[..., asyncio.Protocol], **uvicorns: Any) -> None:
        self.pool = pool
        #: uvicorn's protocol, made with the keyword arguments uvicorn's server gave.
        self.uvicorn = make(**uvicorns)

    # --- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport's subclasses; they have its methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.uvicorn.connection_made(_UvicornsTransport(self, transport))
        pool = self.pool
        if pool._sweep_timer is None:  # the first connection since none was open
            pool.start(asyncio.get_running_loop())
        pool.open += 1
        self.counted = True
        if pool.open > pool.limits.max_connections and not self._evict_one():
            if pool.overflow >= OVERFLOW:
                transport.close()
                return
            pool.overflow += 1
            self.overflow = True
        self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        pool = self.pool
        for timer in (self.linger, self.write_timer):
            if timer is not None:
                timer.cancel()
        self.linger = self.write_timer = None
        pool.forget(self)
        if self.held:
            pool.add_ahead(-self.held)
            self.ahead, self.ahead_at = b"", 0
        if self.counted:
            self.counted = False
            pool.open -= 1
            if self.overflow:
                pool.overflow -= 1
        self.uvicorn.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.uvicorn.eof_received()

    # A plain protocol, not asyncio.BufferedProtocol (which would let each read be sized to what
    # may still be held): under uvloop that cost every chunk written 0.3-1.3 us more server CPU
    # (bench/server_throughput.py, the minimal app, one send a chunk: 8.7-10.2 us against 8.4-8.6
    # on uvicorn's protocol alone; 7.6-7.8 against 7.9 as it is now).
    def data_received(self, data: bytes) -> None:
        if self.refused:
            # A refused client's bytes are read and dropped while the connection lingers.
            if self.linger is not None and self.pool.loop is not None:
                self.last_read = self.pool.loop.time()
            return
        self._take(data)
        if self.ahead or not self.reading:  # else reading goes on as it is
            self._flow()

    # --- giving uvicorn one request at a time ------------------------------------------------

    @property
    def held(self) -> int:
        """Bytes read ahead of the request being answered, held unparsed."""
        return len(self.ahead) - self.ahead_at

    def _take(self, data: bytes, pos: int = 0) -> None:
        size = len(data)
        while pos < size:
            body = self.body
            if body is not None:
                try:
                    end = body.take(data, pos)
                except BadFraming as exc:
                    # Mid-request, with the app answering: no refusal can be written now.
                    log.debug("dropped a connection: %s", exc)
                    self.transport.abort()
                    return
                self.uvicorn.data_received(data if pos == 0 and end == size else data[pos:end])
                pos = end
                if body.done:
                    self.body = None
                continue
            if self.awaiting:
                self._hold(data, pos)
                return
            pos = self._head(data, pos)
            if self.refused:
                return

    def _hold(self, data: bytes, pos: int) -> None:
        # Kept as the read it came in, with where it begins: each answer moves the start on
        # rather than copying what is left (pipelined requests are many and short).
        held = self.held
        if held:
            self.ahead, self.ahead_at = self.ahead[self.ahead_at :] + data[pos:], 0
        else:
            self.ahead, self.ahead_at = data, pos
        self.pool.add_ahead(self.held - held)

    def _head(self, data: bytes, pos: int) -> int:
        """Take the bytes of a request head from ``data[pos:]``; where they end there."""
        size = len(data)
        head = self.head
        if not head:
            # Line ends before a request are skipped, as llhttp skips them, and begin none.
            while pos < size and data[pos] in b"\r\n":
                pos += 1
            if pos == size:
                return size
            pool = self.pool
            pool.idle.pop(self, None)
            if pool.loop is not None:
                pool.heads[self] = pool.loop.time()
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                self.head = bytearray(data[pos:])
                self._check_unfinished()
                return size
            end += 4
            whole = data if pos == 0 and end == size else data[pos:end]
        else:
            assert isinstance(head, bytearray)
            searched = len(head) - 3
            head += data[pos:] if pos else data
            found = head.find(b"\r\n\r\n", max(searched, 0))
            if found < 0:
                self._check_unfinished()
                return size
            end = size - (len(head) - found - 4)
            whole = bytes(head[: found + 4])
            self.head = b""
        self._give(whole)
        return end

    def _check_unfinished(self) -> None:
        head, limits = self.head, self.pool.limits
        if len(head) > limits.max_head_bytes:
            self._refuse_large(head)
        elif head.count(b"\r\n") - 1 > limits.max_headers:
            self._refuse(431, f"more than {limits.max_headers} header lines", "too_many_headers")

    def _refuse_large(self, head: bytes | bytearray) -> None:
        line = head.find(b"\r\n")
        if line < 0 or line >= self.pool.limits.max_head_bytes:
            self._refuse(414, "the request line is too long", "uri_too_long")
        else:
            self._refuse(431, "the request head is too large", "head_too_large")

    def _give(self, head: bytes) -> None:
        """Hand uvicorn a whole head, if it is within the bounds; its body follows as it comes."""
        limits = self.pool.limits
        if len(head) > limits.max_head_bytes + 2:  # the blank line that ends it is not counted
            self._refuse_large(head)
            return
        if head.count(b"\r\n") - 2 > limits.max_headers:
            self._refuse(431, f"more than {limits.max_headers} header lines", "too_many_headers")
            return
        try:
            length, upgrade = read_head(head)
        except BadFraming as exc:
            self._refuse(400, f"the request's body has no clear end: {exc}", "bad_framing")
            return
        self.pool.heads.pop(self, None)
        self.awaiting = True
        if upgrade:
            self.close_after = True
        token = _giving.set(self)
        try:
            self.uvicorn.data_received(head)
        finally:
            _giving.reset(token)
        if length:
            self.body = Body(length)

    def answered(self) -> None:
        """The app has finished with the request given last: the next may begin."""
        if not self.awaiting:
            return
        self.awaiting = False
        if self.transport.is_closing() or self.refused:
            return
        if self.overflow or self.close_after:
            self.transport.close()  # admitted past the limit for one answer, or a dead end
            return
        held = self.held
        if held:
            ahead, at = self.ahead, self.ahead_at
            self.pool.add_ahead(-held)
            self.ahead, self.ahead_at = b"", 0
            self._take(ahead, at)
        if not (self.awaiting or self.head or self.refused):
            self._wait()
        self._flow()

    def _flow(self) -> None:
        """Read the socket unless uvicorn has paused it or the bytes read ahead are at their cap
        (then not again before half of them are taken: pipelined requests are read in batches,
        not one read for each answered); a refused connection's are read, to be dropped."""
        cap = self.pool.limits.max_read_ahead
        wanted = self.refused or (
            not self.uvicorn_paused and self.held < (cap if self.reading else cap // 2 + 1)
        )
        if wanted != self.reading and not self.transport.is_closing():
            self.reading = wanted
            if wanted:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    # --- flow control of writes -------------------------------------------------------------

    def pause_writing(self) -> None:
        self.uvicorn.pause_writing()
        pool = self.pool
        if self.write_timer is None and pool.loop is not None:
            self.write_timer = pool.loop.call_later(pool.limits.write_timeout, self._write_expired)

    def resume_writing(self) -> None:
        self.uvicorn.resume_writing()
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    # --- helpers -----------------------------------------------------------------------------

    def _wait(self) -> None:
        """The connection waits for a request to begin, from now: evictable, with a deadline."""
        pool = self.pool
        if pool.loop is not None:
            pool.idle.pop(self, None)
            pool.idle[self] = pool.loop.time()

    def _idle_expired(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _head_expired(self) -> None:
        if not self.transport.is_closing():
            self._refuse(408, "the request head did not arrive in time", "head_timeout")

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits."""
        pool = self.pool
        oldest = pool.oldest_waiting()
        if oldest is None:
            return False
        pool.forget(oldest)
        if oldest.head and not oldest.refused:
            # Said, but not lingered over: the descriptor is wanted now.
            oldest.refused = True
            oldest.transport.write(_refusal(503, _too_many(pool.limits.max_connections)))
        oldest.transport.close()
        return True

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer a head the bounds refuse (uvicorn never saw it) and close the connection."""
        if self.refused:
            return
        self.refused = True
        self.head = b""
        self.pool.forget(self)
        # DEBUG: a flood of hostile requests must not become a flood of log lines.
        log.debug("refused a request: %d %s", status, code)
        transport = self.transport
        transport.write(_refusal(status, ApiError(status, message, code=code)))
        loop = self.pool.loop
        if transport.can_write_eof() and loop is not None:
            transport.write_eof()
            self._linger(loop)
        else:
            transport.close()

    def close_for_uvicorn(self) -> None:
        """uvicorn closes the connection: at once, unless the client is still sending a body (the
        app answered without reading it all, as a 413 or a 503 does). Then, as for a refusal, the
        answer goes out, the connection is half-closed and what still comes is dropped for up to
        :data:`LINGER` seconds: closing with unread bytes would reset the connection, and the
        client, still writing, could lose the answer."""
        transport, loop = self.transport, self.pool.loop
        body = self.body
        if self.refused or body is None or transport.is_closing() or loop is None:
            transport.close()
            return
        self.refused = True
        self.body = None
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger(loop)

    def _linger(self, loop: asyncio.AbstractEventLoop) -> None:
        """Half-closed (the answer written, then EOF): read and drop what still comes, until the
        client has been silent for LINGER seconds or LINGER_MOST have gone by."""
        self.lingering_since = self.last_read = loop.time()
        self.linger = loop.call_later(LINGER, self._linger_check)
        self._flow()

    def _linger_check(self) -> None:
        loop = self.pool.loop
        assert loop is not None
        now = loop.time()
        until = min(self.last_read + LINGER, self.lingering_since + LINGER_MOST)
        if now < until:
            self.linger = loop.call_later(until - now, self._linger_check)
        else:
            self.linger = None
            self.transport.close()

    def _write_expired(self) -> None:
        self.write_timer = None
        if not self.transport.is_closing():
            seconds = self.pool.limits.write_timeout
            log.info("a client read nothing for %g s: connection dropped", seconds)
        self.transport.abort()


def body_arrived() -> bool | None:
    """Whether the body of the request the calling task answers is all with uvicorn already
    (True: reading it cannot wait), or still arriving (False); None for a request that did not
    come through a :class:`Connection` (a server without the bounds).

    The connection gives uvicorn nothing past a request until it is answered, so the body it
    follows is this request's."""
    connection = _giving.get()
    if connection is None:
        return None
    return connection.body is None


class AnswerSignal:
    """The app as uvicorn runs it under :class:`Connection`: tells a request's connection when the
    app has finished with it, and answers a connection admitted past the cap with ``/healthz``
    only (``503`` for anything else)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        connection = _giving.get()
        if connection is None:  # lifespan, or a server without the bounds
            await self.app(scope, receive, send)
            return
        try:
            if connection.overflow and scope["path"] != "/healthz":
                await send_error(send, _too_many(self.limit), close=True)
            else:
                await self.app(scope, receive, send)
        finally:
            connection.answered()


class ConnectionBounds:
    """One server's bounds: uvicorn's ``http=`` (:meth:`protocol`) and the app it must run
    (:meth:`app`), which go together -- a connection learns of answers only through that app."""

    def __init__(self, limits: Limits, http: str = "httptools") -> None:
        self.limits = limits
        self.pool = _Pool(limits)
        self.http = http

    def protocol(self) -> Any:
        """What uvicorn's ``http=`` takes: :class:`Connection` bound to this server's pool.

        A :func:`functools.partial` of a module-level class, not a class made on the fly, so that
        a uvicorn config holding it can still be pickled for worker processes.
        """
        return functools.partial(Connection, pool=self.pool, make=uvicorn_protocol(self.http))

    def app(self, app: Any) -> AnswerSignal:
        return AnswerSignal(app, self.limits.max_connections)
