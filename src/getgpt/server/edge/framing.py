"""Where a request ends in a connection's bytes, as uvicorn's parser (llhttp) will see it. Sans-IO.

The connection bounds (:mod:`getgpt.server.edge.connections`) give uvicorn's protocol one request
at a time: the head once it is whole, then its body as it arrives, and nothing past the body until
the app has answered it. They need to know where each body ends, which is all this module works
out: the body's length from ``Content-Length``, or its chunks when ``Transfer-Encoding`` ends in
``chunked``; no other header is read.

It frames as llhttp does (strict mode, as uvicorn runs it) for every request llhttp accepts
(``tests/server/test_framing.py`` feeds the same bytes to both). A request whose framing llhttp
would refuse -- ``Content-Length`` twice or beside ``Transfer-Encoding``, a length that is not a
number, a transfer coding not ending in ``chunked``, a chunk size that is not hexadecimal -- is
:class:`BadFraming` here too, so the bounds refuse it before uvicorn sees it rather than hand on
bytes whose end they cannot find.
"""

from __future__ import annotations

__all__ = ["CHUNKED", "MAX_CHUNK_LINE", "BadFraming", "Body", "read_head"]

#: Longest chunk-size line (with its extensions), and longest trailer section, in bytes.
MAX_CHUNK_LINE = 16 << 10
#: The length :func:`read_head` gives a chunked body: it is known only at its last chunk.
CHUNKED = -1

_HEX = frozenset(b"0123456789abcdefABCDEF")
_CONTENT_LENGTH = b"\r\ncontent-length:"
_TRANSFER_ENCODING = b"\r\ntransfer-encoding:"


class BadFraming(ValueError):
    """The bytes do not say where the request's body ends (llhttp refuses them as well)."""


def _value(head: bytes, lowered: bytes, at: int, name: bytes) -> tuple[bytes, int]:
    """The value of the header line found at ``at`` (its ``\r\n<name>:``), and where it ends."""
    start = at + len(name)
    end = lowered.index(b"\r\n", start)
    return head[start:end].strip(b" \t"), end


def read_head(head: bytes) -> tuple[int, bool]:
    """What a whole request head (its blank line included) says of what follows it: the bytes of
    its body (``0``: none; :data:`CHUNKED`: chunks), and whether llhttp may take it for a protocol
    switch (``Upgrade``, ``CONNECT``), after which uvicorn parses nothing more on the connection.
    Raises :class:`BadFraming`."""
    lowered = head.lower()
    upgrade = b"\r\nupgrade:" in lowered or head.startswith(b"CONNECT ")
    at = lowered.find(_TRANSFER_ENCODING)
    length_at = lowered.find(_CONTENT_LENGTH)
    if at < 0:
        if length_at < 0:
            return 0, upgrade
        value, end = _value(head, lowered, length_at, _CONTENT_LENGTH)
        if lowered.find(_CONTENT_LENGTH, end) >= 0:
            raise BadFraming("Content-Length given twice")
        if not value.isdigit():
            raise BadFraming("a Content-Length that is not a number")
        return int(value), upgrade
    if length_at >= 0:
        raise BadFraming("Content-Length beside Transfer-Encoding")
    # Several Transfer-Encoding lines are one list, as llhttp reads them: the last one counts.
    while at >= 0:
        codings, end = _value(head, lowered, at, _TRANSFER_ENCODING)
        at = lowered.find(_TRANSFER_ENCODING, end)
    if codings.rpartition(b",")[2].strip(b" \t").lower() != b"chunked":
        raise BadFraming("a transfer coding that does not end in chunked")
    return CHUNKED, upgrade


class Body:
    """The body of one request, followed through the bytes that carry it.

    :meth:`take` says where in a read the body ends; :attr:`done` once it has.
    """

    __slots__ = ("done", "left", "line", "trailer_bytes", "trailers")

    def __init__(self, length: int) -> None:
        #: Bytes left of a ``Content-Length`` body; of a chunked one, of the chunk (and its CRLF).
        self.left = 0 if length == CHUNKED else length
        #: ``None`` for a ``Content-Length`` body; a chunked one's unfinished line (size or trailer).
        self.line: bytes | None = b"" if length == CHUNKED else None
        self.trailers = False  # past the last chunk, in the trailer section
        self.trailer_bytes = 0
        self.done = length == 0

    @property
    def chunked(self) -> bool:
        return self.line is not None

    def take(self, data: bytes, start: int) -> int:
        """Where the body ends in ``data[start:]``: an index of ``data``, or ``len(data)`` if the
        body goes on past it. Raises :class:`BadFraming` on a chunk line llhttp would refuse."""
        line = self.line
        if line is None:
            size = len(data) - start
            if size < self.left:
                self.left -= size
                return len(data)
            end = start + self.left
            self.left = 0
            self.done = True
            return end
        if line:
            # A line split across two reads (rare): read it whole; an index of the joined bytes
            # is ``len(line)`` past the same index of ``data``.
            self.line = b""
            return self._chunks(line + data[start:], 0) + start - len(line)
        return self._chunks(data, start)

    def _chunks(self, data: bytes, pos: int) -> int:
        size = len(data)
        while pos < size:
            if self.left:
                step = min(self.left, size - pos)
                self.left -= step
                pos += step
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                rest = data[pos:]
                if len(rest) > MAX_CHUNK_LINE:
                    raise BadFraming("a chunk line longer than 16 KiB")
                self.line = rest
                return size
            line = data[pos:eol]
            pos = eol + 2
            if self.trailers:
                if not line:
                    self.done = True
                    return pos
                self.trailer_bytes += len(line) + 2
                if self.trailer_bytes > MAX_CHUNK_LINE:
                    raise BadFraming("trailers longer than 16 KiB")
                continue
            digits = line.partition(b";")[0]
            if not digits or not _HEX.issuperset(digits):
                raise BadFraming("a chunk size that is not hexadecimal")
            count = int(digits, 16)
            if count:
                self.left = count + 2  # the chunk's bytes, then its CRLF
            else:
                self.trailers = True
        return size
