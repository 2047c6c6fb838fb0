"""Keep-alive connections to one endpoint on blocking sockets: the lean path of :class:`getgpt.Client`."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator

from ...protocol.errors import ConnectError, GetGptError, Timeout, TransportError
from ..base import Request
from ..bounds import Bound, head_bound, reply_bound, within
from .origin import Endpoint
from .pool_base import PoolBase, WriteFailed, detail, via
from .reader import ResponseReader, check_tunnel

__all__ = ["Pool", "PooledResponse"]

_READ_SIZE = 65536
# Seconds a bound may leave under the read timeout and still be left to the socket's own timeout.
_SLACK = 0.01


class PooledResponse:
    """A reply whose head has arrived; its body is read with :meth:`reads`."""

    def __init__(
        self,
        pool: Pool,
        sock: socket.socket,
        reader: ResponseReader,
        buffer: memoryview,
        bound: Bound | None,
    ) -> None:
        self._pool = pool
        self._sock: socket.socket | None = sock
        self._reader = reader
        self._buffer = buffer
        self._bound = bound
        self.status_code = reader.status_code
        self.reason_phrase = reader.reason_phrase
        self.headers = reader.headers

    def reads(self) -> Iterator[bytes]:
        """The body, one read per network read (or per decoded block), empty ones skipped."""
        reader, sock, buffer = self._reader, self._sock, self._buffer
        assert sock is not None, "the reply was closed"
        if self._bound is not None:
            yield from self._bounded_reads(sock, self._bound)
            return
        data = reader.take()
        if data:
            yield data
        while not reader.complete or reader.more:
            if not reader.more:
                _pull(sock, reader, buffer)
            data = reader.take()
            if data:
                yield data

    def _bounded_reads(self, sock: socket.socket, bound: Bound) -> Iterator[bytes]:
        """:meth:`reads` for a reply with a deadline: each read cut short to end by it."""
        reader, buffer, read = self._reader, self._buffer, self._pool.timeouts.read
        while True:
            data = reader.take()
            if data:
                yield data
            if reader.more:
                bound.left()  # a decoded block at a time, each one checked
                continue
            if reader.complete:
                return
            wait = within(read, bound)
            sock.settimeout(wait)
            try:
                _pull(sock, reader, buffer)
            except Timeout as exc:
                if wait != read:
                    raise Timeout(bound.message) from exc
                raise

    def read(self) -> bytes:
        return b"".join(self.reads())

    def close(self) -> None:
        """Gives the connection back if the reply was read to its end, else closes it."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        reader = self._reader
        reader.release()
        if reader.complete and reader.keep_alive:
            self._pool._release(sock)
        else:
            sock.close()


def _answer_anyway(write_error: WriteFailed, pull: Callable[[], None], reader: ResponseReader) -> None:
    """After a failed write, the reply's head if the server sent one; else ``write_error``.

    A server may refuse a request early (413: too large) and close the connection before reading
    all of it: its answer says more than the broken write does.
    """
    try:
        while not reader.head_done:
            pull()
    except GetGptError:
        raise TransportError(write_error.message) from write_error.__cause__


def _pull(sock: socket.socket, reader: ResponseReader, buffer: memoryview) -> None:
    """One read from ``sock`` into ``reader``."""
    # Into a buffer kept for the whole reply: recv() would allocate 64 KB per read and shrink
    # it, and the heap fragments around the text the client keeps (bench/memory.py).
    try:
        size = sock.recv_into(buffer)
    except TimeoutError as exc:  # socket.timeout is TimeoutError from 3.10
        raise Timeout(f"timed out waiting for {reader.url} ({detail(exc)})") from exc
    except OSError as exc:
        raise TransportError(f"connection to {reader.url} broke: {detail(exc)}") from exc
    if size:
        reader.feed(buffer[:size])
    else:
        reader.eof()


