"""Content codings, the same both ways: which a request asked for, and a bounded decoder for each.

A reply's ``Content-Encoding`` is honoured only when the request's ``Accept-Encoding`` asked for it:
the transports ask for ``identity`` unless the caller's headers say otherwise, so a gzip body
nobody asked for is a :class:`~getgpt.protocol.errors.ProtocolError` at its first byte, never decoded.
gzip (and its old name x-gzip) and deflate can be asked for; anything else is refused. The
refusal waits for the body: a reply's status and headers are still read (an error status is
still that status).

A :class:`Decoder` never hands over more than ``limit`` bytes at a time, however little input made
them: a megabyte of gzip that inflates to gigabytes (a compression bomb) comes out a block at a
time, each taken by the consumer before the next is made.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from ..protocol.errors import ProtocolError

__all__ = ["PIECE", "BodyDecoder", "Decoder", "Refusal", "accepted", "decoder_for"]

#: Most bytes one decoded block holds.
PIECE = 1 << 16
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def accepted(headers: Mapping[str, str]) -> frozenset[str]:
    """The codings a request with ``headers`` asked for (names looked up in any case).

    Without an ``Accept-Encoding`` header, none but identity; a coding with ``q=0`` is refused;
    ``*`` stands for every coding this module decodes.
    """
    value = next((v for k, v in headers.items() if k.lower() == "accept-encoding"), "identity")
    codings: set[str] = set()
    for item in value.lower().split(","):
        name, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, number = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(number)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if name == "*":
            codings.update(_WBITS)
        elif name in ("gzip", "x-gzip"):  # two names of one coding
            codings.update(("gzip", "x-gzip"))
        elif name:
            codings.add(name)
    return frozenset(codings & _WBITS.keys())


class Decoder:
    """Decodes one body, block by block, at most ``limit`` bytes a call."""

    __slots__ = ("_coding", "_first", "_tail", "_zlib", "pending")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib = zlib.decompressobj(_WBITS[coding])
        # The input that has not made output yet, and, until some has, the very first input: a
        # deflate body may lack its zlib wrapper, and is decoded again raw when it does.
        self._tail = b""
        self._first: bytes | None = b""
        #: True when more output may come from what was given already: call again with b"".
        self.pending = False

    def decode(self, data: bytes, url: str, limit: int = PIECE) -> bytes:
        """Up to ``limit`` bytes from what was left over and ``data``; ``url`` names the reply."""
        if self._tail:
            data = self._tail + data
        if self._first is not None:
            self._first += data
        try:
            out = self._zlib.decompress(data, limit)
        except zlib.error as exc:
            if self._coding != "deflate" or self._first is None:
                raise ProtocolError(f"undecodable reply from {url}: bad compressed body: {exc}") from None
            # Some servers send deflate as a raw stream, without the zlib wrapper it should have.
            first, self._first = self._first, None
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            self._tail = b""
            return self.decode(first, url, limit)
        if out:
            self._first = None
        self._tail = self._zlib.unconsumed_tail
        # A full block may have left output inside zlib even with no input left over.
        self.pending = bool(self._tail) or len(out) == limit
        return out


class Refusal:
    """The decoder of a body that may not be decoded: it refuses the body's first byte."""

    __slots__ = ("error",)

    pending = False

    def __init__(self, error: ProtocolError) -> None:
        self.error = error

    def decode(self, data: bytes, url: str, limit: int = PIECE) -> bytes:
        if data:
            raise self.error
        return b""


BodyDecoder = Decoder | Refusal


def decoder_for(coding: str, asked: frozenset[str], url: str) -> BodyDecoder | None:
    """The decoder for a ``Content-Encoding`` header's value; None for identity; a
    :class:`Refusal` for a coding this module cannot decode or ``asked`` does not hold."""
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding not in _WBITS:
        return Refusal(
            ProtocolError(f"undecodable reply from {url}: unsupported content-encoding {coding!r}")
        )
    if coding not in asked:
        what = ", ".join(sorted(asked)) or "identity"
        message = (
            f"{url} sent a {coding} body, which was not asked for (Accept-Encoding: {what}): not decoded"
        )
        return Refusal(ProtocolError(message))
    return Decoder(coding)
