"""Time bounds both ways keep beside the per-step timeouts: a reply's head, a whole reply.

A :class:`Bound` is a moment on the ``time.monotonic()`` clock something must be done by, and
what to say when it is not. Each wait a transport makes is the step's own timeout, cut short by
:func:`within` to end by the bound.
"""

from __future__ import annotations

import time

from ..protocol.errors import Timeout
from .base import Timeouts

__all__ = ["Bound", "head_bound", "reply_bound", "within"]


class Bound:
    """A moment something must be done by (``time.monotonic()``), and what to say when it is not."""

    __slots__ = ("seconds", "until", "url")

    def __init__(self, until: float, url: str, seconds: float | None = None) -> None:
        self.until = until
        self.url = url
        #: For a head bound, its length in seconds; None for a reply's deadline.
        self.seconds = seconds

    @property
    def message(self) -> str:
        # Made only when needed: a bound is made for every request, a message rarely.
        if self.seconds is None:
            return f"timed out: the reply from {self.url} did not end by its deadline"
        within = f"status and headers within {self.seconds:g} s"
        return f"timed out waiting for the head of {self.url}'s reply ({within})"

    def left(self) -> float:
        """Seconds left; raises :class:`~getgpt.protocol.errors.Timeout` when none are."""
        left = self.until - time.monotonic()
        if left <= 0:
            raise Timeout(self.message)
        return left


def reply_bound(deadline: float | None, url: str) -> Bound | None:
    """The bound of a whole reply that must end by ``deadline``, if it has one."""
    return None if deadline is None else Bound(deadline, url)


def head_bound(timeouts: Timeouts, deadline: float | None, url: str) -> Bound | None:
    """The bound of a reply's head, from now: ``timeouts.head``, or the deadline if that comes first."""
    seconds = timeouts.head
    if seconds is None:
        return reply_bound(deadline, url)
    until = time.monotonic() + seconds
    if deadline is not None and deadline < until:
        return Bound(deadline, url)
    return Bound(until, url, seconds)


def within(limit: float | None, bound: Bound | None) -> float | None:
    """``limit`` seconds, or fewer if ``bound`` leaves fewer (raises if it leaves none)."""
    if bound is None:
        return limit
    left = bound.left()
    return left if limit is None or left < limit else limit
