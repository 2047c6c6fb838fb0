"""The way through httpx, for what the lean path does not do: SOCKS and HTTPS proxies, a caller's
``transport=`` or ``http_client=``, and trio.

These adapters give an httpx client the transports' face (:mod:`getgpt._transports.base`), so
the code above is written once. httpx runs unpatched: its body is read raw (``iter_raw``) and
decoded by :mod:`getgpt._transports.decoding`, as on the lean path, so both ways honour the same
codings, at most 64 KiB a read. Every httpx exception is mapped to getgpt's own in one place,
:func:`mapped_errors`.

Time bounds: asynchronously (asyncio or trio, through anyio) the head bound and the deadline are
kept exactly, by cancelling the wait. Synchronously httpx offers no way to cut a read short once
it began: with a deadline each read's timeout is cut to the time left when the request is sent,
and the deadline is checked between reads, so a reply may overrun it by up to that much; the head
is bounded per read only (h11, below httpx, reads a head of at most 100 KiB). The lean path keeps
both exactly either way.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from contextlib import contextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx

from ..protocol.errors import ConnectError, ProtocolError, Timeout, TransportError
from .base import DEFAULT_HEADERS, KEEPALIVE, MAX_IDLE, Request, Timeouts, without_credentials
from .bounds import Bound, head_bound, reply_bound
from .decoding import BodyDecoder, accepted, decoder_for

T = TypeVar("T")

__all__ = [
    "AsyncHttpxResponse",
    "AsyncHttpxTransport",
    "HttpxResponse",
    "HttpxTransport",
    "async_client",
    "client",
    "mapped_errors",
]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@contextmanager
def mapped_errors(url: str) -> Iterator[None]:
    """Turns every exception httpx raises into getgpt's own, its message naming ``url``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise Timeout(f"timed out talking to {url} ({type(exc).__name__}): {_detail(exc)}") from exc
    except (httpx.ConnectError, httpx.ProxyError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ConnectError(f"connection to {url} failed ({type(exc).__name__}): {_detail(exc)}") from exc
    except (httpx.DecodingError, httpx.TooManyRedirects) as exc:
        raise ProtocolError(f"undecodable reply from {url}: {_detail(exc)}") from exc
    except (httpx.HTTPError, httpx.StreamError, httpx.CookieConflict) as exc:
        # Read, write and close errors, a reply that is not HTTP; the rest cannot happen here
        # (no redirects followed, no raise_for_status, a stream read once) but are mapped too.
        raise TransportError(f"connection to {url} failed ({type(exc).__name__}): {_detail(exc)}") from exc


def _detail(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _least(limit: float | None, left: float) -> float:
    return left if limit is None else min(limit, left)


def _options(
    timeouts: Timeouts, tls: ssl.SSLContext, max_idle: int, proxy: str | None, transport: object
) -> dict[str, Any]:
    """An httpx client's settings, made to behave as the lean pools do."""
    return {
        "timeout": httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=timeouts.pool
        ),
        "proxy": proxy,
        "verify": tls,
        "transport": transport,
        # The proxy was chosen already, NO_PROXY included, and TLS is the context given.
        "trust_env": False,
        # No cap on connections at once; ``max_idle`` kept as long as the lean pools keep them.
        "limits": httpx.Limits(
            max_connections=None, max_keepalive_connections=max_idle, keepalive_expiry=KEEPALIVE
        ),
        # No cookies: one a reply sets must not ride on the next request (the server's
        # backends serve many users through one transport).
        "cookies": CookieJar(DefaultCookiePolicy(allowed_domains=[])),
    }


def client(
    timeouts: Timeouts,
    tls: ssl.SSLContext,
    max_idle: int = MAX_IDLE,
    proxy: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An :class:`httpx.Client` that behaves as the lean pool does."""
    return httpx.Client(**_options(timeouts, tls, max_idle, proxy, transport))


# The async twin of client().
def async_client(
    timeouts: Timeouts,
    tls: ssl.SSLContext,
    max_idle: int = MAX_IDLE,
    proxy: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An :class:`httpx.AsyncClient` that behaves as the lean pool does."""
    return httpx.AsyncClient(**_options(timeouts, tls, max_idle, proxy, transport))


def _merged(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """``base`` with ``extra`` replacing headers of the same name, whatever their case."""
    if not extra:
        return dict(base)
    replaced = {name.lower() for name in extra}
    return {**{k: v for k, v in base.items() if k.lower() not in replaced}, **extra}


class _Way:
    """What both adapters share: the URL, the headers and how a request is built."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self.url = url
        self.headers = _merged(DEFAULT_HEADERS, headers)
        parts = urlsplit(url)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def target(self, target: str, headers: Mapping[str, str] | None) -> tuple[str, dict[str, str]]:
        if not target.startswith("/"):
            raise ValueError(f"the target must be a path on {self.origin}, not {target!r}")
        return self.origin + target, _merged(self.headers, headers)


def _content(method: str, body: bytes) -> bytes | None:
    return body if body or method in _BODY_METHODS else None


class _Head:
    def __init__(
        self, response: httpx.Response, url: str, decoder: BodyDecoder | None, bound: Bound | None
    ) -> None:
        self.response = response
        self.url = url
        self.status_code = response.status_code
        self.reason_phrase = response.reason_phrase
        self.headers: Mapping[str, str] = response.headers
        self._decoder = decoder
        self._bound = bound

    def _decoded(self, raw: bytes) -> Iterator[bytes]:
        """What ``raw`` decodes to, at most 64 KiB a read, the deadline checked before each."""
        decoder, bound = self._decoder, self._bound
        if decoder is None:
            if bound is not None:
                bound.left()
            if raw:
                yield raw
            return
        while True:
            if bound is not None:
                bound.left()
            read = decoder.decode(raw, self.url)
            if read:
                yield read
            if not decoder.pending:
                return
            raw = b""


def _decoder(response: httpx.Response, headers: Mapping[str, str], url: str) -> BodyDecoder | None:
    return decoder_for(response.headers.get("content-encoding", ""), accepted(headers), url)


async def _within(bound: Bound | None, step: Awaitable[T]) -> T:
    """``step``, cancelled when ``bound`` runs out (anyio: asyncio and trio alike)."""
    if bound is None:
        return await step
    try:
        with anyio.fail_after(bound.left()):
            return await step
    except TimeoutError as exc:
        if isinstance(exc, Timeout):
            raise
        raise Timeout(bound.message) from None


def _already_read(response: httpx.Response) -> Iterator[bytes]:
    # A response made from bytes (a MockTransport's) was read, and decoded, when it was made.
    if response.content:
        yield response.content


class HttpxResponse(_Head):
    """An httpx response with the transports' face."""

    def reads(self) -> Iterator[bytes]:
        if self.response.is_stream_consumed:
            yield from _already_read(self.response)
            return
        with mapped_errors(self.url):
            if self._decoder is None and self._bound is None:
                for raw in self.response.iter_raw():
                    if raw:
                        yield raw
                return
            for raw in self.response.iter_raw():
                yield from self._decoded(raw)

    def read(self) -> bytes:
        return b"".join(self.reads())

    def close(self) -> None:
        with mapped_errors(self.url):
            self.response.close()


class AsyncHttpxResponse(_Head):
    """An httpx async response with the transports' face."""

    async def reads(self) -> AsyncIterator[bytes]:
        if self.response.is_stream_consumed:
            for read in _already_read(self.response):
                yield read
            return
        with mapped_errors(self.url):
            if self._decoder is None and self._bound is None:
                async for raw in self.response.aiter_raw():
                    if raw:
                        yield raw
                return
            raws = self.response.aiter_raw()
            while True:
                try:
                    raw = await _within(self._bound, raws.__anext__())
                except StopAsyncIteration:
                    return
                for read in self._decoded(raw):
                    yield read

    async def read(self) -> bytes:
        return b"".join([read async for read in self.reads()])

    async def aclose(self) -> None:
        with mapped_errors(self.url):
            await self.response.aclose()


class HttpxTransport:
    """Requests to one origin through an :class:`httpx.Client`."""

    def __init__(self, http: httpx.Client, url: str, headers: Mapping[str, str]) -> None:
        self.http = http
        self._way = _Way(url, headers)

    def send(self, body: bytes, *, deadline: float | None = None) -> HttpxResponse:
        way = self._way
        return self._send("POST", way.url, way.headers, body, deadline)

    def request(self, request: Request, *, deadline: float | None = None) -> HttpxResponse:
        url, merged = self._way.target(request.target, request.headers)
        return self._send(request.method, url, merged, request.body, deadline)

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, deadline: float | None
    ) -> HttpxResponse:
        named = without_credentials(url)
        whole = reply_bound(deadline, named)
        options: dict[str, Any] = {}
        if whole is not None:
            left, given = whole.left(), self.http.timeout
            # Every wait of this request ends by the deadline's time as it stands now.
            options["timeout"] = httpx.Timeout(
                connect=_least(given.connect, left),
                read=_least(given.read, left),
                write=_least(given.write, left),
                pool=_least(given.pool, left),
            )
        with mapped_errors(named):
            content = _content(method, body)
            request = self.http.build_request(method, url, content=content, headers=headers, **options)
            response = self.http.send(request, stream=True)
        return HttpxResponse(response, named, _decoder(response, headers, named), whole)

    def close(self) -> None:
        self.http.close()


class AsyncHttpxTransport:
    """Requests to one origin through an :class:`httpx.AsyncClient` (asyncio or trio)."""

    def __init__(
        self, http: httpx.AsyncClient, url: str, headers: Mapping[str, str], timeouts: Timeouts | None = None
    ) -> None:
        self.http = http
        self._way = _Way(url, headers)
        #: The head bound comes from these (the read, connect and write timeouts are httpx's own).
        self.timeouts = timeouts or Timeouts(head=None)

    async def send(self, body: bytes, *, deadline: float | None = None) -> AsyncHttpxResponse:
        way = self._way
        return await self._send("POST", way.url, way.headers, body, deadline)

    async def request(self, request: Request, *, deadline: float | None = None) -> AsyncHttpxResponse:
        url, merged = self._way.target(request.target, request.headers)
        return await self._send(request.method, url, merged, request.body, deadline)

    async def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, deadline: float | None
    ) -> AsyncHttpxResponse:
        named = without_credentials(url)
        head = head_bound(self.timeouts, deadline, named)
        with mapped_errors(named):
            request = self.http.build_request(method, url, content=_content(method, body), headers=headers)
            response = await _within(head, self.http.send(request, stream=True))
        decoder = _decoder(response, headers, named)
        return AsyncHttpxResponse(response, named, decoder, reply_bound(deadline, named))

    async def aclose(self) -> None:
        await self.http.aclose()
