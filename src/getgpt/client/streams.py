"""A reply as it streams: its text pieces, and what it tells beside them.

:class:`ChatStream` (for :class:`~getgpt.client.clients.Client`) and :class:`AsyncChatStream`
(for :class:`~getgpt.client.clients.AsyncClient`) are sync/async twins over one sans-IO
:class:`~getgpt.protocol.reply.ReplyParser`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

from ..protocol.reply import Reply, ReplyParser, Usage

__all__ = ["AsyncChatStream", "ChatStream"]
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
