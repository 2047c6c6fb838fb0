"""Bounds on what a client's connection may cost, kept where requests arrive: uvicorn's protocol.

uvicorn (0.54) bounds none of these on its httptools protocol: a request head may be any size, may
take for ever to arrive (its keep-alive timer is cancelled by any byte, so one byte a second keeps
a connection), a connection that never sends a request is never closed, nothing stops the
connections from using up the file descriptors (then ``accept`` fails and ``/healthz`` with it),
and a client that stops reading leaves the response's task waiting on the socket for ever. So
``getgpt serve`` runs :class:`LimitedHttpProtocol`, uvicorn's own httptools protocol with:

- **the head's size and header count**: at most ``max_head_bytes`` (request line and headers)
  and ``max_headers`` header lines; beyond, ``431`` (``414`` while still in the request line).
  Counted as the bytes arrive, so a single endless header line is cut off too, before the parser
  has buffered more than one network read past the limit.
- **time**: a connection may wait ``idle_timeout`` for a request to begin -- when new, and again
  after each response -- and then ``head_timeout`` for the head to be whole (``408`` beyond). Both
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
client still sends is read and dropped for up to :data:`LINGER` seconds (closing with unread data
would reset the connection and could destroy the answer before the client reads it).

This leans on uvicorn's protocol: its parser callbacks (``on_message_begin``, ``on_url``,
``on_header``, ``on_headers_complete``, ``on_body``, ``on_message_complete``), its
``on_response_complete`` hook, its ``app`` and ``transport`` attributes and asyncio's flow-control
callbacks. pyproject pins uvicorn to the versions this was tested with
(``tests/server/test_hostile_clients.py``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..api_error import ApiError, try_later
from .responses import send_error

__all__ = ["LINGER", "OVERFLOW", "SWEEP", "LimitedHttpProtocol", "Limits", "protocol_factory"]

log = logging.getLogger("getgpt.server")

#: Seconds a refused connection is kept half-closed, reading and dropping what still arrives.
LINGER = 2.0
#: Connections admitted past ``max_connections`` while every one is busy, to answer /healthz.
OVERFLOW = 16
#: Seconds between two sweeps for idle and head deadlines (less when a deadline is shorter).
SWEEP = 0.25

_REASONS = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class Limits:
    """The bounds of :class:`LimitedHttpProtocol`, from the server's settings."""

    max_head_bytes: int
    max_headers: int
    head_timeout: float
    idle_timeout: float
    write_timeout: float
    max_connections: int


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
        #: Connections waiting for a request to begin -> since when (the loop's clock).
        self.idle: OrderedDict[LimitedHttpProtocol, float] = OrderedDict()
        #: Connections whose request head has begun and is not whole -> since when.
        self.heads: OrderedDict[LimitedHttpProtocol, float] = OrderedDict()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sweep_timer: asyncio.TimerHandle | None = None
        #: Connections due at the last sweep with bytes unread, and whether they were idle.
        self._deferred: list[tuple[LimitedHttpProtocol, bool]] = []
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
            state = connection._getgpt
            if connection.transport.is_closing() or state.refused or state.requests:
                continue
            if connection in self.idle or connection in self.heads or (idle and state.in_head):
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

    def _expire(self, connection: LimitedHttpProtocol, idle: bool) -> None:
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

    def oldest_waiting(self) -> LimitedHttpProtocol | None:
        """The connection that has waited longest, idle or mid-head; None if none waits."""
        idle = next(iter(self.idle.items()), None)
        head = next(iter(self.heads.items()), None)
        if idle is None or (head is not None and head[1] < idle[1]):
            return None if head is None else head[0]
        return idle[0]

    def forget(self, connection: LimitedHttpProtocol) -> None:
        self.idle.pop(connection, None)
        self.heads.pop(connection, None)


class _State:
    """Per-connection bookkeeping, kept under one attribute so as not to meet uvicorn's own.

    The defaults are class attributes: a connection that never needs one costs no assignment
    (a new connection's cost is the bounds' only measurable one; see bench/server_throughput.py).
    """

    linger: asyncio.TimerHandle | None = None
    write_timer: asyncio.TimerHandle | None = None
    counted = False  # counted in the pool's ``open``
    overflow = False  # admitted past max_connections: /healthz only
    in_head = False  # a request's head has begun and is not whole yet
    head_bytes = 0  # request line and header lines, as the parser reported them
    head_fed = 0  # bytes received while the head was unfinished
    headers = 0
    requests = 0  # requests whose head is whole and whose response is not
    refused = False
    pending: bytes | None = None  # a refusal waiting for the current response to end


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


