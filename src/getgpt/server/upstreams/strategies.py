"""How one upstream of a model is chosen among those that may take a request now.

One small interface, :class:`Strategy`: ``pick(members)`` returns one of ``members`` (never
empty: the healthy upstreams of the model under their caps, not yet tried by this request).
Picking is plain Python over a short list, with no await and so no lock: the event loop runs
one pick at a time. Measured with 3 upstreams (``python -m bench.routing``): well under the
10 us a request the routing may cost.

- ``least-in-flight`` (:class:`LeastInFlight`): the power of two choices -- two members drawn at
  random, the one with fewer requests in flight for its weight wins. Nearly as good as looking
  at all, and two upstreams that have just finished together are not both flooded next.
- ``weighted`` (:class:`Weighted`): smooth weighted round robin, as nginx does it: weights 1:2:3
  give shares 1/6, 2/6, 3/6, interleaved (c b c a b c ...), not in runs.
- ``latency`` (:class:`Latency`): the lowest moving average (EWMA) of time to first byte, times
  one more than the requests in flight, so the fastest does not take everything at once and an
  upstream not yet measured (0) is tried first.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

from .health import Health

if TYPE_CHECKING:
    from .kinds import Upstream

__all__ = ["STRATEGY", "Latency", "LeastInFlight", "Member", "Strategy", "Weighted"]


class Member:
    """One upstream in one model's pool: what the strategies look at."""

    __slots__ = ("current", "health", "sent", "upstream", "weight")

    def __init__(self, upstream: Upstream, sent: str | None, weight: int) -> None:
        self.upstream = upstream
        self.health: Health = upstream.health
        #: The model name the upstream gets (None: the name asked for).
        self.sent = sent
        self.weight = weight
        #: Smooth weighted round robin's running weight, in this pool.
        self.current = 0


class Strategy(Protocol):
    def pick(self, members: list[Member]) -> Member:
        """One of ``members`` (a list of at least two)."""
        ...


class LeastInFlight:
    """The power of two choices over requests in flight (per unit of weight)."""

    def __init__(self, draw: random.Random | None = None) -> None:
        # random() and a multiply: a third of randrange's time (measured, 3 upstreams).
        self._random = (draw or random.Random()).random

    def pick(self, members: list[Member]) -> Member:
        count = len(members)
        first = int(self._random() * count)
        second = int(self._random() * (count - 1))
        if second >= first:
            second += 1
        a, b = members[first], members[second]
        # a.in_flight / a.weight <= b.in_flight / b.weight, without dividing.
        return a if a.health.in_flight * b.weight <= b.health.in_flight * a.weight else b


class Weighted:
    """Smooth weighted round robin (nginx's): each pick adds every member's weight to its running
    weight, takes the largest, and takes the total off the one taken."""

    def pick(self, members: list[Member]) -> Member:
        total = 0
        best = members[0]
        for member in members:
            member.current += member.weight
            total += member.weight
            if member.current > best.current:
                best = member
        best.current -= total
        return best


class Latency:
    """The lowest EWMA of time to first byte, scaled by one more than the requests in flight."""

    def pick(self, members: list[Member]) -> Member:
        best = members[0]
        score = best.health.ttfb * (best.health.in_flight + 1)
        for member in members[1:]:
            health = member.health
            mine = health.ttfb * (health.in_flight + 1)
            if mine < score:
                best, score = member, mine
        return best


#: The strategies by the name the config file gives them.
STRATEGY: dict[str, type[Strategy]] = {
    "least-in-flight": LeastInFlight,
    "weighted": Weighted,
    "latency": Latency,
}
