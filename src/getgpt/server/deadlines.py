"""Deadlines for an upstream reply: one for its head, one for the whole of it.

A per-read timeout (``upstream_timeout``) never fires on an upstream that sends a byte of its
head every second, or an SSE comment every second for ever; these bound the whole wait instead.
A :class:`Deadline` is one timer per reply, not one per read: the steps it guards run in the
caller's own task, which the timer cancels only while such a step is under way -- at any other
moment (the reply's pieces waiting for a slow client, say) it only marks the deadline passed,
and the next guarded step raises. The cancellation becomes an :class:`~getgpt.server.api_error.ApiError`
(504, ``upstream_timeout``) and nothing else sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from .api_error import ApiError

__all__ = ["Deadline"]

T = TypeVar("T")


class Deadline:
    """``seconds`` from now for the steps awaited through :meth:`step`; ``what`` names it in the error."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.passed = False
        self._inside = False
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self.passed = True
        if self._inside and self._task is not None:
            self._task.cancel()

    def error(self) -> ApiError:
        return ApiError(
            504,
            f"the upstream's {self.what} took more than {self.seconds:g} s",
            type="upstream_error",
            code="upstream_timeout",
        )

    async def step(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, unless the deadline passes first: then :meth:`error` is raised."""
        if self.passed:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()  # a coroutine never awaited would warn
            raise self.error()
        self._inside = True
        try:
            return await awaitable
        except asyncio.CancelledError:
            if not self.passed:
                raise  # someone else's cancellation: the client went away, the server stops
            uncancel = getattr(self._task, "uncancel", None)
            if uncancel is not None:  # Python 3.11+: the cancellation was ours, and is handled
                uncancel()
            raise self.error() from None
        finally:
            self._inside = False

    def close(self) -> None:
        """Stop the timer; call once the reply is over, however it ended."""
        self._timer.cancel()
