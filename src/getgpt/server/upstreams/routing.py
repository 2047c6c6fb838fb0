"""Which upstream answers a request: the routing table, the picks, and the end of the tries.

A request's model is first looked up among the aliases (a client's name -> the routed name),
then among the models the upstreams serve: the upstreams naming it form its **pool**; a model no
upstream names goes to the pool of those that serve any (``"*"``); a model with neither is
routed nowhere (404). The model's fallbacks follow it, in order (and theirs after them), each a
pool of its own.

:meth:`Router.attempts` walks that chain for one request: each call to :meth:`Attempts.next`
picks an upstream of the current pool that is healthy, under its cap and not yet tried by this
request (:mod:`.strategies` chooses among them), up to ``attempts`` per model; when the pool has
none left, the next fallback's. :meth:`Attempts.error` is the answer once nothing is left: the
last failure as it was when only one upstream was tried; after several, 429 (with its
``Retry-After``) if the last was a 429, 504 if it timed out, else 502, saying how many were
tried; 503 with ``Retry-After`` when no upstream could even be tried (all cooled, or full).

Picking is synchronous and cheap (a few microseconds with three upstreams: bench/routing.py),
so no lock is held across an await: the event loop runs one pick at a time.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..api_error import ApiError, retry_in
from ..config import ANY_MODEL, Routing
from .health import FAILING, SharedCooldowns
from .kinds import Upstream
from .strategies import STRATEGY, LeastInFlight, Member, Strategy

if TYPE_CHECKING:
    from ..operations.prometheus import PrometheusMetrics

__all__ = ["Attempts", "Failure", "Pool", "Router"]

log = logging.getLogger("getgpt.server")

Clock = Callable[[], float]
# Failures that move a request to another upstream (before its first byte): no answer, a reply
# broken off before anything was passed on, and these statuses; 401/403 only when another
# upstream of the model holds another key.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
KEY_STATUSES = frozenset({401, 403})


class Failure(Exception):
    """One try that failed before anything reached the client: ``error`` is what the client gets
    if nothing else answers; ``reason`` what the metrics and ``/healthz`` call it (``connect``,
    ``timeout``, ``protocol``, or the status); ``retry_after`` a 429's or 503's wish, in seconds."""

    def __init__(self, error: ApiError, reason: str, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.reason = reason
        self.retry_after = retry_after


class Pool:
    """The upstreams of one routed model."""

    __slots__ = ("capped", "getgpt_only", "kinds", "members", "routes")

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        #: Those that serve OpenAI's other routes (and requests without a GetGpt form).
        self.routes = [member for member in members if member.upstream.forwards_routes]
        self.kinds = {member.upstream.kind for member in members}
        #: Only getgpt upstreams: a request must have a GetGpt form to be sent anywhere.
        self.getgpt_only = self.kinds == {"getgpt"}
        #: Some member has a cap of its own (so a pick must look at what each has in flight).
        self.capped = any(member.health.max_in_flight for member in members)


class Router:
    """A routing table made live: see the module docstring."""

    def __init__(
        self,
        routing: Routing,
        upstreams: dict[str, Upstream],
        *,
        clock: Clock = time.monotonic,
        draw: random.Random | None = None,
        telemetry: PrometheusMetrics | None = None,
    ) -> None:
        self.routing = routing
        self.clock = clock
        self.telemetry = telemetry
        self.shared: SharedCooldowns | None = None
        self.strategy: Strategy = (
            LeastInFlight(draw) if routing.strategy == "least-in-flight" else STRATEGY[routing.strategy]()
        )
        self.attempts_each = routing.attempts
        self.cooldown = routing.cooldown
        self.failures_to_cool = routing.failures_to_cool
        self.upstreams = [upstreams[entry.name] for entry in routing.upstreams]
        members: dict[str, list[Member]] = {}
        for entry in routing.upstreams:
            for name, sent in entry.models:
                members.setdefault(name, []).append(Member(upstreams[entry.name], sent, entry.weight))
        self.pools = {name: Pool(listed) for name, listed in members.items()}
        #: The routed names each upstream serves ("*": any), by its name.
        self.serves = {entry.name: [name for name, _ in entry.models] for entry in routing.upstreams}
        self.aliases = dict(routing.aliases)
        self.fallbacks = {self.aliases.get(name, name): targets for name, targets in routing.fallbacks}
        self._chains: dict[str, list[tuple[str, Pool]]] = {}
        #: The kinds of upstream routed to, and whether some upstream serves any model (then no
        #: model is routed nowhere).
        self.kinds = {upstream.kind for upstream in self.upstreams}
        any_pool = self.pools.get(ANY_MODEL)
        self.routes_anything = any_pool is not None
        # The chain of every model no upstream names: the pool of those serving any, as asked.
        self._any: list[tuple[str, Pool]] | None = [("", any_pool)] if any_pool is not None else None
        #: No upstream is cooled from this time on (``clock``'s), as far as this router cooled
        #: them: until then a pick looks at each member's cooldown.
        self.cooled_until = max((upstream.health.cooled_until for upstream in self.upstreams), default=0.0)

    # -- the table ------------------------------------------------------------------------------

    def pool(self, model: str) -> Pool | None:
        """The pool serving ``model`` (the client's name, or a routed one), if any does."""
        routed = self.aliases.get(model, model)
        return self.pools.get(routed) or self.pools.get(ANY_MODEL)

    def chain(self, model: str) -> list[tuple[str, Pool]]:
        """``model``'s routed name and pool, then each fallback's, in order; [] if routed nowhere.

        The routed name of a model no upstream names is "" when it is sent as asked."""
        routed = self.aliases.get(model, model)
        found = self._chains.get(routed)
        if found is not None:
            return found
        if (
            self._any is not None
            and routed == model
            and routed not in self.pools
            and routed not in self.fallbacks
        ):
            return self._any
        chain: list[tuple[str, Pool]] = []
        self._walk(routed, chain, set())
        if routed in self.pools or routed in self.fallbacks:
            self._chains[routed] = chain  # a configured name: kept (a client's may be anything)
        return chain

    def _walk(self, routed: str, chain: list[tuple[str, Pool]], seen: set[str]) -> None:
        if routed in seen:
            return
        seen.add(routed)
        pool = self.pools.get(routed) or self.pools.get(ANY_MODEL)
        if pool is not None:
            chain.append((routed, pool))
        for target in self.fallbacks.get(routed, ()):
            self._walk(self.aliases.get(target, target), chain, seen)

    def served(self) -> set[str]:
        """The model names upstreams name (``"*"`` included if one serves any)."""
        return set(self.pools)

    def attempts(self, model: str, deadline: float, *, routes_only: bool = False) -> Attempts:
        """The tries of one request for ``model``; ``routes_only`` keeps to the upstreams that
        serve OpenAI's other routes (a forwarded route, or a request without a GetGpt form)."""
        return Attempts(self, model, deadline, routes_only)

    def ready(self) -> bool:
        """Whether some upstream is healthy (``/readyz``)."""
        now = self.clock()
        return any(not upstream.health.cooled(now) for upstream in self.upstreams)

    # -- health -----------------------------------------------------------------------------------

    def failed(self, upstream: Upstream, failure: Failure) -> None:
        """Count ``failure`` against ``upstream``; cool it when that is the rule."""
        health = upstream.health
        now = self.clock()
        was_cooled = health.cooled(now)
        seconds = health.failed(
            failure.reason,
            now,
            cooldown=self.cooldown,
            failures_to_cool=self.failures_to_cool,
            retry_after=failure.retry_after,
        )
        if seconds is None:
            return
        self.cooled_until = max(self.cooled_until, health.cooled_until)
        if not was_cooled:
            log.warning(
                "upstream %s cooled for %.0f s after %s (%d failure(s) in a row)",
                upstream.name,
                seconds,
                failure.reason,
                health.failures,
            )
            if self.telemetry is not None:
                self.telemetry.upstream_cooled(upstream.name, True)
        if self.shared is not None:
            self.shared.publish(upstream.shared_key, seconds, health.cooled_by)

    def cool(self, upstream: Upstream, seconds: float, why: str) -> None:
        """Cool ``upstream`` for ``seconds`` (a probe failed, or another process cooled it)."""
        upstream.health.cool(seconds, self.clock(), why)
        self.cooled_until = max(self.cooled_until, upstream.health.cooled_until)

    def take_back(self, upstream: Upstream, why: str) -> None:
        """``upstream`` is healthy again (a probe answered, or another process said so)."""
        if not upstream.health.cooled_until:
            return
        upstream.health.take_back()
        log.warning("upstream %s is back (%s)", upstream.name, why)
        if self.telemetry is not None:
            self.telemetry.upstream_cooled(upstream.name, False)

    def cooled_for_failing(self) -> list[Upstream]:
        """The upstreams cooled because they failed (not for a 429): those a probe may take back."""
        now = self.clock()
        return [
            upstream
            for upstream in self.upstreams
            if upstream.health.cooled(now) and upstream.health.cooled_by == FAILING
        ]


class Attempts:
    """The tries of one request; see :meth:`Router.attempts`."""

    __slots__ = (
        "_chain",
        "_left",
        "_link",
        "_model",
        "_routes_only",
        "_since",
        "deadline",
        "failure",
        "router",
        "tried",
    )

    def __init__(self, router: Router, model: str, deadline: float, routes_only: bool) -> None:
        self.router = router
        self._model = model
        self.deadline = deadline
        self._routes_only = routes_only
        self._chain = router.chain(model)
        self._link = 0
        self._left = router.attempts_each
        #: The upstreams tried, in order; those of the current model from ``_since`` on.
        self.tried: list[Upstream] = []
        self._since = 0
        #: The last try's failure.
        self.failure: Failure | None = None

    def next(self) -> tuple[Member, str] | None:
        """The next upstream to try and the routed model it is tried for ("" for a model sent as
        asked to an upstream serving any); None when none is left."""
        router = self.router
        now = router.clock()
        if now >= self.deadline:
            return None
        chain = self._chain
        tried = self.tried
        while self._link < len(chain):
            if self._left:
                routed, pool = chain[self._link]
                members = pool.routes if self._routes_only else pool.members
                if len(tried) == self._since and now >= router.cooled_until and not pool.capped:
                    open_ = members  # the first try, nothing cooled, no caps: every member is open
                else:
                    mine = tried[self._since :]
                    open_ = [
                        member
                        for member in members
                        if member.health.open(now) and member.upstream not in mine
                    ]
                if open_:
                    member = open_[0] if len(open_) == 1 else router.strategy.pick(open_)
                    self._left -= 1
                    tried.append(member.upstream)
                    return member, routed
            # This model's upstreams are spent: its fallback's, with attempts of their own.
            self._link += 1
            self._left = router.attempts_each
            self._since = len(tried)
        return None

    def failed(self, member: Member, failure: Failure) -> bool:
        """Record ``failure`` of the try on ``member``; whether another upstream may be tried."""
        self.failure = failure
        self.router.failed(member.upstream, failure)
        status = failure.reason
        if status in ("connect", "timeout", "protocol") or (
            status.isdigit() and int(status) in RETRIED_STATUSES
        ):
            return True
        if status.isdigit() and int(status) in KEY_STATUSES:
            # Another key may be accepted: only worth a try where one is held.
            return self._another_key(member.upstream.key)
        return False

    def _another_key(self, key: str | None) -> bool:
        now = self.router.clock()
        mine = self.tried[self._since :]
        for member in self._chain[self._link][1].members if self._link < len(self._chain) else ():
            upstream = member.upstream
            if upstream.key != key and upstream not in mine and member.health.open(now):
                return True
        return False

    def error(self) -> ApiError:
        """What the client gets once nothing is left to try."""
        failure = self.failure
        if failure is None:
            return self._none_open()
        if len(self.tried) == 1:
            return failure.error  # as before routing: the one upstream's answer
        last = failure.error
        names = ", ".join(dict.fromkeys(upstream.name for upstream in self.tried))
        status = 429 if failure.reason == "429" else 504 if failure.reason == "timeout" else 502
        headers = (
            {"Retry-After": last.headers["Retry-After"]}
            if status == 429 and "Retry-After" in last.headers
            else {}
        )
        return ApiError(
            status,
            f"{len(self.tried)} upstream tries for model {self._model!r} failed ({names}); "
            f"the last: {last.message}",
            type=last.type,
            code=last.code,
            headers=headers,
        )

    def _none_open(self) -> ApiError:
        router = self.router
        now = router.clock()
        if not self._chain:
            return ApiError(
                404,
                f"the model {self._model!r} is not routed to any upstream here",
                param="model",
                code="model_not_found",
            )
        members = [
            member
            for _, pool in self._chain
            for member in (pool.routes if self._routes_only else pool.members)
        ]
        if not members:
            return ApiError(
                400,
                f"no upstream of the model {self._model!r} serves this route (only openai upstreams do)",
                param="model",
                code="unsupported_endpoint",
            )
        if now >= self.deadline:
            return ApiError(
                504,
                "the request's deadline passed before an upstream answered",
                type="upstream_error",
                code="upstream_timeout",
            )
        cooled = [member.health.cooled_until - now for member in members if member.health.cooled(now)]
        if len(cooled) == len(members):
            return retry_in(
                min(cooled),
                503,
                f"no upstream of the model {self._model!r} is healthy now (all cooled)",
                type="upstream_error",
                code="no_healthy_upstream",
            )
        return ApiError(
            503,
            f"every upstream of the model {self._model!r} is answering as many requests as it may; "
            "retry shortly",
            type="upstream_error",
            code="upstreams_full",
            headers={"Retry-After": "1"},
        )
