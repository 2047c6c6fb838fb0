"""The GetGpt clients.

:class:`BaseClient` holds every decision that needs no I/O -- the URL, the request body, which
way a request travels, when to retry and for how long to wait, how a failed response becomes a
typed error. :class:`Client` and :class:`AsyncClient` are thin shells that only send and read,
both driving the same sans-IO :class:`~getgpt.reply.ReplyParser`.

A request travels the lean HTTP/1.1 path of :mod:`getgpt._transports.http11` unless it needs
what only httpx has -- a SOCKS proxy, a custom transport, a ready-made httpx client, trio -- and
then through httpx; :mod:`getgpt._transports.choose` chooses, and both ways hand the clients a
reply of the same shape and raise only getgpt's errors.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from . import envelope
from ._transports import choose
from ._transports.base import (
    AsyncResponse,
    AsyncTransport,
    Response,
    ResponseHead,
    Timeouts,
    Transport,
    shown,
)
from .errors import (
    CloudflareBlocked,
    GetGptError,
    ProtocolError,
    RateLimitError,
    StatusError,
    TransportError,
)
from .reply import Reply, ReplyParser, Usage
from .request import Message, build_request, encode
from .sse import DEFAULT_MAX_EVENT_SIZE
from .upstream import (
    DEFAULT_MAX_REPLY_BYTES,
    EXCERPT,
    USER_AGENT,
    aread_body,
    aread_excerpt,
    error_message,
    is_cloudflare_block,
    read_body,
    read_excerpt,
    retry_after,
)

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
# Statuses worth another try: the request never reached a model, or the server asks us to wait.
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 8.0

Messages = Iterable[Mapping[str, Any] | Message]


def base_url_from(value: str | None) -> str:
    """The base URL to use: ``value``, else ``GETGPT_BASE_URL``, else the seed's; ends in ``/``."""
    url = value or os.environ.get("GETGPT_BASE_URL") or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


