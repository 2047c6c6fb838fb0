"""One budget of bytes for the whole replies every request holds at once, not one per request.

A non-streamed reply (a ``"stream": false`` chat request, an upstream that answers a stream with
one JSON object, the model list) is read whole before a byte of it goes on, up to 16 MiB each.
With no bound across requests, 50 at once from an upstream sending endless JSON took the gateway
to +797 MiB. Each such read now draws on :class:`ReplyBudget` (``--whole-reply-budget``): every
piece is taken from it as it arrives -- and the whole once more while the pieces are joined --
and given back once the reply has left the backend. A read that would overdraw it is refused at
once with 503 ``server_busy`` (and ``Retry-After``), its upstream request closed.

The budget covers a reply while the backend reads and holds it; once handed to the client's
connection it is the connection's to bound (what a slow client leaves unread).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from ...client.transport import AsyncResponse
from ...protocol.errors import LimitExceeded
from ..api_error import ApiError, try_later

if TYPE_CHECKING:
    from ..operations.prometheus import PrometheusMetrics

__all__ = ["BUDGET", "Holding", "ReplyBudget"]

#: The budget's name in ``/metrics`` (``getgpt_budget_used_bytes{budget="whole_replies"}``).
BUDGET = "whole_replies"


class ReplyBudget:
    """Bytes of whole replies held at once in one server process, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the whole-reply budget must be at least 1 byte, not {limit}")
        self.limit = limit
        #: Bytes held now.
        self.held = 0
        self._metrics: PrometheusMetrics | None = None
        #: With several workers, what adds a change to what ``/metrics`` shows held.
        self._add: Callable[[int], None] | None = None

    def watch(self, metrics: PrometheusMetrics) -> None:
        """Show the budget and what it holds in ``metrics`` (``/metrics``)."""
        self._metrics = metrics
        self._add = metrics.budget(BUDGET, self.limit, lambda: self.held)

    def holding(self) -> Holding:
        """What one reply holds; give it all back with :meth:`Holding.release` (or ``with``)."""
        return Holding(self)

    def _take(self, size: int) -> None:
        if self.held + size > self.limit:
            if self._metrics is not None:
                self._metrics.budget_refused(BUDGET)
            raise busy(self.limit)
        self.held += size
        if self._add is not None:
            self._add(size)

    def _give(self, size: int) -> None:
        self.held -= size
        if self._add is not None:
            self._add(-size)


def busy(limit: int) -> ApiError:
    """The answer to a request whose reply would overdraw the budget."""
    return try_later(
        f"the server holds as many whole replies as it may ({limit / (1 << 20):g} MiB, --whole-reply-budget)",
        "server_busy",
    )


class Holding:
    """The bytes one reply holds of a :class:`ReplyBudget`."""

    __slots__ = ("_budget", "size")

    def __init__(self, budget: ReplyBudget) -> None:
        self._budget = budget
        self.size = 0

    def take(self, size: int) -> None:
        """Hold ``size`` bytes more; :func:`busy` (503) when the budget has not that many left."""
        self._budget._take(size)
        self.size += size

    def release(self) -> None:
        """Give back everything held."""
        if self.size:
            self._budget._give(self.size)
            self.size = 0

    def __enter__(self) -> Holding:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    async def read(self, response: AsyncResponse, limit: int) -> bytes:
        """``response``'s whole body, held as it arrives; past ``limit`` bytes
        :class:`~getgpt.protocol.errors.LimitExceeded`, past the budget a 503."""
        pieces: list[bytes] = []
        size = 0
        try:
            async for piece in response.reads():
                size += len(piece)
                if size > limit:
                    amount = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"
                    raise LimitExceeded(f"the reply is larger than {amount} (max_reply_bytes)")
                self.take(len(piece))
                pieces.append(piece)
        except BaseException:
            # This frame lives on in the error's traceback, for as long as the error does: not
            # the pieces with it.
            pieces.clear()
            piece = b""
            raise
        if len(pieces) < 2:
            return pieces[0] if pieces else b""
        self.take(size)  # the joined copy, while the pieces still stand
        body = b"".join(pieces)
        pieces.clear()
        self._budget._give(size)
        self.size -= size
        return body
