"""The GetGpt clients.

:class:`BaseClient` holds every decision that needs no I/O -- the URL, the request body, which
way a request travels, when to retry and for how long to wait, how a failed response becomes a
typed error. :class:`Client` and :class:`AsyncClient` are thin shells that only send and read,
both driving the same sans-IO :class:`~getgpt.reply.ReplyParser`.

A request travels the lean HTTP/1.1 path of :mod:`getgpt._http11` unless it needs what only
httpx has -- a proxy, a custom transport, a ready-made httpx client -- and then through httpx;
:mod:`getgpt._senders` chooses, and both ways hand the clients a reply of the same shape.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx
import msgspec

from . import envelope
from ._httpx import AsyncHttpxSender
from ._senders import AsyncIncoming, AsyncSender, Head, Incoming, Sender, async_sender, sender
from .errors import (
    CloudflareBlocked,
    GetGptError,
    ProtocolError,
    RateLimitError,
    StatusError,
    Timeout,
    TransportError,
)
from .reply import Reply, ReplyParser, Usage
from .request import Message, build_request, encode
from .sse import DEFAULT_MAX_EVENT_SIZE

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "AsyncChatStream",
    "AsyncClient",
    "BaseClient",
    "ChatStream",
    "Client",
]

#: The address of the original service, the seed's ``url``.
DEFAULT_BASE_URL = "https://chat.getgpt.world/"
#: As the openai SDK: 10 minutes in all, 5 seconds to connect.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
# Statuses worth another try: the request never reached a model, or the server asks us to wait.
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_EXCERPT = 2048
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 8.0
_CLOUDFLARE_MARKERS = (b"cloudflare", b"cf-chl", b"cf-ray")

Messages = Iterable[Mapping[str, Any] | Message]


def base_url_from(value: str | None) -> str:
    """The base URL to use: ``value``, else ``GETGPT_BASE_URL``, else the seed's; ends in ``/``."""
    url = value or os.environ.get("GETGPT_BASE_URL") or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


class BaseClient:
    """Configuration and every decision that needs no I/O."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = 60.0,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        headers: Mapping[str, str] | None = None,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        self.base_url = base_url_from(base_url)
        self.url = self.base_url + "api/chat/stream"
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.max_event_size = max_event_size
        self.headers = {
            "Content-Type": "application/json",
            "Referer": self.base_url,
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        #: Whether and how to check TLS certificates: a CA bundle's path becomes a context.
        self.verify = _tls_context(verify) if isinstance(verify, str) else verify

    def _body(self, messages: Messages, params: Mapping[str, Any]) -> bytes:
        """The POST body: the validated request, sealed in the envelope."""
        signature = envelope.encrypt(encode(build_request(messages, **params)).decode())
        return b'{"signature":"' + signature.encode() + b'"}'

    def _retry_delay(self, attempt: int, status: int | None, headers: Mapping[str, str] | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``, or -1 to give up.

        ``status`` is None for a connection that failed before any response.
        """
        if attempt >= self.max_retries or (status is not None and status not in _RETRY_STATUSES):
            return -1
        asked = _retry_after(headers) if headers is not None else None
        if asked is not None:
            return asked if asked <= self.max_retry_wait else -1
        return min(_BACKOFF_BASE * 2.0**attempt, _BACKOFF_CAP) * random.uniform(0.75, 1.0)

    def _status_error(self, response: Head, body: bytes) -> StatusError:
        status = response.status_code
        excerpt = body[:_EXCERPT].decode("utf-8", "replace")
        detail = _error_message(body) or excerpt.strip()[:200] or response.reason_phrase
        message = f"HTTP {status} from {self.url}: {detail}"
        if _is_cloudflare(response, body):
            return CloudflareBlocked(
                f"HTTP {status} from {self.url}: blocked by a Cloudflare challenge page",
                status_code=status,
                body=excerpt,
            )
        if status == 429:
            return RateLimitError(message, body=excerpt, retry_after=_retry_after(response.headers))
        return StatusError(message, status_code=status, body=excerpt)

    def _is_json(self, response: Head) -> bool:
        """True when the reply is one JSON object rather than an event stream."""
        kind: str = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind == "text/html":
            raise ProtocolError(f"expected an event stream from {self.url}, got an HTML page")
        return kind == "application/json"

    def _transport_error(self, exc: httpx.RequestError, partial: str = "") -> GetGptError:
        what = type(exc).__name__
        detail = str(exc) or what
        if isinstance(exc, httpx.DecodingError):
            return ProtocolError(f"undecodable reply from {self.url}: {detail}", partial=partial)
        if isinstance(exc, httpx.TimeoutException):
            return Timeout(f"timed out talking to {self.url} ({what}): {detail}", partial=partial)
        return TransportError(f"connection to {self.url} failed ({what}): {detail}", partial=partial)


T = TypeVar("T")