class BaseClient:
    """Configuration and every decision that needs no I/O.

    Time: ``timeout`` (seconds, or an :class:`httpx.Timeout`) bounds each step -- connecting,
    sending, and each read, the longest silence while a reply streams; ``head_timeout`` bounds
    the reply's status line and headers in all, from the request sent (default: the read
    timeout); ``deadline``, if given, the whole reply, retries and their waits included.
    ``max_reply_bytes`` bounds a whole (non-streamed) JSON reply.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        head_timeout: float | None = None,
        deadline: float | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = 60.0,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        headers: Mapping[str, str] | None = None,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        self.base_url = base_url_from(base_url)
        self.url = self.base_url + "api/chat/stream"
        # The URL as messages name it: credentials in it stay out of errors and logs.
        self._named = shown(self.url)
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        t = self.timeout
        #: Seconds for a reply's status line and headers in all (None: as long as a read may take).
        self.head_timeout = t.read if head_timeout is None else head_timeout
        #: Seconds for a whole reply, retries included; None for no limit.
        self.deadline = deadline
        #: Largest whole (non-streamed) reply read, in bytes.
        self.max_reply_bytes = max_reply_bytes
        self._timeouts = Timeouts(t.connect, t.read, t.write, t.pool, self.head_timeout)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.max_event_size = max_event_size
        self.headers = {
            "Content-Type": "application/json",
            "Referer": self.base_url,
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        #: Whether and how to check TLS certificates: True, False, a CA bundle's path or a context.
        self.verify = verify

    def _body(self, messages: Messages, params: Mapping[str, Any]) -> bytes:
        """The POST body: the validated request, sealed in the envelope."""
        signature = envelope.encrypt(encode(build_request(messages, **params)).decode())
        return b'{"signature":"' + signature.encode() + b'"}'

    def _until(self) -> float | None:
        """The moment (``time.monotonic()``) a reply starting now must end by, if there is one."""
        return None if self.deadline is None else time.monotonic() + self.deadline

    def _retry_delay(
        self, attempt: int, status: int | None, headers: Mapping[str, str] | None, until: float | None
    ) -> float:
        """Seconds to wait before attempt ``attempt + 1``, or -1 to give up.

        ``status`` is None for a connection that failed before any response. A wait that would
        end past the deadline (``until``) is not started.
        """
        if attempt >= self.max_retries or (status is not None and status not in _RETRY_STATUSES):
            return -1
        asked = retry_after(headers) if headers is not None else None
        if asked is not None:
            delay = asked if asked <= self.max_retry_wait else -1
        else:
            delay = min(_BACKOFF_BASE * 2.0**attempt, _BACKOFF_CAP) * random.uniform(0.75, 1.0)
        if until is not None and time.monotonic() + delay >= until:
            return -1
        return delay

    def _status_error(self, response: ResponseHead, body: bytes) -> StatusError:
        status = response.status_code
        excerpt = body[:EXCERPT].decode("utf-8", "replace")
        detail = error_message(body) or excerpt.strip()[:200] or response.reason_phrase
        message = f"HTTP {status} from {self._named}: {detail}"
        if is_cloudflare_block(response, body):
            return CloudflareBlocked(
                f"HTTP {status} from {self._named}: blocked by a Cloudflare challenge page",
                status_code=status,
                body=excerpt,
            )
        if status == 429:
            return RateLimitError(message, body=excerpt, retry_after=retry_after(response.headers))
        return StatusError(message, status_code=status, body=excerpt)

    def _is_json(self, response: ResponseHead) -> bool:
        """True when the reply is one JSON object rather than an event stream."""
        kind: str = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind == "text/html":
            raise ProtocolError(f"expected an event stream from {self._named}, got an HTML page")
        return kind == "application/json"


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
        self._transport: Transport = choose.transport(
            self.url,
            self.headers,
            timeouts=self._timeouts,
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
        response = self._send(body, self._until())
        try:
            if self._is_json(response):
                pieces = parser.feed_json(read_body(response, self.max_reply_bytes, self._named))
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
        except GetGptError as exc:
            exc.partial = exc.partial or parser.text
            raise
        finally:
            response.close()

    def _send(self, body: bytes, until: float | None) -> Response:
        attempt = 0
        while True:
            try:
                response = self._transport.send(body, deadline=until)
            except TransportError:
                delay = self._retry_delay(attempt, None, None, until)
                if delay < 0:
                    raise
            else:
                if 200 <= response.status_code < 300:
                    return response
                try:
                    excerpt = read_excerpt(response)
                finally:
                    response.close()
                delay = self._retry_delay(attempt, response.status_code, response.headers, until)
                if delay < 0:
                    raise self._status_error(response, excerpt)
            attempt += 1
            time.sleep(delay)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(BaseClient):
    """An async GetGpt client; reuses connections across calls. See :class:`Client`.

    Under asyncio it sends on the lean path; under another async library (trio, directly or
    through anyio) through httpx.
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
        self._transport: AsyncTransport = choose.async_transport(
            self.url,
            self.headers,
            timeouts=self._timeouts,
            verify=self.verify,
            max_idle=max_keepalive_connections,
            proxy=proxy,
            transport=transport,
            http_client=http_client,
        )

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
        response = await self._send(body, self._until())
        try:
            if self._is_json(response):
                pieces = parser.feed_json(await aread_body(response, self.max_reply_bytes, self._named))
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
        except GetGptError as exc:
            exc.partial = exc.partial or parser.text
            raise
        finally:
            await response.aclose()

    async def _send(self, body: bytes, until: float | None) -> AsyncResponse:
        attempt = 0
        while True:
            try:
                response = await self._transport.send(body, deadline=until)
            except TransportError:
                delay = self._retry_delay(attempt, None, None, until)
                if delay < 0:
                    raise
            else:
                if 200 <= response.status_code < 300:
                    return response
                try:
                    excerpt = await aread_excerpt(response)
                finally:
                    await response.aclose()
                delay = self._retry_delay(attempt, response.status_code, response.headers, until)
                if delay < 0:
                    raise self._status_error(response, excerpt)
            attempt += 1
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
