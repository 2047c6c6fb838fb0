"""Reply slots: what an admitted request holds while its reply is made, and all that is counted of it.

:class:`Slots` is one app's admission of replies: it takes a :class:`Slot` for a request that
passed every check (a ``503`` past ``limit`` slots at once), counts each refusal, and is the one
place where a slot's life reaches ``/healthz`` (:class:`~getgpt.server.operations.counts.Counts`)
and ``/metrics`` (:class:`~getgpt.server.operations.prometheus.PrometheusMetrics`).

A slot is *released* exactly once, with how the reply ended (:class:`~getgpt.server.chat.pump.Ending`):
by the pump just before the reply's last bytes go out -- so a client that has read the whole reply
finds its slot already free -- or, whatever happened, when the request's ``with slot:`` block
ends. It is *closed* at that block's end, once the reply's last bytes have gone: the durations are
known then. Between the two it is the request's record: the route and the model asked for, the
key the client was known by (``key``), and, in :attr:`Slot.outcome`, what the backend reported
(its usage, and the upstream that answered). Per-key limits and a usage ledger belong here too:
:meth:`Slots.take` admits, :meth:`Slots._close` sees every slot's whole record once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol

from ..api_error import ApiError, try_later
from ..chat.pump import Ending
from ..chat.wire import Outcome
from ..operations.counts import Counts
from ..operations.prometheus import PrometheusMetrics

__all__ = ["TIMING", "Slot", "Slots", "Timing"]

#: Where the app leaves a request's :class:`Timing` in its ASGI scope (the key store's ledger reads it too).
TIMING = "getgpt.timing"


class Timing(Protocol):
    """When a request arrived (``time.perf_counter()``), and what the app's ``send`` saw of its
    response: the status, and when the first bytes of its body went out (the app keeps it)."""

    @property
    def arrived(self) -> float: ...
    @property
    def status(self) -> int: ...
    @property
    def first_body(self) -> float | None: ...


class Slot:
    """One admitted request's reply slot and its record; see the module docstring."""

    __slots__ = (
        "_slots", "charge", "ending", "key", "model", "outcome", "prompt_chars", "route", "sent_tokens",
        "timing",
    )  # fmt: skip

    def __init__(self, slots: Slots, route: str, timing: Timing, model: str | None, key: str | None) -> None:
        self._slots = slots
        self.route = route
        self.timing = timing
        #: The model the client asked for (None on a forwarded route).
        self.model = model
        #: Whom the client was known as, if a key check named it ("key #0"); never a key itself.
        self.key = key
        #: What the backend reports besides its reply: the finish reason, the usage, the choices.
        self.outcome = Outcome()
        #: How the reply ended, once the slot is released.
        self.ending: Ending | None = None
        #: With the key store on: the prompt's characters and the completion tokens sent so far,
        #: estimated -- what a reply without reported usage is charged (a stream cut mid-way).
        self.prompt_chars = 0
        self.sent_tokens = 0
        #: With the key store on: charges the request's key its tokens, awaited as the backend
        #: ends -- before the reply's last bytes, so the next request already sees the spend.
        self.charge: Callable[[], Awaitable[None]] | None = None

    def release(self, ending: Ending) -> None:
        """Free the slot, the reply having ended as ``ending``; a second call changes nothing."""
        if self.ending is None:
            self.ending = ending
            self._slots._release(self)

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Released already on every path of the pump; this one is for a request whose reply failed
        # before the pump ran, or a bug.
        self.release(Ending.ERROR)
        self._slots._close(self)
        # The charge (a partial of the request's scope, where the slot is kept, and of this slot)
        # makes a reference cycle: broken here, or the slot, the scope and the record with them
        # wait for the cyclic collector (8 objects a request with the key store on).
        self.charge = None


class Slots:
    """One app's reply slots: at most ``limit`` taken at once; every count of them, in one place."""

    def __init__(self, limit: int, counts: Counts, prometheus: PrometheusMetrics) -> None:
        self.limit = limit
        self.counts = counts
        self.prometheus = prometheus

    @property
    def taken(self) -> int:
        """Slots held now."""
        return self.counts.active_slots

    def take(self, route: str, timing: Timing, *, model: str | None = None, key: str | None = None) -> Slot:
        """A slot for a request to ``route`` that passed every check, or an :class:`ApiError`
        (``503``, ``too_many_streams``) when ``limit`` are held already. Hold it with ``with``."""
        counts = self.counts
        if counts.active_slots >= self.limit:
            raise try_later(f"the server is answering {self.limit} requests already", "too_many_streams")
        counts.active_slots += 1
        counts.admitted_total += 1
        self.prometheus.active.inc()
        return Slot(self, route, timing, model, key)

    def refuse(self, error: ApiError) -> None:
        """Count a request refused before a slot was taken (bad input, limits, checks)."""
        self.counts.rejected_total += 1
        self.prometheus.rejected(error.code)

    def _release(self, slot: Slot) -> None:
        counts, prometheus = self.counts, self.prometheus
        counts.active_slots -= 1
        prometheus.active.dec()
        if slot.ending is Ending.ERROR:
            counts.failed_total += 1
        elif slot.ending is Ending.GONE:
            counts.disconnects_total += 1
        usage = slot.outcome.usage
        if usage is not None:
            counts.count_usage(usage)
            prometheus.used(usage.prompt_tokens, usage.completion_tokens)

    def _close(self, slot: Slot) -> None:
        timing = slot.timing
        assert slot.ending is not None
        self.prometheus.ended(slot.route, slot.ending.value, time.perf_counter() - timing.arrived)
        if timing.first_body is not None and timing.status == 200:
            self.prometheus.first_text(slot.route, timing.first_body - timing.arrived)
