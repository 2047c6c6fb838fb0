"""Reading a response's body within a bound: whole (:func:`read_body`) or an error's excerpt.

- :func:`read_body` / :func:`aread_body` read a whole (non-streamed) response's body, refused with
  :class:`~getgpt.protocol.errors.LimitExceeded` as soon as it passes ``limit`` bytes.
- :func:`read_excerpt` / :func:`aread_excerpt` read the start of an error response's body, at most
  ``limit`` bytes and never raising: the status alone is the error.

Each pair is a sync/async twin.
"""

from __future__ import annotations

from .._transports.base import AsyncResponse, Response
from ..protocol.errors import GetGptError, LimitExceeded

__all__ = ["DEFAULT_MAX_REPLY_BYTES", "EXCERPT", "aread_body", "aread_excerpt", "read_body", "read_excerpt"]

#: Bytes of an error body kept by default.
EXCERPT = 2048
#: Largest whole (non-streamed) reply read by default: a chat reply is a few kilobytes.
DEFAULT_MAX_REPLY_BYTES = 16 << 20


def read_body(response: Response, limit: int, url: str = "the upstream") -> bytes:
    """A response's whole body; :class:`~getgpt.protocol.errors.LimitExceeded` as soon as it passes ``limit``
    bytes (``url`` names the response in the message: give none whose credentials must not show)."""
    reads, size = [], 0
    for read in response.reads():
        size += len(read)
        if size > limit:
            raise _too_large(url, limit)
        reads.append(read)
    return b"".join(reads)


# The async twin of read_body().
async def aread_body(response: AsyncResponse, limit: int, url: str = "the upstream") -> bytes:
    """:func:`read_body` of an async response."""
    reads, size = [], 0
    async for read in response.reads():
        size += len(read)
        if size > limit:
            raise _too_large(url, limit)
        reads.append(read)
    return b"".join(reads)


def _too_large(url: str, limit: int) -> LimitExceeded:
    amount = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"
    return LimitExceeded(f"the reply from {url} is larger than {amount} (max_reply_bytes)")


def read_excerpt(response: Response, limit: int = EXCERPT) -> bytes:
    """The start of a response's body, at least ``limit`` bytes of it if there are that many, or what
    could be read before it broke."""
    excerpt = b""
    try:
        for read in response.reads():
            excerpt += read
            if len(excerpt) >= limit:
                break
    except GetGptError:
        pass  # the status alone is the error; a broken body adds nothing
    return excerpt


# The async twin of read_excerpt().
async def aread_excerpt(response: AsyncResponse, limit: int = EXCERPT) -> bytes:
    """:func:`read_excerpt` of an async response."""
    excerpt = b""
    try:
        async for read in response.reads():
            excerpt += read
            if len(excerpt) >= limit:
                break
    except GetGptError:
        pass  # the status alone is the error; a broken body adds nothing
    return excerpt
