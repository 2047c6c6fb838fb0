"""The forwarding backend: chat requests, and OpenAI's other routes, to the upstreams of their model.

Which upstream answers is :mod:`.routing`'s choice, each upstream one of the two kinds of
:mod:`.kinds`; what comes back is relayed here the same way whatever the kind, through
:class:`~getgpt.server.upstreams.relay.EventRelay`: the upstream's events passed on untouched,
its whole JSON reply likewise. The server owns only the model (``--upstream-model``, an
upstream's ``models`` table, the aliases), the upstreams' credentials and, on the ``openai``
kind, ``stream_options.include_usage`` (asked for to count tokens; the usage chunk reaches only a
client that asked for it).

**Tries.** A request that fails before anything of its reply has been passed on -- no
connection, no head in time, a 429, 500, 502, 503 or 504, a reply broken off before its first
event, a 401 or 403 when another upstream of the model holds another key -- is sent to the next
pick, within the model's ``attempts`` and the request's own deadline (``--upstream-max-duration``
from its arrival), then to its fallback models'. Once a byte has gone to the client nothing is
tried again: a reply cut mid-way ends with an error event after the partial text.

An upstream's error keeps its status, body and ``Retry-After``, but for a 401 (or 407): the
client's own credentials were fine, the server's were not, so that is the server's failure --
502, with the upstream's message (a 401 passed on would tell the client, and its SDK, that *its*
key is wrong). A Cloudflare challenge page in front of the upstream is likewise the server's
502, naming it.

**Health.** Every failure counts against its upstream (:mod:`.health`); a background task probes
the cooled ones every ``health-interval`` and, with ``--redis``, reads the cooldowns every
process shares (:data:`SYNC_EVERY`). :meth:`ForwardingBackend.reload` swaps the routing table
(SIGHUP): a request keeps the table it began with, so a stream finishes on its upstream, and an
upstream the new table drops is closed once its last request has ended.

What leaves for a client or a log is made safe in small modules of their own: each upstream's
secrets and address out of every error built from what it said (:mod:`.redaction`, applied where
such an error is made: :meth:`ForwardingBackend._head`, the relay's error, a whole reply's), a
status that cannot be passed on as the server's 502 (:mod:`.statuses`), whole replies held within
one budget for every request (:mod:`.budget`), and each upstream's model list asked once per miss
(:mod:`.single_flight`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ...client.bodies import DEFAULT_MAX_REPLY_BYTES, aread_excerpt
from ...client.statuses import error_message, is_cloudflare_block, retry_after
from ...client.transport import AsyncResponse, Request
from ...protocol import errors
from ...protocol.reply import ReplyParser
from ...protocol.untrusted import NOT_JSON, decode_json
from ..api_error import ApiError
from ..chat.request import Chat, invalid, not_served
from ..chat.wire import Outcome
from ..config import ANY_MODEL, Routing, ServerConfig
from .budget import Holding, ReplyBudget
from .health import SharedCooldowns
from .kinds import KINDS, Upstream, timeouts_of
from .pinning import model_in, with_model
from .relay import EventRelay, bad_upstream, completion_from_events, events_from_completion, usage_in
from .routing import Failure, Router
from .single_flight import SingleFlight
from .statuses import refused_status
from .strategies import Member

if TYPE_CHECKING:
    from ..operations.prometheus import PrometheusMetrics

__all__ = ["SYNC_EVERY", "ForwardingBackend", "configured_models"]

log = logging.getLogger("getgpt.server")

_EXCERPT = 64 * 1024
# Statuses that are the server's own failure, not the client's: its credentials upstream.
_OURS = frozenset({401, 407})
# Answers that count against an upstream's health and may move the request to another.
_FAILURES = frozenset({401, 403, 429, 500, 502, 503, 504})
#: Seconds between two reads of the cooldowns shared through Redis.
SYNC_EVERY = 0.5
#: Seconds between two writes of each upstream's counts to /metrics' series (every worker's).
FLUSH_EVERY = 0.25
#: Longest wait for a probe's answer (less when ``health-interval`` is shorter).
PROBE_TIMEOUT = 5.0
# How long a failure to list an upstream's models is answered from memory: a failing upstream is
# asked again soon, not by every request.
_MODELS_FAILURE_TTL = 5.0


def configured_models(config: ServerConfig) -> list[dict[str, Any]]:
    """The model objects of the server's own ``--model`` names (and ``--upstream-model``)."""
    names = dict.fromkeys([*config.models, *([config.upstream_model] if config.upstream_model else [])])
    return [_model_object(name) for name in names]


