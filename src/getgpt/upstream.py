"""Talking to an upstream API server: what the clients and the server's forwarding backends share.

An internal interface, not part of getgpt's public API: it may change with the package. It is
the one module :mod:`getgpt.server` uses of the client side's HTTP machinery, so the server never
reaches into the clients' or the transports' private parts.

- :func:`open_transport` opens an async transport to an upstream URL: the lean HTTP/1.1 path under
  asyncio (through an HTTP proxy if the environment names one), httpx for anything else. It
  sends the fixed POST with ``send(body)`` and any other method and path of the same origin with
  ``request(method, path, headers=..., body=...)``; replies have ``status_code``,
  ``reason_phrase``, ``headers`` (lower-case names), ``reads()``, ``read()``, ``aclose()``.
- :func:`read_body` / :func:`aread_body` read a whole (non-streamed) reply's body, refused with
  :class:`~getgpt.errors.LimitExceeded` as soon as it passes ``limit`` bytes.
- :func:`read_excerpt` / :func:`aread_excerpt` read the start of an error reply's body, at most
  ``limit`` bytes and never raising: the status alone is the error.
- :func:`error_message` is the ``message`` of an OpenAI-style ``{"error": ...}`` body.
- :func:`retry_after` reads a ``Retry-After`` header (seconds or an HTTP date) as seconds.
- :func:`is_cloudflare_block` tells a Cloudflare challenge page from an API's own error.
- :data:`USER_AGENT` is the browser's the GetGpt protocol's clients send.

Transports raise only :mod:`getgpt.errors`: :class:`~getgpt.errors.TransportError` (with
:class:`~getgpt.errors.ConnectError` and :class:`~getgpt.errors.Timeout` under it) when the
connection fails, :class:`~getgpt.errors.ProtocolError` when the reply cannot be decoded, and
:class:`~getgpt.errors.LimitExceeded` (a ProtocolError) when it goes past a bound.

Bounds: ``Timeouts(connect=, read=, write=, pool=, head=)`` bound each step (``read`` each read,
``head`` the status line and headers in all); ``send(body, deadline=time.monotonic() + s)`` (and
``request(..., deadline=)``) bounds a whole reply, body included. A head is at most 64 KiB and 256
headers, at most 16 interim (1xx) replies precede it; a compressed body is decoded only when the
request's ``Accept-Encoding`` asked for it (the transports ask for identity unless the headers say
otherwise), 64 KiB at a time.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import msgspec

from ._transports.base import AsyncResponse, AsyncTransport, Response, ResponseHead, Timeouts
from ._transports.choose import async_transport
from .errors import GetGptError, LimitExceeded

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "EXCERPT",
    "USER_AGENT",
    "AsyncResponse",
    "AsyncTransport",
    "Response",
    "ResponseHead",
    "Timeouts",
    "aread_body",
    "aread_excerpt",
    "error_message",
    "is_cloudflare_block",
    "open_transport",
    "read_body",
    "read_excerpt",
    "retry_after",
]

#: Bytes of an error body kept by default.
EXCERPT = 2048
#: Largest whole (non-streamed) reply read by default: a chat reply is a few kilobytes.
DEFAULT_MAX_REPLY_BYTES = 16 << 20
#: The GetGpt protocol's clients present themselves as a browser, as the original page did.
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
_CLOUDFLARE_MARKERS = (b"cloudflare", b"cf-chl", b"cf-ray")


def open_transport(
    url: str,
    headers: Mapping[str, str],
    *,
    timeouts: Timeouts,
    max_idle: int,
    verify: bool | str = True,
    proxy: str | None = None,
) -> AsyncTransport:
    """An async transport for requests to ``url``'s origin; ``send(body)`` POSTs to ``url``."""
    return async_transport(url, headers, timeouts=timeouts, verify=verify, max_idle=max_idle, proxy=proxy)


def read_body(response: Response, limit: int, url: str = "the upstream") -> bytes:
    """A reply's whole body; :class:`~getgpt.errors.LimitExceeded` as soon as it passes ``limit``
    bytes (``url`` names the reply in the message: give none whose credentials must not show)."""
    pieces, size = [], 0
    for piece in response.reads():
        size += len(piece)
        if size > limit:
            raise _too_large(url, limit)
        pieces.append(piece)
    return b"".join(pieces)


async def aread_body(response: AsyncResponse, limit: int, url: str = "the upstream") -> bytes:
    """:func:`read_body` of an async reply."""
    pieces, size = [], 0
    async for piece in response.reads():
        size += len(piece)
        if size > limit:
            raise _too_large(url, limit)
        pieces.append(piece)
    return b"".join(pieces)


def _too_large(url: str, limit: int) -> LimitExceeded:
    amount = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"
    return LimitExceeded(f"the reply from {url} is larger than {amount} (max_reply_bytes)")


def read_excerpt(response: Response, limit: int = EXCERPT) -> bytes:
    """The start of a reply's body, at least ``limit`` bytes of it if there are that many, or what
    could be read before it broke."""
    excerpt = b""
    try:
        for chunk in response.reads():
            excerpt += chunk
            if len(excerpt) >= limit:
                break
    except GetGptError:
        pass  # the status alone is the error; a broken body adds nothing
    return excerpt


async def aread_excerpt(response: AsyncResponse, limit: int = EXCERPT) -> bytes:
    """:func:`read_excerpt` of an async reply."""
    excerpt = b""
    try:
        async for chunk in response.reads():
            excerpt += chunk
            if len(excerpt) >= limit:
                break
    except GetGptError:
        pass  # the status alone is the error; a broken body adds nothing
    return excerpt


def error_message(body: bytes) -> str | None:
    """The ``message`` of an OpenAI-style ``{"error": {...}}`` body (or its ``error`` string), if any."""
    # A hostile body may hold invalid UTF-8 or nest past msgspec's depth limit.
    try:
        value = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    error = value.get("error") if isinstance(value, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (never negative), or None if it says nothing usable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def is_cloudflare_block(response: ResponseHead, body: bytes) -> bool:
    """Whether a 403/503 is a Cloudflare challenge or block page rather than the API's own answer."""
    # Every response through Cloudflare has a cf-ray header, an API's own errors too: only a
    # challenge header or an HTML page that names Cloudflare marks a block.
    if response.status_code not in (403, 503):
        return False
    if response.headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    head = body[:EXCERPT].lower()
    return head.lstrip()[:1] == b"<" and any(marker in head for marker in _CLOUDFLARE_MARKERS)
