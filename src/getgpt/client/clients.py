"""The GetGpt clients: :class:`Client` and :class:`AsyncClient`, sync/async twins.

Both only send and read; every decision is :class:`~getgpt.client.base.BaseClient`'s. Both drive
the same sans-IO :class:`~getgpt.protocol.reply.ReplyParser` through a
:class:`~getgpt.client.streams.ChatStream` / :class:`~getgpt.client.streams.AsyncChatStream`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

import httpx

from .._transports import choose
from .._transports.base import (
    AsyncResponse,
    AsyncTransport,
    Response,
    Transport,
)
from ..protocol.errors import (
    GetGptError,
    TransportError,
)
from ..protocol.reply import Reply, ReplyParser
from .base import BaseClient, Messages
from .bodies import aread_body, aread_excerpt, read_body, read_excerpt
from .streams import AsyncChatStream, ChatStream

__all__ = ["AsyncClient", "Client"]


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
                for read in response.reads():
                    pieces = parser.feed(read)
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


# The async twin of Client: the same calls, awaited; a change to one is made to both.
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
                async for read in response.reads():
                    pieces = parser.feed(read)
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
