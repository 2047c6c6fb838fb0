"""What every transport is and gives, whichever way it sends: the faces the code above is written to.

A transport sends requests to one origin. :meth:`Transport.send` sends the one request its owner
makes again and again -- a POST of ``body`` to the URL it was made for, its head serialised once --
and :meth:`Transport.request` any other method and path of the same origin with extra headers
(the gateway forwards ``GET /v1/models`` and ``POST /v1/embeddings`` that way). Both return once
the reply's status line and headers have arrived; the body comes from ``reads()``.

Time is bounded three ways. :class:`Timeouts` bound each step -- connecting, sending, each read
(the longest silence) -- and the head (status line and headers in all, however they trickle).
``deadline``, a moment on the ``time.monotonic()`` clock given to ``send``/``request``, bounds the
whole reply, body included: connecting, sending and every read are cut short to end by it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_HEADERS",
    "KEEPALIVE",
    "MAX_IDLE",
    "AsyncResponse",
    "AsyncTransport",
    "Request",
    "Response",
    "ResponseHead",
    "Timeouts",
    "Transport",
    "basic_credentials",
    "bracketed",
    "without_credentials",
]

#: Seconds an idle connection is kept, either way: under the 5 s uvicorn and others keep
#: theirs, so a connection is dropped here before the server drops it under a request.
KEEPALIVE = 4.0
#: Idle connections kept for reuse, unless told otherwise.
MAX_IDLE = 20
#: Sent unless the caller's headers say otherwise. Identity: a compressed body must be decoded
#: before it can be parsed, and a decoder is work (and memory) nobody asked for.
DEFAULT_HEADERS: Mapping[str, str] = {"Accept": "*/*", "Accept-Encoding": "identity"}


def without_credentials(url: str) -> str:
    """``url`` as messages name it: without the credentials it may carry (they may travel on,
    to a log or to the gateway's own client)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(
        (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment)
    )


def bracketed(host: str) -> str:
    """``host`` as a URL or a ``Host`` header writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def basic_credentials(user: str, password: str | None) -> str:
    """The ``Authorization`` (or ``Proxy-Authorization``) value for a URL's percent-encoded
    ``user`` and ``password``."""
    pair = f"{unquote(user)}:{unquote(password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed, None for no limit.

    ``connect``: to open the connection (TCP, a proxy's tunnel, the TLS handshake); ``read``: for
    each read, the longest silence; ``write``: to send a request; ``pool``: to wait for a free
    connection (only httpx ever waits for one); ``head``: from the request sent to the reply's
    status line and headers all arrived, interim (1xx) replies included.
    """

    connect: float | None = 5.0
    read: float | None = 600.0
    write: float | None = 600.0
    pool: float | None = 600.0
    head: float | None = 600.0


class ResponseHead(Protocol):
    """A reply's status line and headers (header names in lower case)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


class Response(ResponseHead, Protocol):
    """A reply whose head has arrived. ``close()`` gives its connection back, or closes it."""

    def reads(self) -> Iterator[bytes]:
        """The body, decoded, one read per network read as it arrives (a decoded block at most)."""
        ...

    def read(self) -> bytes: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Request:
    """A request other than a transport's fixed POST: ``method`` to ``target``, a path of the
    transport's origin (``/v1/models``); ``headers`` are added to the transport's own, replacing
    those of the same name."""

    method: str
    target: str
    headers: Mapping[str, str] | None = None
    body: bytes = b""


class Transport(Protocol):
    def send(self, body: bytes, *, deadline: float | None = None) -> Response:
        """POSTs ``body`` to the transport's URL with its headers; the reply must end by ``deadline``."""
        ...

    def request(self, request: Request, *, deadline: float | None = None) -> Response:
        """Sends ``request`` (a method and a path of the same origin, such as ``GET /v1/models``)."""
        ...

    def close(self) -> None: ...


class AsyncResponse(ResponseHead, Protocol):
    def reads(self) -> AsyncIterator[bytes]: ...
    async def read(self) -> bytes: ...
    async def aclose(self) -> None: ...


class AsyncTransport(Protocol):
    async def send(self, body: bytes, *, deadline: float | None = None) -> AsyncResponse: ...

    async def request(self, request: Request, *, deadline: float | None = None) -> AsyncResponse: ...

    async def aclose(self) -> None: ...
