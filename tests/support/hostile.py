"""Hostile HTTP clients on raw loopback sockets: trickling, idle, oversized, not reading, bursting.

Each returns what happened and when, and never runs longer than the ``limit`` it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import selectors
import socket
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Ended",
    "handshakes",
    "idle",
    "memory_kib",
    "pipelined",
    "read_response",
    "send_head",
    "status_of",
    "trickle",
    "unread",
]


@dataclass
class Ended:
    """How a hostile connection ended: after how long, with which bytes from the server."""

    seconds: float
    received: bytes
    closed: bool  # the server closed (or reset) the connection within the limit

    @property
    def status(self) -> int | None:
        return status_of(self.received)


def status_of(received: bytes) -> int | None:
    """The status code of the response at the start of ``received``, if there is one."""
    if not received.startswith(b"HTTP/1.1 "):
        return None
    return int(received[9:12])


async def _read_until_closed(reader: asyncio.StreamReader, into: bytearray) -> None:
    with contextlib.suppress(ConnectionError):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            into += data


async def trickle(
    address: tuple[str, int], data: bytes, *, every: float, limit: float, start: bytes = b""
) -> Ended:
    """Send ``start``, then ``data`` one byte each ``every`` seconds, until the server closes."""
    reader, writer = await asyncio.open_connection(*address)
    received = bytearray()
    started = time.monotonic()
    reading = asyncio.ensure_future(_read_until_closed(reader, received))
    try:
        if start:
            writer.write(start)
        for byte in data:
            if reading.done() or time.monotonic() - started > limit:
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), every)
        left = limit - (time.monotonic() - started)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(reading), max(left, 0.01))
        return Ended(time.monotonic() - started, bytes(received), reading.done())
    finally:
        reading.cancel()
        writer.transport.abort()


async def idle(address: tuple[str, int], *, limit: float, first: bytes = b"") -> Ended:
    """Connect, send ``first`` (say, one whole request), then nothing until the server closes."""
    return await trickle(address, b"", every=0, limit=limit, start=first)


def send_head(address: tuple[str, int], head: bytes, *, limit: float = 10.0) -> Ended:
    """Send ``head`` as fast as the server takes it (it may refuse midway); read its answer."""
    started = time.monotonic()
    with socket.create_connection(address, timeout=limit) as sock:
        sent = 0
        with contextlib.suppress(ConnectionError, socket.timeout):
            while sent < len(head):
                sent += sock.send(head[sent : sent + 65536])
        received = bytearray()
        closed = False
        with contextlib.suppress(ConnectionError, socket.timeout):
            while True:
                data = sock.recv(65536)
                if not data:
                    closed = True
                    break
                received += data
        return Ended(time.monotonic() - started, bytes(received), closed)


def handshakes(address: tuple[str, int], count: int, *, within: float) -> int:
    """Open ``count`` connections to ``address`` at once; how many completed their handshake
    within ``within`` seconds. Every one is closed again before this returns.

    A listener whose accept queue is full drops the handshake, which the kernel retries only
    after a second: with ``within`` under a second, a dropped one does not count.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
    sockets: list[socket.socket] = []
    try:
        with selectors.DefaultSelector() as waiting:
            for _ in range(count):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(address)
                sockets.append(sock)
                waiting.register(sock, selectors.EVENT_WRITE)
            connected = 0
            until = time.monotonic() + within
            while connected < count and time.monotonic() < until:
                for key, _ in waiting.select(0.1):
                    waiting.unregister(key.fileobj)
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        connected += 1
        return connected
    finally:
        for sock in sockets:
            sock.close()


def unread(sock: socket.socket) -> int:
    """Bytes that have arrived on ``sock`` and were not read yet (nothing is consumed)."""
    import array
    import fcntl
    import termios

    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
    return int(count[0])


def pipelined(
    address: tuple[str, int], request: bytes, size: int, count: int, *, limit: float
) -> list[socket.socket]:
    """``count`` connections, each sending ``request`` again and again back to back, ``size``
    bytes in all, and reading nothing; returns them open (the caller closes them).

    Sends what the kernel takes, for up to ``limit`` seconds: a server that stops reading leaves
    the rest unsent, which is what it should do.
    """
    payload = request * (size // len(request))
    sockets = [socket.create_connection(address) for _ in range(count)]
    left = {sock: memoryview(payload) for sock in sockets}
    until = time.monotonic() + limit
    with selectors.DefaultSelector() as waiting:
        for sock in sockets:
            sock.setblocking(False)
            waiting.register(sock, selectors.EVENT_WRITE)
        while left and time.monotonic() < until:
            for key, _ in waiting.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    sent = sock.send(left[sock])
                except (BlockingIOError, ConnectionError):
                    sent = 0
                left[sock] = left[sock][sent:]
                if not left[sock]:
                    del left[sock]
                    waiting.unregister(sock)
    return sockets


def read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """One whole response with a Content-Length from ``sock``, and what arrived after it."""
    data = buffered
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += _recv(sock)
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection mid-response")
    return data


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of process ``pid``, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found
