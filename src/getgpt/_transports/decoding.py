"""Content codings: the decoder a reply's ``Content-Encoding`` calls for, the same both ways.

gzip (and its old name x-gzip) and deflate are decoded; identity needs nothing; any other coding
is a :class:`~getgpt.errors.ProtocolError`, as is a body its coding cannot decode.
"""

from __future__ import annotations

import zlib

from ..errors import ProtocolError

__all__ = ["Decoder", "decoder_for"]

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Decoder:
    """Decodes one body, piece by piece."""

    __slots__ = ("_coding", "_started", "_zlib")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib = zlib.decompressobj(_WBITS[coding])
        self._started = False

    def decode(self, data: bytes, url: str) -> bytes:
        """The bytes ``data`` decodes to; ``url`` names the reply in an error."""
        try:
            out = self._zlib.decompress(data)
        except zlib.error as exc:
            if self._coding != "deflate" or self._started:
                raise ProtocolError(f"undecodable reply from {url}: bad compressed body: {exc}") from None
            # Some servers send deflate as a raw stream, without the zlib wrapper it should have.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            self._started = True
            return self.decode(data, url)
        self._started = True
        return out


def decoder_for(coding: str, url: str) -> Decoder | None:
    """The decoder for a ``Content-Encoding`` header's value; None for identity."""
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding not in _WBITS:
        raise ProtocolError(f"undecodable reply from {url}: unsupported content-encoding {coding!r}")
    return Decoder(coding)
