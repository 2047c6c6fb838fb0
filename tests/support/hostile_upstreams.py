"""Hostile upstreams: scripts for :class:`tests.support.faults.FaultUpstream` that attack a client.

Compression bombs, header floods, repeated-header floods, endless interim (1xx) replies, a head
trickled a byte at a time, a stream kept alive by comments forever, a huge JSON reply. Each script
stops when its peer goes away (a write fails) or after ``faults.PATIENCE`` seconds, so a test can
never hang on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import zlib
from collections.abc import Iterator

from .faults import PATIENCE, Script, events

__all__ = [
    "BOMB_SIZE",
    "bomb",
    "comments_forever",
    "endless_interim",
    "header_flood",
    "huge_json",
    "repeated_header_flood",
    "trickled_head",
]

#: What a bomb expands to: far more than a client may hold.
BOMB_SIZE = 512 << 20
_SSE = b"Content-Type: text/event-stream\r\n"
_JSON = b"Content-Type: application/json\r\n"


@functools.cache
def _packed(coding: str, filler: bytes) -> bytes:
    """``BOMB_SIZE`` bytes of ``filler`` in ``coding``, made in milliseconds.

    After a full flush the compressor forgets what it saw, so every further megabyte of filler
    compresses to the same bytes: two megabytes are compressed, the second one's bytes repeated,
    and the trailer (gzip's CRC-32 and size, zlib's Adler-32) written for the whole.
    """
    gzipped = coding in ("gzip", "x-gzip")
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS if gzipped else zlib.MAX_WBITS)
    block = filler * (1 << 20)
    first = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.flush(zlib.Z_FINISH)[: -8 if gzipped else -4]  # the last block, not its trailer
    count = BOMB_SIZE // len(block)
    if gzipped:
        crc = 0
        for _ in range(count):
            crc = zlib.crc32(block, crc)
        trailer = crc.to_bytes(4, "little") + (BOMB_SIZE & 0xFFFFFFFF).to_bytes(4, "little")
    else:
        adler = 1
        for _ in range(count):
            adler = zlib.adler32(block, adler)
        trailer = adler.to_bytes(4, "big")
    return first + again * (count - 1) + end + trailer


def bomb(coding: str, kind: str) -> Script:
    """A 200 whose body is ``BOMB_SIZE`` bytes compressed to well under a megabyte.

    ``kind`` ``"json"``: an application/json body of spaces (never a whole JSON value);
    ``"sse"``: an event stream of blank lines (never an event).
    """
    assert coding in ("gzip", "x-gzip", "deflate") and kind in ("json", "sse")
    # x-gzip is gzip by another name: one packing serves both (0.12 s of CPU each).
    body = _packed("gzip" if coding == "x-gzip" else coding, b" " if kind == "json" else b"\n")
    head = b"HTTP/1.1 200 OK\r\n" + (_JSON if kind == "json" else _SSE)
    head += b"Content-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (coding.encode(), len(body))
    return _writes(head + body)


def header_flood(count: int = 200_000) -> Script:
    """A 200 whose head has ``count`` different headers (about 20 bytes each)."""
    lines = b"".join(b"X-Flood-%d: %d\r\n" % (i, i) for i in range(count))
    return _writes(b"HTTP/1.1 200 OK\r\n" + _SSE + lines + b"Content-Length: 0\r\n\r\n")


def repeated_header_flood(count: int = 100_000) -> Script:
    """A 200 whose head repeats one header name ``count`` times: joining naively is quadratic."""
    lines = b"Set-Cookie: a=b\r\n" * count
    return _writes(b"HTTP/1.1 200 OK\r\n" + _SSE + lines + b"Content-Length: 0\r\n\r\n")


def endless_interim() -> Script:
    """``100 Continue`` after ``100 Continue``, never a final reply."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            while time.monotonic() - started < PATIENCE:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 64)
                await writer.drain()
                await asyncio.sleep(0.001)  # the hostile upstream's pace, not a wait of the test's

    return script


def trickled_head(every: float) -> Script:
    """A valid streamed reply whose head arrives one byte each ``every`` seconds."""
    head = b"HTTP/1.1 200 OK\r\n" + _SSE + b"X-Padding: " + b"p" * 200 + b"\r\nConnection: close\r\n\r\n"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in _bytes(head):
                if time.monotonic() - started > PATIENCE:
                    return
                writer.write(byte)
                await writer.drain()
                await asyncio.sleep(every)  # the hostile upstream's pace, not a wait of the test's
            writer.write(events("late") + b"data: [DONE]\n\n")
            await writer.drain()

    return script


def comments_forever(*texts: str, every: float = 0.2) -> Script:
    """Some events, then an SSE comment each ``every`` seconds: alive, but never ending."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            writer.write(b"HTTP/1.1 200 OK\r\n" + _SSE + b"Connection: close\r\n\r\n" + events(*texts))
            await writer.drain()
            while time.monotonic() - started < PATIENCE:
                await asyncio.sleep(every)  # the hostile upstream's pace, not a wait of the test's
                writer.write(b": still here\n\n")
                await writer.drain()

    return script


def huge_json(size: int = 300 << 20) -> Script:
    """An application/json reply of ``size`` bytes, sent as fast as the peer reads it."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        prefix = b'{"choices":[{"message":{"content":"'
        block = b"x" * (1 << 20)
        head = b"HTTP/1.1 200 OK\r\n" + _JSON + b"Content-Length: %d\r\n\r\n" % size
        with contextlib.suppress(ConnectionError):
            writer.write(head + prefix)
            sent = len(prefix)
            while sent < size:
                piece = block[: size - sent]
                writer.write(piece)
                sent += len(piece)
                await writer.drain()

    return script


def _bytes(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


def _writes(data: bytes) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(data)
            await writer.drain()

    return script