def _model_object(name: str, created: object = 0, owned_by: object = "getgpt") -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owned_by}


class _Held:
    """A forwarded route's answer, handed to the caller to read: its upstream stays counted
    in flight until the caller closes it."""

    def __init__(self, response: AsyncResponse, upstream: Upstream, backend: ForwardingBackend) -> None:
        self._response = response
        self._upstream = upstream
        self._backend = backend
        self._open = True

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def reason_phrase(self) -> str:
        return self._response.reason_phrase

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    def reads(self) -> AsyncIterator[bytes]:
        return self._response.reads()

    async def read(self) -> bytes:
        return await self._response.read()

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        finally:
            if self._open:
                self._open = False
                self._backend._leave(self._upstream)


class ForwardingBackend:
    """Forwards chat requests, and OpenAI's other routes, to upstreams; see the module docstring."""

    passthrough = True

    def __init__(
        self, config: ServerConfig, metrics: PrometheusMetrics | None = None, *, clock: Any = time.monotonic
    ) -> None:
        routing = config.routing_table()
        assert routing is not None
        self.config = config
        self.name = config.backend
        self.clock = clock
        self.max_duration = config.upstream_max_duration
        #: Where each upstream's requests, failures and time to first byte are counted, if anywhere.
        self._telemetry = metrics
        if metrics is not None:
            metrics.backend = self.name
            metrics.before_exposition.append(self.flush_metrics)
        self._configured = configured_models(config)
        self._models_ttl = config.models_cache_ttl
        # Each upstream's own model list (its "*" models), asked once however many wait for it.
        self._listed: dict[str, SingleFlight[list[dict[str, Any]]]] = {}
        #: Whole replies held at once, by every request together (``--whole-reply-budget``).
        self.budget = ReplyBudget(config.whole_reply_budget)
        if metrics is not None:
            self.budget.watch(metrics)
        self._tasks: list[asyncio.Future[None]] = []
        self._closing: set[asyncio.Future[None]] = set()
        self.shared: SharedCooldowns | None = None
        self.upstreams: dict[str, Upstream] = {}
        self.router = self._router(routing)

    # -- the table ------------------------------------------------------------------------------

    def _router(self, routing: Routing) -> Router:
        """A router for ``routing``, keeping the upstreams it shares with the running one."""
        self.flush_metrics()  # an upstream dropped takes nothing counted with it
        config = self.config
        made: dict[str, Upstream] = {}
        for entry in routing.upstreams:
            known = self.upstreams.get(entry.name)
            if known is not None and known.same(
                entry.name, entry.url, entry.api_key, entry.kind, config.upstream_usage
            ):
                known.health.max_in_flight = entry.max_in_flight
                made[entry.name] = known
                continue
            # The server's own stream limit bounds the connections open upstream at once.
            made[entry.name] = KINDS[entry.kind](
                entry.name,
                entry.url,
                key=entry.api_key,
                timeouts=timeouts_of(config),
                ask_usage=config.upstream_usage,
                max_in_flight=entry.max_in_flight,
            )
        telemetry = self._telemetry
        if telemetry is not None:
            for upstream in made.values():
                if upstream.series is None:
                    upstream.series = telemetry.upstream_series(upstream.name)
        router = Router(routing, made, clock=self.clock, telemetry=telemetry)
        router.shared = self.shared
        for name, upstream in self.upstreams.items():
            if made.get(name) is not upstream:
                upstream.retired = True
                if not upstream.health.in_flight:
                    self._close_later(upstream)
        self.upstreams = made
        self.forwards_routes = any(upstream.forwards_routes for upstream in made.values())
        self._listed = {name: listed for name, listed in self._listed.items() if made.get(name) is not None}
        return router

    def reload(self, config: ServerConfig) -> None:
        """Route by ``config``'s table from now on; requests under way finish as they began."""
        routing = config.routing_table()
        assert routing is not None
        self.router = self._router(routing)
        log.warning(
            "routing reloaded: %d upstream(s): %s",
            len(routing.upstreams),
            ", ".join(entry.name for entry in routing.upstreams),
        )

    def share(self, shared: SharedCooldowns) -> None:
        """Keep cooldowns in ``shared`` (Redis) too, for every worker and replica."""
        self.shared = shared
        self.router.shared = shared

    # -- the chat endpoints ----------------------------------------------------------------------

    def check(self, chat: Chat) -> None:
        router = self.router
        if router.routes_anything and "getgpt" not in router.kinds:
            return  # nothing is routed nowhere, and every upstream takes any request
        pool = router.pool(chat.model)
        if pool is None:
            raise router.attempts(chat.model, 0.0).error()  # routed nowhere: 404
        if pool.getgpt_only:
            chat.request  # noqa: B018 -- a /v1 request must have a GetGpt form: a 400 if it has none

    def _refuse_without_shared_state(self, router: Router) -> None:
        shared = router.shared
        if shared is not None and not shared.available and not shared.fail_open:
            raise shared.unavailable()

    def _routes_only(self, router: Router, chat: Chat) -> bool:
        """Whether ``chat`` must keep to openai upstreams: it has no GetGpt form to send the others."""
        if chat.raw is None or len(router.kinds) < 2:
            return False
        pool = router.pool(chat.model)
        if pool is None or "getgpt" not in pool.kinds or pool.getgpt_only:
            return False
        try:
            chat.request  # noqa: B018 -- made once, and kept for the getgpt upstream if it is picked
        except ApiError:
            return True
        return False

    async def stream(self, chat: Chat, outcome: Outcome) -> AsyncIterator[bytes]:
        """The reply of the first upstream that answers; see "Tries" in the module docstring.

        One try is written out here rather than in a generator of its own: the one more
        generator, and closing it, cost ~3 us a request (measured in process)."""
        router = self.router  # this request's table, whatever a reload does meanwhile
        self._refuse_without_shared_state(router)
        model = chat.model
        attempts = router.attempts(
            model, self.clock() + self.max_duration, routes_only=self._routes_only(router, chat)
        )
        while (picked := attempts.next()) is not None:
            member, routed = picked
            upstream = member.upstream
            outcome.upstream = upstream.name
            sent = member.sent or routed
            body, strip_usage = upstream.body(chat, None if sent == model or not sent else sent)
            self._enter(upstream)
            response: AsyncResponse | None = None
            held: Holding | None = None  # a share of the budget, taken only for a reply held whole
            passed = False  # some of the reply has been handed on: no other upstream may be tried now
            try:
                try:
                    response = await self._head(
                        upstream, upstream.transport.send(body, deadline=attempts.deadline)
                    )
                    kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
                    if not chat.stream:
                        held = self.budget.holding()
                        whole = await _whole(response, kind, model, outcome, held)
                        passed = True
                        yield whole
                        return
                    if kind == "application/json":
                        held = self.budget.holding()
                        whole = events_from_completion(await held.read(response, DEFAULT_MAX_REPLY_BYTES))
                        passed = True
                        yield whole
                        return
                    relay = EventRelay(strip_usage=strip_usage)
                    try:
                        async for read in response.reads():
                            events = relay.feed(read)
                            if events:
                                passed = True
                                yield events
                            if relay.error is not None or relay.done:
                                break
                        else:
                            last = relay.close()
                            if last:
                                passed = True
                                yield last
                    finally:
                        outcome.usage = relay.usage
                    error = relay.error
                    if error is None:
                        return
                    cut = error.code == "bad_upstream"  # broken off, not the upstream's own error event
                    self._count(upstream, "protocol" if cut else "stream_error")
                    if not cut:
                        raise upstream.redaction.error(error)
                    raise Failure(upstream.redaction.error(error), "protocol")
                except (errors.TransportError, errors.ProtocolError) as exc:
                    reason = "timeout" if isinstance(exc, errors.Timeout) else "protocol"
                    self._count(upstream, reason)
                    raise Failure(_broken_off(upstream, exc), reason) from None
                except ApiError as exc:  # a whole reply's: past its size or the budget, or not JSON
                    raise upstream.redaction.error(exc) from None
            except Failure as failure:
                if passed:  # too late for another upstream: the client has part of this one's reply
                    router.failed(upstream, failure)
                    raise failure.error from None
                if not attempts.failed(member, failure):
                    break
            finally:
                if held is not None:
                    held.release()
                # Closing early (the client went away) closes the connection rather than reusing it.
                if response is not None:
                    await response.aclose()
                self._leave(upstream)
        raise attempts.error()

    async def _head(self, upstream: Upstream, sending: Any, *, counted: bool = True) -> AsyncResponse:
        """The upstream's 2xx answer (its head) to a request being sent. No answer, and the
        answers that count against it, are a :class:`Failure`; any other answer its
        :class:`ApiError` (the client's fault, passed on). ``counted``: the request is a try of a
        client's (its time and failures go to the metrics and the upstream's health); a model
        list asked for is not."""
        started = time.perf_counter()
        try:
            response: AsyncResponse = await sending
        except errors.TransportError as exc:
            reason = "timeout" if isinstance(exc, errors.Timeout) else "connect"
            if counted:
                self._count(upstream, reason)
            raise Failure(_unreachable(upstream, exc), reason) from None
        except errors.ProtocolError as exc:  # a head past the transport's bounds
            if counted:
                self._count(upstream, "protocol")
            raise Failure(_broken_off(upstream, exc), "protocol") from None
        status = response.status_code
        # 200, nearly every answer, is the one status surely passed on: no call for it.
        refused = None if status == 200 else refused_status(status, upstream.redaction.name)
        if refused is not None:  # 1xx, 204, 205, 304, 600...: nothing a client could be handed
            await response.aclose()
            log.warning("upstream %s answered HTTP %s: not passed on", upstream.logged_as, status)
            if counted:
                self._count(upstream, str(status))
            raise Failure(refused, "protocol")
        if counted:
            waited = time.perf_counter() - started
            series = upstream.series
            if series is not None:
                series.ttfb.observe(waited)
            if 200 <= status < 300:
                upstream.health.succeeded(waited)
        if 200 <= status < 300:
            return response
        try:
            if counted:
                self._count(upstream, str(status))
            error = upstream.redaction.error(await _upstream_status(response, upstream.name))
        finally:
            await response.aclose()
        if status in _FAILURES:
            raise Failure(error, str(status), retry_after(response.headers))
        raise error

    def _count(self, upstream: Upstream, reason: str) -> None:
        series = upstream.series
        if series is not None:
            series.failed[reason] = series.failed.get(reason, 0) + 1

    def _enter(self, upstream: Upstream) -> None:
        upstream.health.in_flight += 1
        series = upstream.series
        if series is not None:
            series.sent += 1

    def _leave(self, upstream: Upstream) -> None:
        health = upstream.health
        health.in_flight -= 1
        if upstream.retired and not health.in_flight:
            self._close_later(upstream)

    def _close_later(self, upstream: Upstream) -> None:
        try:
            closing = asyncio.ensure_future(upstream.aclose())
        except RuntimeError:  # no event loop (a backend built and dropped outside the server)
            return
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    # -- OpenAI's other routes -------------------------------------------------------------------

    async def forward(self, path: str, body: bytes, outcome: Outcome | None = None) -> AsyncResponse:
        """POST a request of OpenAI's other routes to an openai upstream of its model, as it came
        (but for the model the upstream knows it by), trying others as a chat request does."""
        router = self.router
        if not self.forwards_routes:
            raise not_served(self.name, path)
        self._refuse_without_shared_state(router)
        model = model_in(body)
        if model is None and ANY_MODEL not in router.pools:
            raise invalid("the request names no model, and every upstream here serves named models", "model")
        attempts = router.attempts(model or "", self.clock() + self.max_duration, routes_only=True)
        while (picked := attempts.next()) is not None:
            member, routed = picked
            upstream = member.upstream
            if outcome is not None:
                outcome.upstream = upstream.name
            sent = _sent(member, routed, model)
            self._enter(upstream)
            try:
                response = await self._head(
                    upstream,
                    upstream.transport.request(
                        Request(
                            "POST",
                            upstream.base_path + path,
                            headers={"Accept": "*/*"},
                            body=body if sent is None else with_model(body, sent),
                        ),
                        deadline=attempts.deadline,
                    ),
                )
            except Failure as failure:
                self._leave(upstream)
                if not attempts.failed(member, failure):
                    break
                continue
            except BaseException:
                self._leave(upstream)
                raise
            return _Held(response, upstream, self)
        raise attempts.error()

    # -- models, health --------------------------------------------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        """Every upstream's models (the listed ones as each lists them, asked again once
        ``models_cache_ttl`` has passed), then the aliases."""
        router = self.router
        found: dict[str, dict[str, Any]] = {}
        failures: list[ApiError] = []
        asked = [upstream for upstream in router.upstreams if ANY_MODEL in router.serves[upstream.name]]
        lists = await asyncio.gather(*(self._list(upstream) for upstream in asked), return_exceptions=True)
        listed = dict(zip((upstream.name for upstream in asked), lists, strict=True))
        for upstream in router.upstreams:
            for name in router.serves[upstream.name]:
                if name != ANY_MODEL:
                    found.setdefault(name, _model_object(name))
                    continue
                models = listed[upstream.name]
                if isinstance(models, ApiError):
                    failures.append(models)
                    continue
                if isinstance(models, BaseException):
                    raise models
                for model in models:
                    found.setdefault(str(model.get("id")), model)
        if not found and failures:
            raise failures[-1]
        for alias, target in router.aliases.items():
            if alias not in found:
                origin = found.get(target, {})
                found[alias] = _model_object(
                    alias, origin.get("created", 0), origin.get("owned_by", "getgpt")
                )
        return list(found.values())

    async def _list(self, upstream: Upstream) -> list[dict[str, Any]]:
        """The models ``upstream`` serves when it serves any: as it lists them (asked once however
        many wait, again once ``models_cache_ttl`` has passed, a failure within a few seconds), or
        ``--model``'s."""
        if not upstream.lists_models:
            return self._configured
        flight = self._listed.get(upstream.name)
        if flight is None:
            flight = self._listed[upstream.name] = SingleFlight(
                functools.partial(self._fetch_list, upstream),
                ttl=self._models_ttl,
                failure_ttl=min(_MODELS_FAILURE_TTL, self._models_ttl),
                clock=self.clock,
            )
        return await flight.get()

    async def _fetch_list(self, upstream: Upstream) -> list[dict[str, Any]]:
        body = await self._get(upstream, upstream.base_path + "/models")
        try:
            listed = decode_json(body)
        except NOT_JSON:
            listed = None
        data = listed.get("data") if isinstance(listed, dict) else None
        if not isinstance(data, list):
            raise bad_upstream("its model list is not one")
        return [model for model in data if isinstance(model, dict)]

    async def _get(self, upstream: Upstream, target: str, deadline: float | None = None) -> bytes:
        try:
            response = await self._head(
                upstream,
                upstream.transport.request(
                    Request("GET", target, headers={"Accept": "application/json"}),
                    deadline=deadline or self.clock() + self.max_duration,
                ),
                counted=False,
            )
        except Failure as failure:
            raise failure.error from None
        try:
            with self.budget.holding() as held:
                return await held.read(response, DEFAULT_MAX_REPLY_BYTES)
        except (errors.TransportError, errors.ProtocolError) as exc:
            raise _broken_off(upstream, exc) from None
        finally:
            await response.aclose()

    def health(self) -> list[dict[str, Any]]:
        """Each upstream's state for ``/healthz``: never its URL or key."""
        now = self.clock()
        wall = time.time()
        shown = []
        for upstream in self.router.upstreams:
            health = upstream.health
            cooled = health.cooled(now)
            until = None
            if cooled:
                moment = datetime.fromtimestamp(wall + health.cooled_until - now, timezone.utc)
                until = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
            shown.append(
                {
                    "name": upstream.name,
                    "kind": upstream.kind,
                    "state": "cooled" if cooled else "healthy",
                    "cooled_until": until,
                    "cooled_for": health.cooled_by or None if cooled else None,
                    "in_flight": health.in_flight,
                    "failures_in_a_row": health.failures,
                    "last_error": health.last_error,
                    "ttfb_ms": round(health.ttfb * 1000, 1),
                }
            )
        return shown

    def ready(self) -> bool:
        """Whether some upstream is healthy (``/readyz`` answers 503 when none is)."""
        return self.router.ready()

    # -- the background: probes, shared cooldowns ------------------------------------------------

    def flush_metrics(self) -> None:
        """Write each upstream's counts to its series (``UpstreamSeries.flush``)."""
        for upstream in self.upstreams.values():
            if upstream.series is not None:
                upstream.series.flush(upstream.health.in_flight)

    async def _flush_forever(self) -> None:
        # With --workers, the worker answering /metrics flushes its own counts then; the others'
        # are this old at most.
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            self.flush_metrics()

    async def start(self) -> None:
        """Start probing cooled upstreams (and reading shared cooldowns); the server calls it once."""
        self._tasks.append(asyncio.ensure_future(self._probe_forever()))
        if self._telemetry is not None:
            self._tasks.append(asyncio.ensure_future(self._flush_forever()))
        if self.shared is not None:
            self._tasks.append(asyncio.ensure_future(self._sync_forever()))

    async def _probe_forever(self) -> None:
        while True:
            interval = self.router.routing.health_interval
            await asyncio.sleep(interval or 1.0)
            if interval:
                await self.probe()

    async def probe(self) -> None:
        """Probe every upstream cooled for failing; take back those that answer 2xx."""
        router = self.router
        cooled = router.cooled_for_failing()
        if cooled:
            await asyncio.gather(*(self._probe(router, upstream) for upstream in cooled))

    async def _probe(self, router: Router, upstream: Upstream) -> None:
        interval = router.routing.health_interval or PROBE_TIMEOUT
        deadline = self.clock() + min(PROBE_TIMEOUT, interval)
        try:
            response = await upstream.transport.request(
                Request("GET", upstream.probe_path(), headers={"Accept": "application/json"}),
                deadline=deadline,
            )
            try:
                answered = 200 <= response.status_code < 300
                with contextlib.suppress(errors.GetGptError):
                    await response.read()
            finally:
                await response.aclose()
        except errors.GetGptError as exc:
            answered = False
            upstream.health.last_error = "probe: " + type(exc).__name__
        if answered:
            router.take_back(upstream, "a probe answered")
            if router.shared is not None:
                router.shared.withdraw(upstream.shared_key)
        elif upstream.health.cooled(self.clock()):
            # Still failing: it rests another cooldown from now.
            router.cool(upstream, router.cooldown, upstream.health.cooled_by)
            if router.shared is not None:
                router.shared.publish(upstream.shared_key, router.cooldown, upstream.health.cooled_by)

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(SYNC_EVERY)
            await self.sync()

    async def sync(self) -> None:
        """Read the cooldowns every process shares: cool what another has cooled, take back what
        another has taken back."""
        router = self.router
        shared = router.shared
        if shared is None or not shared.available:
            return
        began = self.clock()
        upstreams = list(router.upstreams)
        found = await shared.read([upstream.shared_key for upstream in upstreams])
        if found is None:
            return
        now = self.clock()
        for upstream, entry in zip(upstreams, found, strict=True):
            health = upstream.health
            if entry is not None:
                seconds, why = entry
                if not health.cooled(now):
                    log.warning(
                        "upstream %s cooled for %.0f s by another process (%s)", upstream.name, seconds, why
                    )
                    if self._telemetry is not None:
                        self._telemetry.upstream_cooled(upstream.name, True)
                router.cool(upstream, seconds, why)
            elif health.cooled(now) and health.cooled_at < began:
                router.take_back(upstream, "another process took it back")

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(
            *(upstream.aclose() for upstream in self.upstreams.values()), return_exceptions=True
        )
        await asyncio.gather(*self._closing, return_exceptions=True)
        await asyncio.gather(*(flight.aclose() for flight in self._listed.values()), return_exceptions=True)