class _HealthOnly:
    """The app for a connection admitted past the limit: ``/healthz``, and 503 for anything else."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        await send_error(send, _too_many(self.limit), close=True)


def _too_many(limit: int) -> ApiError:
    return try_later(f"the server has {limit} connections open already", "too_many_connections")


# The parser's per-header and per-body-piece callbacks call the base class directly: measurably
# cheaper than super() on the path every request takes.
_base = HttpToolsProtocol


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above; made by :func:`protocol_factory`."""

    def __init__(self, *args: Any, pool: _Pool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._getgpt_pool = pool
        self._getgpt = _State()

    # --- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        pool, state = self._getgpt_pool, self._getgpt
        pool.start(asyncio.get_running_loop())
        pool.open += 1
        state.counted = True
        if pool.open > pool.limits.max_connections and not self._evict_one():
            if pool.overflow >= OVERFLOW:
                transport.close()
                return
            pool.overflow += 1
            state.overflow = True
            self.app = _HealthOnly(self.app, pool.limits.max_connections)
        self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        pool, state = self._getgpt_pool, self._getgpt
        for timer in (state.linger, state.write_timer):
            if timer is not None:
                timer.cancel()
        state.linger = state.write_timer = None
        pool.forget(self)
        if state.counted:
            state.counted = False
            pool.open -= 1
            if state.overflow:
                pool.overflow -= 1

    def data_received(self, data: bytes) -> None:
        state = self._getgpt
        if state.refused:
            return  # a refused client's bytes are read and dropped while the connection lingers
        was_in_head = state.in_head
        super().data_received(data)
        if was_in_head and state.in_head and not state.refused:
            # A head line still unfinished is buffered by the parser, unseen by the callbacks.
            state.head_fed += len(data)
            if state.head_fed > self._getgpt_pool.limits.max_head_bytes:
                self._refuse(431, "the request head is too large", "head_too_large")

    # --- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        state = self._getgpt
        if state.refused:
            return  # a request after the refused one, in the same read: not for this connection
        super().on_message_begin()
        state.in_head = True
        state.head_bytes = state.head_fed = state.headers = 0
        pool = self._getgpt_pool
        pool.idle.pop(self, None)
        if state.requests == 0 and pool.loop is not None:
            pool.heads[self] = pool.loop.time()

    def on_url(self, url: bytes) -> None:
        state = self._getgpt
        if state.refused:
            return
        state.head_bytes += len(url)
        if state.head_bytes > self._getgpt_pool.limits.max_head_bytes:
            self._refuse(414, "the request line is too long", "uri_too_long")
            return
        _base.on_url(self, url)

    def on_header(self, name: bytes, value: bytes) -> None:
        state = self._getgpt
        if state.refused:
            return
        limits = self._getgpt_pool.limits
        state.headers += 1
        state.head_bytes += len(name) + len(value) + 4
        if state.headers > limits.max_headers:
            self._refuse(431, f"more than {limits.max_headers} header lines", "too_many_headers")
            return
        if state.head_bytes > limits.max_head_bytes:
            self._refuse(431, "the request head is too large", "head_too_large")
            return
        _base.on_header(self, name, value)

    def on_headers_complete(self) -> None:
        state = self._getgpt
        if state.refused:
            return
        state.in_head = False
        state.requests += 1
        self._getgpt_pool.forget(self)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._getgpt.refused:
            _base.on_body(self, body)

    def on_message_complete(self) -> None:
        if not self._getgpt.refused:
            _base.on_message_complete(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        state = self._getgpt
        state.requests -= 1
        if state.requests or self.transport.is_closing():
            return
        pool = self._getgpt_pool
        if state.pending is not None:
            self._send_refusal(state.pending)
        elif state.overflow:
            self.transport.close()  # admitted past the limit for one answer only
        elif state.in_head and pool.loop is not None:
            pool.heads[self] = pool.loop.time()  # a pipelined head, from now on the one awaited
        else:
            self._wait()

    def send_400_response(self, msg: str) -> None:
        if not self._getgpt.refused:  # after a refusal, the answer has gone out already
            super().send_400_response(msg)

    # --- flow control ------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        state, pool = self._getgpt, self._getgpt_pool
        if state.write_timer is None and pool.loop is not None:
            state.write_timer = pool.loop.call_later(pool.limits.write_timeout, self._write_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        state = self._getgpt
        if state.write_timer is not None:
            state.write_timer.cancel()
            state.write_timer = None

    # --- helpers -----------------------------------------------------------------------------

    def _wait(self) -> None:
        """The connection waits for a request to begin, from now: evictable, with a deadline."""
        pool = self._getgpt_pool
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
        pool = self._getgpt_pool
        oldest = pool.oldest_waiting()
        if oldest is None:
            return False
        pool.forget(oldest)
        state = oldest._getgpt
        if state.in_head and not state.refused:
            # Said, but not lingered over: the descriptor is wanted now.
            state.refused = True
            oldest.transport.write(_refusal(503, _too_many(pool.limits.max_connections)))
        oldest.transport.close()
        return True

    def _refuse(self, status: int, message: str, code: str) -> None:
        state = self._getgpt
        if state.refused:
            return
        state.refused = True
        self._getgpt_pool.forget(self)
        # DEBUG: a flood of hostile requests must not become a flood of log lines.
        log.debug("refused a request: %d %s", status, code)
        response = _refusal(status, ApiError(status, message, code=code))
        if state.requests:
            state.pending = response  # sent once the response under way has ended
        else:
            self._send_refusal(response)

    def _send_refusal(self, response: bytes) -> None:
        transport = self.transport
        transport.write(response)
        loop = self._getgpt_pool.loop
        if transport.can_write_eof() and loop is not None:
            transport.write_eof()
            self._getgpt.linger = loop.call_later(LINGER, transport.close)
        else:
            transport.close()

    def _write_expired(self) -> None:
        state = self._getgpt
        state.write_timer = None
        if not self.transport.is_closing():
            seconds = self._getgpt_pool.limits.write_timeout
            log.info("a client read nothing for %g s: connection dropped", seconds)
        self.transport.abort()


def protocol_factory(limits: Limits) -> Any:
    """What uvicorn's ``http=`` takes: :class:`LimitedHttpProtocol` bound to one server's pool.

    A :func:`functools.partial` of a module-level class, not a class made on the fly, so that a
    uvicorn config holding it can still be pickled for worker processes.
    """
    return functools.partial(LimitedHttpProtocol, pool=_Pool(limits))
