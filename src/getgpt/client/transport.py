"""The one door to the transports for the rest of getgpt: open a transport to an upstream.

:func:`open_transport` opens an async transport to an upstream URL: the lean HTTP/1.1 path under
asyncio (through an HTTP proxy if the environment names one), httpx for anything else. It sends
the fixed POST with ``send(body)`` and any other method and path of the same origin with
``request(method, path, headers=..., body=...)``; responses have ``status_code``,
``reason_phrase``, ``headers`` (lower-case names), ``reads()``, ``read()``, ``aclose()``.
:class:`ResponseReader` is the transports' sans-IO HTTP/1.1 response parser, for code that reads
a raw socket on purpose (``getgpt check`` looks at framing faults a client would hide).

Transports raise only :mod:`getgpt.protocol.errors`: :class:`~getgpt.protocol.errors.TransportError`
(with :class:`~getgpt.protocol.errors.ConnectError` and :class:`~getgpt.protocol.errors.Timeout`
under it) when the connection fails, :class:`~getgpt.protocol.errors.ProtocolError` when the
response cannot be decoded, and :class:`~getgpt.protocol.errors.LimitExceeded` (a ProtocolError)
when it goes past a bound.

Bounds: ``Timeouts(connect=, read=, write=, pool=, head=)`` bound each step (``read`` each read,
``head`` the status line and headers in all); ``send(body, deadline=time.monotonic() + s)`` (and
``request(..., deadline=)``) bounds a whole response, body included. A head is at most 64 KiB and
256 headers, at most 16 interim (1xx) responses precede it; a compressed body is decoded only when
the request's ``Accept-Encoding`` asked for it (the transports ask for identity unless the headers
say otherwise), 64 KiB at a time.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._transports.base import (
    AsyncResponse,
    AsyncTransport,
    Request,
    Response,
    ResponseHead,
    Timeouts,
    bracketed,
    without_credentials,
)
from .._transports.choose import async_transport
from .._transports.http11.reader import ResponseReader

__all__ = [
    "AsyncResponse",
    "AsyncTransport",
    "Request",
    "Response",
    "ResponseHead",
    "ResponseReader",
    "Timeouts",
    "bracketed",
    "open_transport",
    "without_credentials",
]


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