class Pool(PoolBase[tuple[socket.socket, float]]):
    """Keep-alive connections to one endpoint; thread-safe as list append and pop are."""

    def send(self, body: bytes, *, deadline: float | None = None) -> PooledResponse:
        """POSTs ``body`` and returns once the reply's head has arrived."""
        return self._exchange(*self._post(body), deadline)

    def request(self, request: Request, *, deadline: float | None = None) -> PooledResponse:
        """Sends ``request`` and returns once the response's head has arrived."""
        return self._exchange(*self._outgoing(request), deadline)

    def _exchange(self, data: bytes, reader: ResponseReader, deadline: float | None) -> PooledResponse:
        url = reader.url
        whole = reply_bound(deadline, url)
        sock = self._acquire(url, whole)
        buffer = memoryview(bytearray(_READ_SIZE))
        try:
            try:
                self._write(sock, data, url, whole)
            except WriteFailed as exc:
                reader.broken_request = True
                _answer_anyway(exc, lambda: _pull(sock, reader, buffer), reader)
            if not reader.head_done:
                self._read_head(sock, reader, buffer, deadline)
        except BaseException:
            reader.release()
            sock.close()
            raise
        return PooledResponse(self, sock, reader, buffer, whole)

    def _read_head(
        self, sock: socket.socket, reader: ResponseReader, buffer: memoryview, deadline: float | None
    ) -> None:
        """Reads until the head is whole, within the head bound and the deadline, however slowly
        its bytes come."""
        timeouts = self.timeouts
        read, head = timeouts.read, timeouts.head
        if deadline is None and read is not None and head is not None and head >= read:
            # The first read's own timeout ends within the head bound: a head that comes in one
            # read, the usual case, needs no bound made and no call to change the timeout.
            started = time.monotonic()
            _pull(sock, reader, buffer)
            if reader.head_done:
                return
            bound: Bound | None = Bound(started + head, reader.url, head)
        else:
            bound = head_bound(timeouts, deadline, reader.url)
        cut = False
        while not reader.head_done:
            if bound is None:
                _pull(sock, reader, buffer)
                continue
            # While the bound leaves (nearly) a read timeout or more, the socket's own timeout
            # -- the read timeout, as _write left it -- is all it needs. "Nearly": the head
            # bound, when it equals the read timeout, began a few microseconds before this read.
            left = bound.left()
            shorter = read is None or left < read - _SLACK
            if shorter:
                cut = True
                sock.settimeout(left)
            try:
                _pull(sock, reader, buffer)
            except Timeout as exc:
                if shorter:
                    raise Timeout(bound.message) from exc
                raise
        if cut:
            sock.settimeout(read)

    def _acquire(self, url: str, whole: Bound | None) -> socket.socket:
        idle = self._idle
        while idle:
            try:
                sock, since = idle.pop()
            except IndexError:  # another thread took the last one
                break
            # The server may have closed it while idle: any readable byte (or EOF) means so.
            if time.monotonic() - since > self.keepalive or select.select([sock], [], [], 0)[0]:
                sock.close()
                continue
            return sock
        return self._connect(url, whole)

    def _connect(self, url: str, whole: Bound | None) -> socket.socket:
        where, timeouts = self.endpoint, self.timeouts
        try:
            sock = socket.create_connection(where.address, timeout=within(timeouts.connect, whole))
        except TimeoutError as exc:
            raise Timeout(f"timed out connecting to {via(where, url)}") from exc
        except OSError as exc:
            raise ConnectError(f"connection to {via(where, url)} failed: {detail(exc)}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if where.tunnel:
                _open_tunnel(sock, where, url)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_hostname=where.host)
                except TimeoutError as exc:
                    raise Timeout(f"timed out connecting to {url} (TLS handshake)") from exc
                except OSError as exc:  # ssl.SSLError included: a bad certificate, a failed handshake
                    raise ConnectError(f"connection to {url} failed: {detail(exc)}") from exc
            sock.settimeout(timeouts.read)
        except BaseException:
            sock.close()
            raise
        return sock

    def _write(self, sock: socket.socket, data: bytes, url: str, whole: Bound | None) -> None:
        timeouts = self.timeouts
        sock.settimeout(timeouts.write if whole is None else within(timeouts.write, whole))
        try:
            sock.sendall(data)
        except TimeoutError as exc:
            raise Timeout(f"timed out sending the request to {url}") from exc
        except OSError as exc:
            raise WriteFailed(f"connection to {url} broke while sending the request: {detail(exc)}") from exc
        sock.settimeout(timeouts.read)

    def _release(self, sock: socket.socket) -> None:
        if self._closed or len(self._idle) >= self.max_idle:
            sock.close()
        else:
            self._idle.append((sock, time.monotonic()))

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for sock, _ in idle:
            sock.close()


def _open_tunnel(sock: socket.socket, where: Endpoint, url: str) -> None:
    """Asks the proxy on ``sock`` for a tunnel to the endpoint's origin (``CONNECT``)."""
    assert where.proxy is not None
    proxy = where.proxy.url
    reader = ResponseReader(proxy)
    buffer = memoryview(bytearray(4096))
    try:
        sock.sendall(where.connect_request())
        while not reader.head_done:
            _pull(sock, reader, buffer)
    except Timeout as exc:
        raise Timeout(f"timed out connecting to {url} through the proxy {proxy}") from exc
    except GetGptError as exc:
        raise ConnectError(f"the proxy {proxy} opened no tunnel to {url}: {exc}") from exc
    except OSError as exc:
        raise ConnectError(f"the proxy {proxy} opened no tunnel to {url}: {detail(exc)}") from exc
    finally:
        reader.release()
    check_tunnel(reader, proxy, url)