def _sent(member: Member, routed: str, asked: str | None) -> str | None:
    """The model name to send ``member``'s upstream instead of the client's ``asked`` (None: as asked)."""
    sent = member.sent or routed
    return None if sent == asked or not sent else sent


async def _whole(response: AsyncResponse, kind: str, model: str, outcome: Outcome, held: Holding) -> bytes:
    """A non-streamed reply's body, passed on; a streamed one made whole (a GetGpt upstream may
    stream whatever was asked). Either is held whole, so either is refused past
    ``DEFAULT_MAX_REPLY_BYTES`` as it arrives, and draws on the budget ``held`` is of."""
    if kind != "text/event-stream":
        body = await held.read(response, DEFAULT_MAX_REPLY_BYTES)
        try:
            outcome.usage = usage_in(body)
        except NOT_JSON:
            raise bad_upstream("its reply is not JSON") from None
        return body
    parser = ReplyParser()
    read = 0
    try:
        async for chunk in response.reads():
            read += len(chunk)
            if read > DEFAULT_MAX_REPLY_BYTES:
                raise errors.LimitExceeded(
                    f"the streamed reply, made whole, is larger than {DEFAULT_MAX_REPLY_BYTES >> 20} MiB"
                )
            held.take(len(chunk))  # what the parser keeps of it: its text, at most as much
            parser.feed(chunk)
        parser.close()
    except errors.RemoteError as exc:
        raise ApiError(
            502, f"upstream: {exc.message}", type=exc.type or "upstream_error", code=exc.code
        ) from None
    except errors.ProtocolError as exc:
        raise bad_upstream(exc.message) from None
    outcome.usage = parser.usage
    return completion_from_events(parser, model)


