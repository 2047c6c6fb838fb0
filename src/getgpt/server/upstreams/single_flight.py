"""A value asked of an upstream once however many want it, kept a while -- and its failure too.

``GET /v1/models`` asks the upstream for its list. Asked for by many clients at once on a cold
cache, it made one upstream request each; a failing upstream was asked again by every request.
:class:`SingleFlight` makes one request for all who wait on a miss (each waiter may leave without
stopping it for the others), keeps the answer ``ttl`` seconds and a failure (an
:class:`~getgpt.server.api_error.ApiError`) ``failure_ttl`` seconds, answered to every asker
meanwhile as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ..api_error import ApiError

__all__ = ["SingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """``await flight.get()``: ``fetch()``'s value, fetched once per miss; see the module docstring."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[T]],
        *,
        ttl: float,
        failure_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self._clock = clock
        self._value: T | None = None
        self._failure: ApiError | None = None
        self._until = 0.0  # when the value, or the failure, is too old
        self._flight: asyncio.Future[T] | None = None

    async def get(self) -> T:
        if self._clock() < self._until:
            if self._failure is not None:
                raise _again(self._failure)
            assert self._value is not None
            return self._value
        flight = self._flight
        if flight is None:
            flight = self._flight = asyncio.ensure_future(self._land())
            # Its failure is read here even when every asker has left, so none goes unread.
            flight.add_done_callback(_read_outcome)
        # One asker leaving (its client went away) must not stop the request the others wait on.
        return await asyncio.shield(flight)

    async def _land(self) -> T:
        try:
            value = await self._fetch()
        except ApiError as exc:
            self._failure, self._value = exc, None
            self._until = self._clock() + self.failure_ttl
            raise
        else:
            self._value, self._failure = value, None
            self._until = self._clock() + self.ttl
            return value
        finally:
            self._flight = None

    async def aclose(self) -> None:
        """Stop a request still in flight (the server is stopping)."""
        flight = self._flight
        if flight is not None:
            flight.cancel()
            with contextlib.suppress(BaseException):
                await flight


def _read_outcome(flight: asyncio.Future[Any]) -> None:
    if not flight.cancelled():
        flight.exception()


def _again(error: ApiError) -> ApiError:
    """A fresh copy of ``error``, to raise once more (each raise writes its own traceback)."""
    return ApiError(
        error.status,
        error.message,
        type=error.type,
        code=error.code,
        param=error.param,
        headers=dict(error.headers),
        body=error.body,
    )
