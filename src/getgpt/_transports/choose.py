"""Which way requests to one URL travel: the lean HTTP/1.1 path, or httpx. Chosen here only.

The lean path (:mod:`getgpt._transports.http11`) carries every request it can, through an HTTP
proxy too. httpx (:mod:`getgpt._transports.httpx`) carries the rest: a caller's ``transport=``
or ``http_client=``, a SOCKS or HTTPS proxy, an interpreter httptools has no build for, and, for
the async transport, any event loop but asyncio's (trio, through anyio) -- that last one chosen
per request, since one :class:`getgpt.AsyncClient` may be used under both.

The proxy is chosen here too, the same for both ways: the one given, else the environment's
(``HTTP(S)_PROXY``, ``ALL_PROXY``) unless ``NO_PROXY`` lists the host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from .base import MAX_IDLE, AsyncResponse, AsyncTransport, Request, Timeouts, Transport
from .http11.origin import Endpoint, check_headers, endpoint
from .http11.proxy import parse_proxy, proxy_url_for
from .http11.tls import Verify, context

if TYPE_CHECKING:
    import httpx

__all__ = ["LeanOrElsewhere", "async_transport", "transport"]


def _lean_route(
    url: str, headers: Mapping[str, str], proxy: str | None
) -> tuple[Endpoint | None, str | None]:
    """The lean path's endpoint (None when httpx must carry the requests), and the proxy URL.

    Raises ValueError for a URL no way can send to, or a header that could not be sent.
    """
    direct = endpoint(url, headers)
    chosen = proxy_url_for(direct.scheme, direct.host, direct.port, proxy)
    try:
        import httptools  # noqa: F401  # the lean path's parser
    except ImportError:  # no build for this interpreter
        return None, chosen
    if chosen is None:
        return direct, None
    if parse_proxy(chosen).scheme != "http":
        return None, chosen  # SOCKS, or TLS to the proxy itself
    return endpoint(url, headers, parse_proxy(chosen)), chosen


def transport(
    url: str,
    headers: Mapping[str, str],
    *,
    timeouts: Timeouts,
    verify: Verify = True,
    max_idle: int = MAX_IDLE,
    proxy: str | None = None,
    transport: httpx.BaseTransport | None = None,
    http_client: httpx.Client | None = None,
) -> Transport:
    """A blocking transport for requests to ``url``'s origin, POSTs to ``url`` its fast path."""
    check_headers(headers)
    where, proxy_url = (None, proxy) if transport or http_client else _lean_route(url, headers, proxy)
    if where is not None:
        from .http11.pool import Pool

        tls = context(verify) if where.scheme == "https" else None
        return Pool(where, timeouts, tls, max_idle=max_idle)
    from . import httpx as way

    http = http_client or way.client(timeouts, context(verify), max_idle, proxy_url, transport)
    return way.HttpxTransport(http, url, headers)


# The async twin of transport(): the same choice, an async transport.
def async_transport(
    url: str,
    headers: Mapping[str, str],
    *,
    timeouts: Timeouts,
    verify: Verify = True,
    max_idle: int = MAX_IDLE,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> AsyncTransport:
    """An async transport for requests to ``url``'s origin, POSTs to ``url`` its fast path."""
    check_headers(headers)
    where, proxy_url = (None, proxy) if transport or http_client else _lean_route(url, headers, proxy)

    def through_httpx() -> AsyncTransport:
        from . import httpx as way

        http = http_client or way.async_client(timeouts, context(verify), max_idle, proxy_url, transport)
        return way.AsyncHttpxTransport(http, url, headers, timeouts)

    if where is None:
        return through_httpx()
    from .http11.async_pool import AsyncPool

    tls = context(verify) if where.scheme == "https" else None
    return LeanOrElsewhere(AsyncPool(where, timeouts, tls, max_idle=max_idle), through_httpx)


class LeanOrElsewhere:
    """The lean pool under asyncio (uvloop included); under any other event loop -- trio,
    directly or through anyio -- the httpx transport, made the first time it is needed."""

    def __init__(self, lean: AsyncTransport, elsewhere: Callable[[], AsyncTransport]) -> None:
        self.lean = lean
        #: The httpx transport, once a request was sent outside asyncio.
        self.elsewhere: AsyncTransport | None = None
        self._make_elsewhere = elsewhere

    def _here(self) -> AsyncTransport:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not asyncio's loop
            if self.elsewhere is None:
                self.elsewhere = self._make_elsewhere()
            return self.elsewhere
        return self.lean

    # Not ``async def``: the coroutine of the transport chosen is handed over as it is, so the
    # choice costs no coroutine of its own.
    def send(self, body: bytes, *, deadline: float | None = None) -> Coroutine[Any, Any, AsyncResponse]:
        return self._here().send(body, deadline=deadline)

    def request(
        self, request: Request, *, deadline: float | None = None
    ) -> Coroutine[Any, Any, AsyncResponse]:
        return self._here().request(request, deadline=deadline)

    async def aclose(self) -> None:
        await self.lean.aclose()
        if self.elsewhere is not None:
            await self.elsewhere.aclose()
