"""What the gateway knows of one upstream's health, and how an upstream is cooled and taken back.

An upstream is **healthy** (picked as its strategy says) or **cooled** (picked by nobody) until a
time. Passive health: ``failures-to-cool`` consecutive failures (no answer, a 5xx, a reply
broken off, a refused key) cool it for ``cooldown`` seconds; a 429 cools it at once, for its
``Retry-After`` when it gave one. A success clears the count. Active health: every
``health-interval`` seconds a cooled upstream is probed (``GET /v1/models``, ``/healthz`` of a
getgpt upstream); a probe answered 2xx takes it back at once, one that fails rests it another
``cooldown``. An upstream cooled by a 429 is not probed: its own ``Retry-After`` says when to
come back, and its model list would answer while its chat is still refused.

Time is the caller's ``now`` (``time.monotonic()`` in the server), so the tests can move it.

With ``--redis`` the cooldowns are also written to Redis and read back by every worker and
replica (:class:`SharedCooldowns`, kept by :mod:`getgpt.server.admission.shared_state`).
"""

from __future__ import annotations

from typing import Protocol

from ..api_error import ApiError

__all__ = ["EWMA_WEIGHT", "FAILING", "LIMITED", "Health", "SharedCooldowns"]

#: The weight of a new time-to-first-byte sample in the moving average (the rest: the average).
EWMA_WEIGHT = 0.3
#: Why an upstream is cooled: it failed, or it answered 429.
FAILING = "failing"
LIMITED = "rate_limited"


class Health:
    """One upstream's state; only the event loop's thread touches it."""

    __slots__ = (
        "cooled_at",
        "cooled_by",
        "cooled_until",
        "failures",
        "in_flight",
        "last_error",
        "max_in_flight",
        "ttfb",
    )

    def __init__(self, max_in_flight: int = 0) -> None:
        #: Requests it is answering now (streams until their last byte).
        self.in_flight = 0
        #: Its own cap; 0: none.
        self.max_in_flight = max_in_flight
        #: Consecutive failures since its last success.
        self.failures = 0
        #: Until when (``now``'s clock) it is cooled; 0.0: not cooled.
        self.cooled_until = 0.0
        self.cooled_at = 0.0
        #: Why it was cooled: FAILING, or LIMITED (a 429).
        self.cooled_by = ""
        #: The last failure, as a reason (``connect``, ``timeout``, ``503``, ...).
        self.last_error: str | None = None
        #: Moving average of seconds to the first byte of a reply (0.0 until measured).
        self.ttfb = 0.0

    def open(self, now: float) -> bool:
        """Whether it may take a request now: not cooled, and under its cap."""
        return now >= self.cooled_until and (not self.max_in_flight or self.in_flight < self.max_in_flight)

    def cooled(self, now: float) -> bool:
        return now < self.cooled_until

    def succeeded(self, ttfb: float | None = None) -> None:
        self.failures = 0
        if ttfb is not None:
            self.ttfb = ttfb if not self.ttfb else self.ttfb + EWMA_WEIGHT * (ttfb - self.ttfb)

    def failed(
        self,
        reason: str,
        now: float,
        *,
        cooldown: float,
        failures_to_cool: int,
        retry_after: float | None = None,
    ) -> float | None:
        """Count a failure; the seconds it is cooled for because of it, or None if it is not.

        ``cooldown`` 0 never cools (``--upstream`` alone: one upstream, as before routing).
        """
        self.failures += 1
        self.last_error = reason
        if not cooldown:
            return None
        if reason == "429":
            return self.cool(retry_after if retry_after is not None else cooldown, now, LIMITED)
        if self.failures >= failures_to_cool:
            return self.cool(cooldown, now, FAILING)
        return None

    def cool(self, seconds: float, now: float, why: str) -> float:
        """Cool it for ``seconds`` from ``now`` (never shortening a cooldown already longer)."""
        until = now + seconds
        if until > self.cooled_until:
            self.cooled_until = until
            self.cooled_by = why
            self.cooled_at = now
        return seconds

    def take_back(self) -> None:
        """A probe answered, or the cooldown was lifted elsewhere: healthy now."""
        self.cooled_until = 0.0
        self.cooled_by = ""
        self.failures = 0


class SharedCooldowns(Protocol):
    """Cooldowns shared by every process through Redis (``--redis``).

    Writing never waits on the request's path: :meth:`publish` and :meth:`withdraw` start the
    write and return. :meth:`read` returns, for each key, the seconds left of its cooldown and
    why it was cooled (None for a key not cooled), or None when Redis cannot be reached.
    """

    @property
    def available(self) -> bool:
        """Redis is answering."""
        ...

    #: ``--redis-failure open``: while Redis is down, each process keeps its own cooldowns;
    #: closed: routed requests are refused (:meth:`unavailable`).
    fail_open: bool

    def publish(self, key: str, seconds: float, why: str) -> None: ...

    def withdraw(self, key: str) -> None: ...

    async def read(self, keys: list[str]) -> list[tuple[float, str] | None] | None: ...

    def unavailable(self) -> ApiError: ...
