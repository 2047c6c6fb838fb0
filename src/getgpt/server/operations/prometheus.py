"""Prometheus metrics, served on ``GET /metrics`` in the text exposition format.

- ``getgpt_requests_total{route, status}``: HTTP requests answered, by route template and status
  (``0``: the client left before an answer began).
- ``getgpt_active_slots``: requests holding a reply slot now: chat, and the forwarded
  ``/v1/embeddings``, ``/v1/completions``, ``/v1/responses`` (a gauge).
- ``getgpt_time_to_first_chunk_seconds{route}``: from a chat request's arrival to its first text.
- ``getgpt_reply_duration_seconds{route, outcome}``: admitted chat requests, arrival to the end
  of the reply, streamed or not; outcome ``ok``, ``error`` or ``gone`` (the client left).
- Per upstream (its ``name``; ``upstream`` with ``--upstream`` alone):
  ``getgpt_upstream_requests_total{upstream}`` requests sent to it (every try);
  ``getgpt_upstream_failures_total{upstream, reason}`` its failures: its HTTP status, or
  ``connect`` / ``timeout`` (no answer), ``protocol`` (a reply broken off), ``stream_error`` (an
  error event inside its stream);
  ``getgpt_upstream_in_flight{upstream}`` requests it is answering now;
  ``getgpt_upstream_cooldowns_total{upstream}`` times it was cooled, and
  ``getgpt_upstream_cooled{upstream}`` 1 while it is (in any worker);
  ``getgpt_upstream_ttfb_seconds{upstream}`` its time to first byte (the response head).
- ``getgpt_upstream_latency_seconds{backend}`` and ``getgpt_upstream_errors_total{backend,
  status}``: the two above for all upstreams together, as before routing; the exposition adds
  them up from the per-upstream series, at no cost to a request.
- ``getgpt_tokens_total{direction}``: tokens the backend *reported* in its usage (``in``: prompt,
  ``out``: completion): a forwarding backend's upstream's own count (the server asks an
  ``openai`` upstream for it), the echo backend's (a token per four characters).
- ``getgpt_rejections_total{reason}``: requests refused before a backend ran, by error code
  (``rate_limit_exceeded``, ``replayed_request``, ``too_many_streams``, ...).
- ``getgpt_budget_limit_bytes{budget}`` and ``getgpt_budget_used_bytes{budget}``: what each
  server-wide memory budget allows (its setting; summed over workers) and holds now:
  ``bodies``, request bodies (``--body-budget``); ``writes``, bytes replies hold for clients that
  read slower than their replies come (``--write-budget-bytes``; moves in steps of 64 KiB);
  ``whole_replies``, the whole upstream replies held for non-streamed requests
  (``--whole-reply-budget``).
- ``getgpt_budget_refusals_total{budget}``: requests refused (503 ``server_busy``) because a
  budget was spent.
- ``getgpt_write_waits_total{reason}``: times a reply's backend was held back because its client
  read too slowly: ``stream`` (the reply held ``--stream-buffer-bytes``), ``total`` (the write
  budget was spent).
- ``getgpt_read_ahead_bytes``: bytes clients sent past the request being answered (pipelined
  requests), held unparsed by the connection bounds now (each connection at most
  ``--max-read-ahead`` and one network read).

``getgpt_active_streams`` and ``getgpt_stream_duration_seconds`` are the old names of the slot
gauge and the duration histogram (they counted non-streamed replies too): the exposition repeats
those two under their old names for one release (0.2), at no cost to a request.

With several workers (``PROMETHEUS_MULTIPROC_DIR`` set, as :mod:`getgpt.server.running.supervisor` does)
every worker writes its values to files in that directory and ``/metrics``, whichever worker
answers it, reports their sum (live workers only, for the gauge). Protect ``/metrics`` with its
own key by setting ``GETGPT_METRICS_KEY`` (``Authorization: Bearer <key>``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["CONTENT_TYPE", "PrometheusMetrics", "route_of"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_ROUTES = frozenset(
    ("/api/chat/stream", "/v1/chat/completions", "/v1/models", "/v1/embeddings", "/v1/completions",
     "/v1/responses", "/healthz", "/readyz", "/metrics", "/openapi.json", "/")
)  # fmt: skip
#: Series renamed for what they count -> the name they had, repeated for one release (0.2).
OLD_NAMES = {
    "getgpt_active_slots": "getgpt_active_streams",
    "getgpt_reply_duration_seconds": "getgpt_stream_duration_seconds",
}
# Latencies of a gateway on one machine: from 1 ms to a long reply.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def route_of(path: str) -> str:
    """The route template of ``path``, so the label takes few values whatever clients ask for."""
    if path in _ROUTES:
        return path
    if path.startswith("/static/"):
        return "/static"
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return "other"


class PrometheusMetrics:
    """One app's Prometheus series; :meth:`exposition` is the body of ``/metrics``."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode values live in files and the exposition reads them all; otherwise
        # each app has its own registry, so two apps in one process never share a count.
        registry = None if self.multiprocess else CollectorRegistry()
        self._registry = registry
        self._exposed: Any = None  # what /metrics reads: the series and their old names
        self.requests = Counter(
            "getgpt_requests", "HTTP requests answered", ["route", "status"], registry=registry
        )
        self.active = Gauge(
            "getgpt_active_slots",
            "requests holding a reply slot now (chat and forwarded routes)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.first_chunk = Histogram(
            "getgpt_time_to_first_chunk_seconds",
            "seconds from a chat request's arrival to its first text",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "getgpt_reply_duration_seconds",
            "seconds from a chat request's arrival to the end of its reply",
            ["route", "outcome"],
            buckets=_BUCKETS,
            registry=registry,
        )
        #: The forwarding backend's name: the ``backend`` label of the series added up at exposition.
        self.backend = ""
        #: Called before each exposition: those who count in plain integers write them out.
        self.before_exposition: list[Callable[[], None]] = []
        self.upstream_requests = Counter(
            "getgpt_upstream_requests",
            "requests sent to each upstream (every try)",
            ["upstream"],
            registry=registry,
        )
        self.upstream_failures = Counter(
            "getgpt_upstream_failures",
            "each upstream's failures by reason (its status, connect, timeout, protocol, stream_error)",
            ["upstream", "reason"],
            registry=registry,
        )
        self.upstream_in_flight = Gauge(
            "getgpt_upstream_in_flight",
            "requests each upstream is answering now",
            ["upstream"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.upstream_cooldowns = Counter(
            "getgpt_upstream_cooldowns", "times each upstream was cooled", ["upstream"], registry=registry
        )
        self.upstream_cooled_now = Gauge(
            "getgpt_upstream_cooled",
            "1 while an upstream is cooled (picked by nobody)",
            ["upstream"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.upstream_ttfb = Histogram(
            "getgpt_upstream_ttfb_seconds",
            "seconds from sending a request to an upstream to its response head",
            ["upstream"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "getgpt_tokens", "tokens the backend reported, in (prompt) and out (completion)", ["direction"],
            registry=registry,
        )  # fmt: skip
        self.rejections = Counter(
            "getgpt_rejections", "requests refused before a backend ran", ["reason"], registry=registry
        )
        self.budget_limit = Gauge(
            "getgpt_budget_limit_bytes",
            "bytes a server-wide memory budget allows (its setting)",
            ["budget"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.budget_used = Gauge(
            "getgpt_budget_used_bytes",
            "bytes a server-wide memory budget holds now",
            ["budget"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.budget_refusals = Counter(
            "getgpt_budget_refusals",
            "requests refused because a server-wide memory budget was spent",
            ["budget"],
            registry=registry,
        )
        self.write_waits = Counter(
            "getgpt_write_waits",
            "times a reply's backend was held back for a client that read slowly, by reason",
            ["reason"],
            registry=registry,
        )
        self.read_ahead = Gauge(
            "getgpt_read_ahead_bytes",
            "bytes clients sent past the request being answered, held unparsed now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # labels() takes a lock and builds a key each call; the children are kept instead.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def budget(self, name: str, limit: int, used: Callable[[], int]) -> Callable[[int], None] | None:
        """Budget ``name``'s series: its limit, set now, and what it holds, read from ``used()``
        at each exposition -- no cost to a request. With several workers the values live in
        files, so each change must be written: the function returned adds to it (None otherwise)."""
        self._child(self.budget_limit, name).set(limit)
        held = self._child(self.budget_used, name)
        if self.multiprocess:
            add: Callable[[int], None] = held.inc
            return add
        held.set_function(used)
        return None

    def request(self, route: str, status: int) -> None:
        self._child(self.requests, route, str(status)).inc()

    def rejected(self, reason: str | int | None) -> None:
        self._child(self.rejections, str(reason or "unknown")).inc()

    def first_text(self, route: str, seconds: float) -> None:
        self._child(self.first_chunk, route).observe(seconds)

    def ended(self, route: str, outcome: str, seconds: float) -> None:
        self._child(self.duration, route, outcome).observe(seconds)

    def used(self, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        if prompt_tokens:
            self._child(self.tokens, "in").inc(prompt_tokens)
        if completion_tokens:
            self._child(self.tokens, "out").inc(completion_tokens)

    def budget_refused(self, name: str) -> None:
        self._child(self.budget_refusals, name).inc()

    def write_waited(self, reason: str) -> None:
        self._child(self.write_waits, reason).inc()

    def upstream_series(self, upstream: str) -> UpstreamSeries:
        """The series of the upstream named ``upstream``, for a caller to keep (and not look up
        again on each request)."""
        return UpstreamSeries(self, upstream)

    def upstream_cooled(self, upstream: str, cooled: bool) -> None:
        if cooled:
            self._child(self.upstream_cooldowns, upstream).inc()
        self._child(self.upstream_cooled_now, upstream).set(1 if cooled else 0)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        for flush in self.before_exposition:
            flush()
        if self._exposed is None:
            from prometheus_client import CollectorRegistry

            source = self._registry
            if source is None:  # multiprocess: every worker's files, read at each exposition
                from prometheus_client import multiprocess

                source = CollectorRegistry()
                multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
            self._exposed = CollectorRegistry()
            self._exposed.register(_WithOldNames(source, self))
        return generate_latest(self._exposed)


class UpstreamSeries:
    """One upstream's series. Its requests and failures are counted in plain integers on a
    request's way and written to the series by :meth:`flush` -- a few times a second, and before
    each exposition -- with its requests in flight: two increments and a gauge written twice a
    request cost ~5 us in prometheus_client (its locks; measured in process), the integers ~0.1.
    Its time to first byte is observed per request (a distribution cannot be added up later)."""

    __slots__ = (
        "_failures",
        "_flushed",
        "_metrics",
        "failed",
        "in_flight",
        "name",
        "requests",
        "sent",
        "ttfb",
    )

    def __init__(self, metrics: PrometheusMetrics, name: str) -> None:
        self._metrics = metrics
        self.name = name
        self.requests = metrics.upstream_requests.labels(name)
        self.in_flight = metrics.upstream_in_flight.labels(name)
        self.ttfb = metrics.upstream_ttfb.labels(name)
        #: Requests sent to it, and failures by reason, since it was made.
        self.sent = 0
        self.failed: dict[str, int] = {}
        self._flushed: dict[str, int] = {}  # what the series have of them ("" for requests)
        self._failures: dict[str, Any] = {}

    def flush(self, in_flight: int) -> None:
        """Write what was counted since the last flush, and ``in_flight``, to the series."""
        flushed = self._flushed
        if self.sent != flushed.get("", 0):
            self.requests.inc(self.sent - flushed.get("", 0))
            flushed[""] = self.sent
        for reason, count in self.failed.items():
            if count != flushed.get(reason, 0):
                child = self._failures.get(reason)
                if child is None:
                    child = self._failures[reason] = self._metrics.upstream_failures.labels(self.name, reason)
                child.inc(count - flushed.get(reason, 0))
                flushed[reason] = count
        self.in_flight.set(in_flight)


#: Series kept per upstream -> the backend-wide series of before routing, added up from them at
#: exposition: its name, its help, and the name its reason label had.
BACKEND_WIDE = {
    "getgpt_upstream_ttfb_seconds": (
        "getgpt_upstream_latency_seconds",
        "seconds a forwarding backend waited for the upstream's response head",
        "",
    ),
    "getgpt_upstream_failures": ("getgpt_upstream_errors", "upstream failures by status or kind", "status"),
}


class _WithOldNames:
    """A collector handing on ``source``'s families, those in :data:`OLD_NAMES` again under their
    old names, and those of :data:`BACKEND_WIDE` added up over the upstreams: made only when
    ``/metrics`` is read, so a request pays nothing for them."""

    def __init__(self, source: Any, metrics: PrometheusMetrics) -> None:
        self.source = source
        self.metrics = metrics

    def _backend_wide(self, family: Any) -> Any:
        from prometheus_client.metrics_core import Metric

        name, documentation, reason = BACKEND_WIDE[family.name]
        summed: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for sample in family.samples:
            suffix = sample.name[len(family.name) :]
            if suffix == "_created":
                continue
            labels = {"backend": self.metrics.backend}
            for label, value in sample.labels.items():
                if label == "reason":
                    labels[reason] = value
                elif label != "upstream":
                    labels[label] = value
            key = (suffix, tuple(sorted(labels.items())))
            summed[key] = summed.get(key, 0.0) + sample.value
        total = Metric(name, documentation, family.type, family.unit)
        for (suffix, pairs), value in summed.items():
            total.add_sample(name + suffix, dict(pairs), value)
        return total

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import Metric

        for family in self.source.collect():
            yield family
            if family.name in BACKEND_WIDE and self.metrics.backend:
                yield self._backend_wide(family)
            old = OLD_NAMES.get(family.name)
            if old is None:
                continue
            again = Metric(old, f"{family.documentation} (old name, until 0.2)", family.type, family.unit)
            for sample in family.samples:
                name = old + sample.name[len(family.name) :]  # _bucket, _count, _sum kept
                again.add_sample(name, sample.labels, sample.value, sample.timestamp, sample.exemplar)
            yield again
