"""Which way a POST to one URL travels: the lean HTTP/1.1 path, or httpx.

The lean path (:mod:`getgpt._http11`) carries every request it can; httpx (:mod:`getgpt._httpx`)
carries the rest -- a proxy (given, or named by the environment), a custom transport, a
ready-made httpx client, a URL with credentials or a non-ASCII host, an interpreter httptools
has no build for. Both give the same face, drawn here as protocols: ``send(body)`` returns a
reply whose status line and headers have arrived and whose body comes from ``reads()``.
The clients and the server's forwarding backends choose through :func:`sender` and
:func:`async_sender`, so the choice is made in one place.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from ._httpx import AsyncHttpxSender, HttpxSender

#: Seconds an idle connection is kept, either way: under the 5 s uvicorn and others keep
#: theirs, so a connection is dropped here before the server drops it under a request.
KEEPALIVE = 4.0

if TYPE_CHECKING:
    from ._http11 import Endpoint

__all__ = [
    "AsyncIncoming",
    "AsyncSender",
    "Head",
    "Incoming",
    "Sender",
    "async_sender",
    "lean_endpoint",
    "sender",
]


class Head(Protocol):
    """A reply's status line and headers (header names looked up in lower case)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


class Incoming(Head, Protocol):
    def reads(self) -> Iterator[bytes]: ...
    def read(self) -> bytes: ...
    def close(self) -> None: ...


class Sender(Protocol):
    def send(self, body: bytes) -> Incoming: ...
    def close(self) -> None: ...


class AsyncIncoming(Head, Protocol):
    def reads(self) -> AsyncIterator[bytes]: ...
    async def read(self) -> bytes: ...
    async def aclose(self) -> None: ...


class AsyncSender(Protocol):
    async def send(self, body: bytes) -> AsyncIncoming: ...
    async def aclose(self) -> None: ...


Verify = bool | ssl.SSLContext


def _httpx_options(
    timeout: httpx.Timeout, verify: Verify, max_idle: int, proxy: str | None, transport: object
) -> dict[str, Any]:
    """An httpx client's settings, made to behave as the lean pools do."""
    return {
        "timeout": timeout,
        "proxy": proxy,
        "verify": verify,
        "transport": transport,
        # No cap on connections at once; ``max_idle`` kept as long as the lean pools keep them.
        "limits": httpx.Limits(
            max_connections=None, max_keepalive_connections=max_idle, keepalive_expiry=KEEPALIVE
        ),
        # No cookies: one a reply sets must not ride on the next request (the server's
        # backends serve many users through one sender).
        "cookies": CookieJar(DefaultCookiePolicy(allowed_domains=[])),
    }


def lean_endpoint(url: str, headers: Mapping[str, str]) -> Endpoint | None:
    """The lean path's endpoint for ``url``, or None when only httpx can carry the request."""
    try:
        from ._http11 import endpoint
    except ImportError:  # httptools has no build for this interpreter
        return None
    return endpoint(url, headers)


def sender(
    url: str,
    headers: Mapping[str, str],
    *,
    timeout: httpx.Timeout,
    verify: Verify = True,
    max_idle: int = 20,
    proxy: str | None = None,
    transport: httpx.BaseTransport | None = None,
    http_client: httpx.Client | None = None,
) -> Sender:
    """A blocking sender of POSTs to ``url``."""
    where = None if proxy or transport or http_client else lean_endpoint(url, headers)
    if where is not None:
        from ._http11 import Pool

        return Pool(where, timeout, verify=verify, max_idle=max_idle)
    http = http_client or httpx.Client(**_httpx_options(timeout, verify, max_idle, proxy, transport))
    return HttpxSender(http, url, headers)


def async_sender(
    url: str,
    headers: Mapping[str, str],
    *,
    timeout: httpx.Timeout,
    verify: Verify = True,
    max_idle: int = 20,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    http_client: httpx.AsyncClient | None = None,
    lean: bool = True,
) -> AsyncSender:
    """A sender of POSTs to ``url``; the lean path speaks asyncio only (``lean=False`` for trio)."""
    where = None if proxy or transport or http_client or not lean else lean_endpoint(url, headers)
    if where is not None:
        from ._http11 import AsyncPool

        return AsyncPool(where, timeout, verify=verify, max_idle=max_idle)
    http = http_client or httpx.AsyncClient(**_httpx_options(timeout, verify, max_idle, proxy, transport))
    return AsyncHttpxSender(http, url, headers)
