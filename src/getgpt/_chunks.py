"""One body piece per network read instead of one per HTTP chunk, for chunked HTTP/1.1 replies.

A streaming server writes every event as its own HTTP chunk, and h11 (under httpx) turns each
chunk into one event that climbs five generator layers of httpcore and httpx: on a local stream
of small chat chunks that costs several times the whole rest of the client. :func:`coalesce`
gives the response's h11 connection a reader that returns every whole chunk already received
as one ``Data`` event; anything else -- a chunk cut by the end of a read, chunk extensions, the
last chunk and its trailers, a malformed frame -- goes to h11's own reader, so bytes, errors,
timeouts and connection reuse stay exactly h11's and httpx's.

It reaches into httpx/httpcore/h11 internals, so it checks each step and leaves the response
alone when anything is not what it expects (another HTTP version, a proxy or transport of
another kind, a different library version): the result is then only slower, never different.
"""

from __future__ import annotations

import importlib
import re
from itertools import repeat
from typing import Any

import h11
import httpx

__all__ = ["coalesce"]

# A chunk's size line; longer sizes than any worth batching go to h11, which judges them.
_HEAD = re.compile(rb"([0-9a-fA-F]{1,16})\r\n")
_FOOTER_HEAD = re.compile(rb"\r\n([0-9a-fA-F]{1,16})\r\n")
# Size lines of a whole run of chunks, joined with LF: bare hex only (int() would take more).
_SIZES = re.compile(rb"[0-9a-fA-F]{1,16}(?:\n[0-9a-fA-F]{1,16})*")


def _run(data: bytes) -> tuple[list[bytes], int] | None:
    """The payloads of the whole chunks that open ``data``, and the bytes they take; None if none.

    Split at CRLF, chunked framing alternates size line and payload. A pair whose payload has
    exactly the size its line gives, and is followed by CRLF, is a real chunk; by induction so is
    every pair before the first one that is not, so the run up to there is exact. A payload that
    itself holds CRLF breaks the alternation at once, and the caller takes the slow way.
    """
    parts = data.split(b"\r\n")
    count = (len(parts) - 1) // 2  # pairs whose payload a CRLF follows
    if count == 0:
        return None
    sizes = parts[0 : 2 * count : 2]
    payloads = parts[1 : 2 * count : 2]
    joined = b"\n".join(sizes)
    if joined.count(b"\n") != count - 1 or _SIZES.fullmatch(joined) is None:
        return None
    wanted = list(map(int, sizes, repeat(16)))
    lengths = list(map(len, payloads))
    if lengths != wanted or 0 in wanted:
        # The last chunk (size 0) or a chunk that is not one ends the run.
        good = 0
        while good < count and wanted[good] and lengths[good] == wanted[good]:
            good += 1
        if good == 0:
            return None
        sizes, payloads, wanted = sizes[:good], payloads[:good], wanted[:good]
    return payloads, sum(wanted) + sum(map(len, sizes)) + 4 * len(sizes)


def _chunked_reader() -> Any:
    try:
        module = importlib.import_module("h11._readers")
    except ImportError:  # another h11: nothing to coalesce
        return None
    return getattr(module, "ChunkedReader", None)


_ChunkedReader: Any = _chunked_reader()


class _Coalescing:
    """An h11 body reader: whole chunks in the buffer at once, the rest by h11's ``inner``."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, buf: Any) -> Any:
        inner = self._inner
        if inner._bytes_in_chunk or inner._reading_trailer:
            return inner(buf)  # mid-chunk or in the trailer: h11 goes on
        data = bytes(buf)
        if inner._bytes_to_discard:
            # The footer of a chunk h11 read: drop it here, or every later chunk would go to h11.
            if inner._bytes_to_discard != b"\r\n" or data[:2] != b"\r\n":
                return inner(buf)
            buf.maybe_extract_at_most(2)
            inner._bytes_to_discard = b""
            data = data[2:]
        run = _run(data)
        if run is not None:
            buf.maybe_extract_at_most(run[1])
            return h11.Data(data=b"".join(run[0]), chunk_start=True, chunk_end=True)
        parts = []
        pos = 0
        head = _HEAD.match(data)
        # Each step takes one chunk whose footer is here, matching its footer and the next
        # chunk's size line at once. Anything else ends the batch: extensions, spaces or junk
        # (h11's reader parses or rejects them), the last chunk, a chunk not all here yet.
        while head is not None:
            size = int(head[1], 16)
            if size == 0:
                break
            start = head.end()
            stop = start + size
            head = _FOOTER_HEAD.match(data, stop)
            if head is None and not data.startswith(b"\r\n", stop):
                break
            parts.append(data[start:stop])
            pos = stop + 2
        if not parts:
            return inner(buf)
        buf.maybe_extract_at_most(pos)
        return h11.Data(data=b"".join(parts), chunk_start=True, chunk_end=True)

    def read_eof(self) -> Any:
        return self._inner.read_eof()


def coalesce(response: httpx.Response) -> None:
    """Make ``response``'s unread chunked body arrive one network read at a time, if it can."""
    if _ChunkedReader is None or response.http_version != "HTTP/1.1":
        return
    try:
        # httpx's bound stream -> its httpcore wrapper -> the pool's stream -> HTTP/1.1 stream.
        stream: Any = response.stream
        connection = stream._stream._httpcore_stream._stream._connection
        state = connection._h11_state
        reader = state._reader
    except AttributeError:
        return
    if (
        isinstance(state, h11.Connection)
        and type(reader) is _ChunkedReader
        and reader._bytes_in_chunk == 0
        and reader._bytes_to_discard == b""
        and not reader._reading_trailer
    ):
        state._reader = _Coalescing(reader)
