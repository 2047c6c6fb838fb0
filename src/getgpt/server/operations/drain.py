"""Graceful drain: what a server process does between SIGTERM and its exit.

On SIGTERM the process stops accepting connections and :class:`Drain` starts: ``/readyz`` answers
503 from that moment (a load balancer or Kubernetes takes the process out of rotation), every
answer carries ``Connection: close`` (a client on a kept-alive connection reconnects elsewhere for
its next request), and streams in flight run on. When the last one has ended the process exits;
if some are still open ``grace`` seconds after the signal, each is *cut*: it ends with an
in-stream error event (``server_shutting_down``) and ``[DONE]``, so its client gets an error
carrying the partial text, never a reply that merely looks short.

The drain is begun from a signal handler (:meth:`Drain.begin`), which runs on the event loop's
thread between two steps of whatever ran then; it schedules the rest on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..api_error import ApiError

__all__ = ["Drain", "shutting_down_error"]

log = logging.getLogger("getgpt.server")

Cut = Callable[[ApiError], None]
# After the cut, how long to wait for requests that cannot be cut (a forwarded /v1/embeddings
# body, say) before the process goes on to close their connections.
_AFTER_CUT = 2.0


def shutting_down_error() -> ApiError:
    """What a stream still open when the grace period ends is told."""
    return ApiError(
        503,
        "the server is shutting down: this reply was cut short; send the request again",
        type="server_error",
        code="server_shutting_down",
    )


class Drain:
    """One process's drain state, kept in ``app.state.drain``."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.draining = False
        self.began: float | None = None
        self._streams: dict[int, Cut] = {}
        self._next = 0
        self._timer: asyncio.TimerHandle | None = None
        self.cut_count = 0
        self.cut_at: float | None = None

    def register(self, cut: Cut) -> int:
        """Note an open stream; ``cut(error)`` ends it early. Returns the ticket for :meth:`unregister`."""
        self._next += 1
        self._streams[self._next] = cut
        return self._next

    def unregister(self, ticket: int) -> None:
        self._streams.pop(ticket, None)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def begin(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start draining (idempotent); safe to call from a signal handler on ``loop``'s thread."""
        if self.draining:
            return
        self.draining = True
        self.began = time.monotonic()
        loop.call_soon_threadsafe(self._arm, loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        log.info("draining: %d stream(s) open, %.0f s to finish", len(self._streams), self.grace)
        self._timer = loop.call_later(self.grace, self.cut)

    def cut(self) -> None:
        """End every stream still open with the shutting-down error."""
        self.cut_at = time.monotonic()
        streams, self._streams = list(self._streams.values()), {}
        if streams:
            log.warning("drain: grace period over, cutting %d open stream(s)", len(streams))
        self.cut_count += len(streams)
        for cut in streams:
            cut(shutting_down_error())

    async def finished(self, active: Callable[[], int], poll: float = 0.05) -> None:
        """Return once ``active()`` (requests being answered) is 0, or soon after the cut."""
        while active() > 0:
            if self.cut_at is not None and time.monotonic() - self.cut_at > _AFTER_CUT:
                log.warning("drain: %d request(s) still open after the cut; closing them", active())
                break
            await asyncio.sleep(poll)
        if self._timer is not None:
            self._timer.cancel()