class _StreamBase(Generic[T]):
    """What a stream tells beside its text pieces.

    The reading generator hands over the pieces of one network read at a time, as a list in
    reverse order; the stream gives them out one by one with ``pop()``, so a piece costs one
    method call rather than a trip through the generator as well.
    """

    def __init__(self, parser: ReplyParser, batches: T) -> None:
        self._parser = parser
        self._batches = batches
        self._queue: list[str] = []

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._parser.text

    @property
    def finish_reason(self) -> str | None:
        """Why the model stopped, once the server has said it."""
        return self._parser.finish_reason

    @property
    def usage(self) -> Usage | None:
        """Token counts, if the server sent them."""
        return self._parser.usage

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls the model made, assembled from their fragments, in OpenAI's message shape:
        ``[{"id", "type": "function", "function": {"name", "arguments": "<json text>"}}]``.

        Complete once the stream has ended; an empty list when there are none.
        """
        return self._parser.tool_calls

    @property
    def reasoning(self) -> str:
        """The model's reasoning (``reasoning_content`` / ``reasoning`` deltas), "" when none."""
        return self._parser.reasoning

    @property
    def choices(self) -> list[Reply]:
        """Every choice, in index order: more than one when the request asked for ``n`` > 1.

        The stream's own text, tool calls and reasoning are the first choice's.
        """
        return self._parser.choices()

    def reply(self) -> Reply:
        """The text so far, with ``finish_reason``, ``usage``, ``tool_calls`` and ``reasoning``."""
        return self._parser.reply()