async def _upstream_status(response: AsyncResponse, name: str) -> ApiError:
    """An upstream's refusal as the server's answer: its status, body and Retry-After, mostly."""
    excerpt = await aread_excerpt(response, _EXCERPT)
    status = response.status_code
    headers = {"Retry-After": response.headers["retry-after"]} if "retry-after" in response.headers else {}
    detail = _upstream_message(excerpt) or response.reason_phrase or "no detail"
    if is_cloudflare_block(response, excerpt):
        return ApiError(
            502,
            f"the upstream answered HTTP {status} with a Cloudflare challenge page, not its API",
            type="upstream_error",
            code="upstream_blocked",
        )
    if status in _OURS:
        log.warning("upstream %s refused the server's credentials: HTTP %s", name, status)
        return ApiError(
            502,
            f"the upstream refused this server's credentials (HTTP {status}): {detail}",
            type="upstream_error",
            code="upstream_unauthorized",
        )
    try:
        whole = isinstance(decode_json(excerpt), dict)
    except NOT_JSON:
        whole = False
    return ApiError(
        status,
        f"upstream answered HTTP {status}: {detail}",
        type="upstream_error",
        code=status,
        headers=headers,
        body=excerpt if whole else None,
    )


def _upstream_message(body: bytes) -> str | None:
    message = error_message(body)
    if message is not None:
        return message[:500]
    text = body.decode("utf-8", "replace").strip()
    return text[:200] if text and not text.startswith(("<", "{", "[")) else None


def _broken_off(upstream: Upstream, exc: Exception) -> ApiError:
    """A transport failure once the upstream had begun its reply, as a client may see it."""
    if isinstance(exc, errors.Timeout):
        return _unreachable(upstream, exc)
    log.warning("upstream %s broke off its reply: %s", upstream.logged_as, type(exc).__name__)
    return upstream.redaction.error(bad_upstream(f"its reply broke off ({type(exc).__name__}: {exc})"))


def _unreachable(upstream: Upstream, exc: Exception) -> ApiError:
    timed_out = isinstance(exc, errors.Timeout)
    what = "timed out" if timed_out else "failed"
    log.warning("upstream %s %s: %s", upstream.logged_as, what, type(exc).__name__)
    return ApiError(
        504 if timed_out else 502,
        f"upstream {what} ({type(exc).__name__})",
        type="upstream_error",
        code="upstream_timeout" if timed_out else "upstream_unreachable",
    )
