"""Raw HTTP/1.1 reply bytes for the tests that write a reply by hand."""

from __future__ import annotations

__all__ = ["CHUNKED", "chunked"]

#: A 200 event-stream head whose body is chunked.
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(*parts: bytes) -> bytes:
    """``parts`` as HTTP chunks, then the last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