class ChatStream(_StreamBase[Iterator[list[str]]], Iterator[str]):
    """The text pieces of a reply, as they arrive. Closing it, or leaving ``with``, ends the request."""

    def __next__(self) -> str:
        queue = self._queue
        if queue:
            return queue.pop()
        queue = self._queue = next(self._batches)
        return queue.pop()

    def __iter__(self) -> ChatStream:
        return self

    def close(self) -> None:
        self._queue = []
        self._batches.close()  # type: ignore[attr-defined]

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChatStream(_StreamBase[AsyncIterator[list[str]]], AsyncIterator[str]):
    """The text pieces of a reply, as they arrive. ``aclose()``, or leaving ``async with``, ends it."""

    async def __anext__(self) -> str:
        queue = self._queue
        if queue:
            return queue.pop()
        queue = self._queue = await self._batches.__anext__()
        return queue.pop()

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def aclose(self) -> None:
        self._queue = []
        await self._batches.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Client(BaseClient):
    """A synchronous GetGpt client; reuses connections across calls.

    ``proxy``, ``verify`` and ``transport`` have httpx's meaning; pass ``http_client`` to send
    through an :class:`httpx.Client` of your own. ``max_keepalive_connections`` bounds the idle
    connections kept for reuse.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        proxy: str | None = None,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        max_keepalive_connections: int = 20,
        **options: Any,
    ) -> None:
        super().__init__(base_url, verify=verify, **options)
        self._sender: Sender = sender(
            self.url,
            self.headers,
            timeout=self.timeout,
            verify=self.verify,
            max_idle=max_keepalive_connections,
            proxy=proxy,
            transport=transport,
            http_client=http_client,
        )

    def stream(self, messages: Messages, **params: Any) -> ChatStream:
        """Send a chat request; iterate the result for the reply's text pieces as they arrive.

        ``params`` are the protocol's nine fields (``temperature``, ``max_tokens``, ``model``, ...)
        and any OpenAI chat parameter (``tools``, ``tool_choice``, ``response_format``, ``stop``,
        ``seed``, ``n``, ...); ``extra_body={...}`` carries a server's own extensions. Once the
        stream has ended it tells ``tool_calls``, ``reasoning``, ``usage`` and ``finish_reason``.
        """
        body = self._body(messages, params)
        parser = ReplyParser(self.max_event_size)
        return ChatStream(parser, self._batches(body, parser))

    def complete(self, messages: Messages, **params: Any) -> Reply:
        """Send a chat request and return the whole reply: a ``str`` with ``tool_calls``,
        ``reasoning``, ``usage`` and ``finish_reason``. ``params`` as for :meth:`stream`."""
        with self.stream(messages, **params) as chat:
            for _ in chat:
                pass
            return chat.reply()

    def _batches(self, body: bytes, parser: ReplyParser) -> Iterator[list[str]]:
        response = self._send(body)
        try:
            if self._is_json(response):
                pieces = parser.feed_json(response.read())
            else:
                for chunk in response.reads():
                    pieces = parser.feed(chunk)
                    if pieces:
                        pieces.reverse()
                        yield pieces
                pieces = parser.close()
            if pieces:
                pieces.reverse()
                yield pieces
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise self._transport_error(exc, parser.text) from exc
        except GetGptError as exc:
            exc.partial = exc.partial or parser.text
            raise
        finally:
            response.close()

    def _send(self, body: bytes) -> Incoming:
        attempt = 0
        while True:
            try:
                response = self._sender.send(body)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                delay = self._retry_delay(attempt, None, None)
                if delay < 0:
                    raise self._transport_error(exc) from exc
            else:
                if 200 <= response.status_code < 300:
                    return response
                try:
                    excerpt = _read_excerpt(response.reads())
                finally:
                    response.close()
                delay = self._retry_delay(attempt, response.status_code, response.headers)
                if delay < 0:
                    raise self._status_error(response, excerpt)
            attempt += 1
            time.sleep(delay)

    def close(self) -> None:
        self._sender.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(BaseClient):
    """An asyncio GetGpt client; reuses connections across calls. See :class:`Client`.

    Under another async library (trio, through anyio) it sends through httpx.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        proxy: str | None = None,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_keepalive_connections: int = 20,
        **options: Any,
    ) -> None:
        super().__init__(base_url, verify=verify, **options)
        self._sender: AsyncSender = async_sender(
            self.url,
            self.headers,
            timeout=self.timeout,
            verify=self.verify,
            max_idle=max_keepalive_connections,
            proxy=proxy,
            transport=transport,
            http_client=http_client,
        )
        self._elsewhere: AsyncSender | None = None

    def stream(self, messages: Messages, **params: Any) -> AsyncChatStream:
        """Send a chat request; ``async for`` over the result gives the reply's text pieces.

        ``params`` and what the stream tells once it has ended: as :meth:`Client.stream`.
        """
        body = self._body(messages, params)
        parser = ReplyParser(self.max_event_size)
        return AsyncChatStream(parser, self._batches(body, parser))

    async def complete(self, messages: Messages, **params: Any) -> Reply:
        """Send a chat request and return the whole reply; see :meth:`Client.complete`."""
        async with self.stream(messages, **params) as chat:
            async for _ in chat:
                pass
            return chat.reply()

    async def _batches(self, body: bytes, parser: ReplyParser) -> AsyncIterator[list[str]]:
        response = await self._send(body)
        try:
            if self._is_json(response):
                pieces = parser.feed_json(await response.read())
            else:
                async for chunk in response.reads():
                    pieces = parser.feed(chunk)
                    if pieces:
                        pieces.reverse()
                        yield pieces
                pieces = parser.close()
            if pieces:
                pieces.reverse()
                yield pieces
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise self._transport_error(exc, parser.text) from exc
        except GetGptError as exc:
            exc.partial = exc.partial or parser.text
            raise
        finally:
            await response.aclose()

    async def _send(self, body: bytes) -> AsyncIncoming:
        attempt = 0
        while True:
            try:
                response = await self._here().send(body)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                delay = self._retry_delay(attempt, None, None)
                if delay < 0:
                    raise self._transport_error(exc) from exc
            else:
                if 200 <= response.status_code < 300:
                    return response
                try:
                    excerpt = await _aread_excerpt(response.reads())
                finally:
                    await response.aclose()
                delay = self._retry_delay(attempt, response.status_code, response.headers)
                if delay < 0:
                    raise self._status_error(response, excerpt)
            attempt += 1
            await asyncio.sleep(delay)

    def _here(self) -> AsyncSender:
        """The sender for the running event loop: the lean path speaks asyncio only."""
        if not isinstance(self._sender, AsyncHttpxSender):
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # trio, directly or under anyio: httpx speaks it
                if self._elsewhere is None:
                    self._elsewhere = async_sender(
                        self.url, self.headers, timeout=self.timeout, verify=self.verify, lean=False
                    )
                return self._elsewhere
        return self._sender

    async def aclose(self) -> None:
        await self._sender.aclose()
        if self._elsewhere is not None:
            await self._elsewhere.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _read_excerpt(body: Iterator[bytes]) -> bytes:
    excerpt = b""
    try:
        for chunk in body:
            excerpt += chunk
            if len(excerpt) >= _EXCERPT:
                break
    except (httpx.HTTPError, ValueError):
        pass  # the status alone is the error; a broken body adds nothing
    return excerpt


async def _aread_excerpt(body: AsyncIterator[bytes], limit: int = _EXCERPT) -> bytes:
    excerpt = b""
    try:
        async for chunk in body:
            excerpt += chunk
            if len(excerpt) >= limit:
                break
    except (httpx.HTTPError, ValueError):
        pass  # the status alone is the error; a broken body adds nothing
    return excerpt


def _tls_context(ca: str) -> ssl.SSLContext:
    """A verifying context that trusts the CA bundle file, or directory, at ``ca``."""
    if os.path.isdir(ca):
        return ssl.create_default_context(capath=ca)
    return ssl.create_default_context(cafile=ca)


def _retry_after(headers: Mapping[str, str]) -> float | None:
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


def _error_message(body: bytes) -> str | None:
    """The ``message`` of an OpenAI-style ``{"error": {...}}`` body, if it is one."""
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


def _is_cloudflare(response: Head, body: bytes) -> bool:
    # Every response through Cloudflare has a cf-ray header, an API's own errors too: only a
    # challenge header or an HTML page that names Cloudflare marks a block.
    if response.status_code not in (403, 503):
        return False
    if response.headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    head = body[:_EXCERPT].lower()
    return head.lstrip()[:1] == b"<" and any(marker in head for marker in _CLOUDFLARE_MARKERS)
