"""Prometheus metrics, served on ``GET /metrics`` in the text exposition format.

- ``getgpt_requests_total{route, status}``: HTTP requests answered, by route template and status
  (``0``: the client left before an answer began).
- ``getgpt_active_slots``: requests holding a reply slot now: chat, and the forwarded
  ``/v1/embeddings``, ``/v1/completions``, ``/v1/responses`` (a gauge).
- ``getgpt_time_to_first_chunk_seconds{route}``: from a chat request's arrival to its first text.
- ``getgpt_reply_duration_seconds{route, outcome}``: admitted chat requests, arrival to the end
  of the reply, streamed or not; outcome ``ok``, ``error`` or ``gone`` (the client left).
- ``getgpt_upstream_latency_seconds{backend}``: a forwarding backend's wait for the upstream's
  response head.
- ``getgpt_upstream_errors_total{backend, status}``: upstream failures, by the upstream's HTTP
  status, or ``connect`` / ``timeout`` (no answer), ``protocol`` (a reply broken off),
  ``stream_error`` (an error event inside the upstream's stream).
- ``getgpt_tokens_total{direction}``: tokens the backend *reported* in its usage (``in``: prompt,
  ``out``: completion): a forwarding backend's upstream's own count (the server asks an
  ``openai`` upstream for it), the echo backend's (a token per four characters).
- ``getgpt_rejections_total{reason}``: requests refused before a backend ran, by error code
  (``rate_limit_exceeded``, ``replayed_request``, ``too_many_streams``, ...).

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
from collections.abc import Iterator
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
        self.upstream_latency = Histogram(
            "getgpt_upstream_latency_seconds",
            "seconds a forwarding backend waited for the upstream's response head",
            ["backend"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "getgpt_upstream_errors",
            "upstream failures by status or kind",
            ["backend", "status"],
            registry=registry,
        )
        self.tokens = Counter(
            "getgpt_tokens", "tokens the backend reported, in (prompt) and out (completion)", ["direction"],
            registry=registry,
        )  # fmt: skip
        self.rejections = Counter(
            "getgpt_rejections", "requests refused before a backend ran", ["reason"], registry=registry
        )
        # labels() takes a lock and builds a key each call; the children are kept instead.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

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

    def upstream(self, backend: str, seconds: float) -> None:
        self._child(self.upstream_latency, backend).observe(seconds)

    def upstream_failed(self, backend: str, status: str | int) -> None:
        self._child(self.upstream_errors, backend, str(status)).inc()

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        if self._exposed is None:
            from prometheus_client import CollectorRegistry

            source = self._registry
            if source is None:  # multiprocess: every worker's files, read at each exposition
                from prometheus_client import multiprocess

                source = CollectorRegistry()
                multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
            self._exposed = CollectorRegistry()
            self._exposed.register(_WithOldNames(source))
        return generate_latest(self._exposed)


class _WithOldNames:
    """A collector handing on ``source``'s families, and those in :data:`OLD_NAMES` again under
    their old names: made only when ``/metrics`` is read, so a request pays nothing for them."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import Metric

        for family in self.source.collect():
            yield family
            old = OLD_NAMES.get(family.name)
            if old is None:
                continue
            again = Metric(old, f"{family.documentation} (old name, until 0.2)", family.type, family.unit)
            for sample in family.samples:
                name = old + sample.name[len(family.name) :]  # _bucket, _count, _sum kept
                again.add_sample(name, sample.labels, sample.value, sample.timestamp, sample.exemplar)
            yield again
