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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import sockets
from .waiting import wait_until

__all__ = [
    "Ended",
    "closed_by_peer",
    "idle",
    "memory_kib",
    "queued",
    "read_response",
    "send_head",
    "status_of",
    "trickle",
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
    address: tuple[str, int],
    data: bytes,
    *,
    every: float,
    limit: float,
    start: bytes = b"",
    connected: Callable[[], object] | None = None,
) -> Ended:
    """Send ``start``, then ``data`` one byte each ``every`` seconds, until the server closes.

    The pauses between bytes are the hostile client's behaviour, not a wait of the test's.
    ``connected`` is called once the connection is open and ``start`` written. ``Ended.seconds``
    counts from before the connection was opened: the server's deadlines all begin later, so a
    lower bound of the configured timeout on it holds on any machine.
    """
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(*address)
    received = bytearray()
    reading = asyncio.ensure_future(_read_until_closed(reader, received))
    try:
        if start:
            writer.write(start)
        if connected is not None:
            connected()
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


async def idle(
    address: tuple[str, int],
    *,
    limit: float,
    first: bytes = b"",
    connected: Callable[[], object] | None = None,
) -> Ended:
    """Connect, send ``first`` (say, one whole request), then nothing until the server closes."""
    return await trickle(address, b"", every=0, limit=limit, start=first, connected=connected)


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


def queued(address: tuple[str, int], count: int, *, limit: float = 20.0) -> int:
    """Open ``count`` connections at once to a listener that accepts none (a stopped server); how
    many its accept queue(s) took. A full queue drops the rest's handshakes (the client retries
    them a second later, into a queue still full), so the count tells the queues' room, whatever
    the time it takes. Every connection is closed again before this returns."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
    port = address[1]
    before = sockets.accept_queue(port)
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(address)
            opened.append(sock)
        with contextlib.suppress(AssertionError):  # fewer than all: the count below says how many
            wait_until(lambda: sockets.accept_queue(port) - before >= count, limit, "every handshake queued")
        return sockets.accept_queue(port) - before
    finally:
        for sock in opened:
            sock.close()


def closed_by_peer(sockets: list[socket.socket], *, within: float) -> int:
    """How many of ``sockets`` the server has closed (end of stream or reset), each given up to
    ``within`` seconds from now to show it. Nothing is read from a socket still open."""
    closed = 0
    with selectors.DefaultSelector() as waiting:
        for sock in sockets:
            waiting.register(sock, selectors.EVENT_READ)
        until = time.monotonic() + within
        while waiting.get_map() and (left := until - time.monotonic()) > 0:
            for key, _ in waiting.select(left):
                waiting.unregister(key.fileobj)
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    closed += sock.recv(1, socket.MSG_PEEK) == b""
                except ConnectionError:
                    closed += 1
    return closed


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
