"""``GET /metrics``: after a known mix of requests, the counts are exactly that mix.

Scraped with prometheus_client's own parser, from ``getgpt serve --workers 2``: each worker
counts what it answered, and /metrics, whichever worker answers it, reports the sum.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from getgpt.server import ServerConfig, create_app

from ..support.cluster import envelope_body
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve
from ..support.servers import free_port, serve
from ..support.services import Redis

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, key: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answer = httpx.get(url + "metrics", headers=headers, timeout=10, verify=SSL_CONTEXT)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _chat(url: str, text: str, *, stream: bool = True) -> httpx.Response:
    # A new connection per request, so the kernel spreads them over both workers.
    return httpx.post(
        url + "v1/chat/completions",
        json={"messages": [{"role": "user", "content": text}], "stream": stream},
        headers={"Authorization": "Bearer k"},
        timeout=10,
        verify=SSL_CONTEXT,
    )


def test_metrics_count_a_known_mix_of_requests_across_two_workers() -> None:
    # 1 request a minute with 10 saved up, shared by both workers in Redis: the eleventh chat
    # request of this test is refused.
    options = ("--workers", "2", "--rate-limit", "1", "--rate-burst", "10", "--log-level", "warning")
    with (
        Redis() as redis,
        getgpt_serve(*options, "--redis", redis.url, env={"GETGPT_API_KEYS": "k"}) as server,
    ):
        url = server.url
        pids = server.workers(2)  # both up: the requests below may go to either
        # What came before (the start-up's health checks) is taken away below.
        before = scrape(url)
        for i in range(4):
            assert _chat(url, f"stream {i}").status_code == 200
        for i in range(2):
            answer = httpx.post(
                url + "api/chat/stream",
                content=envelope_body(f"envelope {i}"),
                headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
                verify=SSL_CONTEXT,
            )
            assert answer.status_code == 200
        for _ in range(3):
            bad = httpx.post(
                url + "v1/chat/completions",
                json={"messages": []},
                headers={"Authorization": "Bearer k"},
                verify=SSL_CONTEXT,
            )
            assert bad.status_code in (400, 422)
        bad_status, bad_code = bad.status_code, bad.json()["error"]["code"]
        statuses = [_chat(url, f"more {i}").status_code for i in range(4)]
        assert statuses == [200, 429, 429, 429]
        assert server.pids(12) <= pids  # twelve health checks (counted below), by these two alone
        for _ in range(2):  # the model list takes the key, as chat does
            assert httpx.get(url + "v1/models", verify=SSL_CONTEXT).status_code == 401
        assert httpx.get(url + "no/such/page", verify=SSL_CONTEXT).status_code == 404

        first, second = scrape(url), scrape(url)
        chat = "/v1/chat/completions"
        for samples in (first, second):
            assert value(samples, "getgpt_requests_total", route=chat, status="200") == 5
            assert value(samples, "getgpt_requests_total", route=chat, status="429") == 3
            assert value(samples, "getgpt_requests_total", route=chat, status=str(bad_status)) == 3
            assert value(samples, "getgpt_requests_total", route="/api/chat/stream", status="200") == 2
            healthz = value(samples, "getgpt_requests_total", route="/healthz", status="200")
            assert healthz - value(before, "getgpt_requests_total", route="/healthz", status="200") == 12
            assert value(samples, "getgpt_requests_total", route="/v1/models", status="401") == 2
            assert value(samples, "getgpt_rejections_total", reason="missing_api_key") == 2
            assert value(samples, "getgpt_requests_total", route="other", status="404") == 1
            assert value(samples, "getgpt_rejections_total", reason="rate_limit_exceeded") == 3
            assert value(samples, "getgpt_rejections_total", reason=str(bad_code)) == 3
            assert value(samples, "getgpt_active_streams") == 0
            assert value(samples, "getgpt_stream_duration_seconds_count", route=chat, outcome="ok") == 5
            assert (
                value(samples, "getgpt_stream_duration_seconds_count", route="/api/chat/stream", outcome="ok")
                == 2
            )
            assert value(samples, "getgpt_time_to_first_chunk_seconds_count", route=chat) == 5
            assert value(samples, "getgpt_time_to_first_chunk_seconds_count", route="/api/chat/stream") == 2
        # A scrape is counted once it has been answered.
        assert value(first, "getgpt_requests_total", route="/metrics", status="200") == 1
        assert value(second, "getgpt_requests_total", route="/metrics", status="200") == 2


@pytest.fixture
def upstream() -> Iterator[str]:
    """An OpenAI-compatible upstream that streams two pieces and reports its token usage."""

    async def chat(request: Request) -> Response:
        body = await request.json()

        async def events() -> AsyncIterator[bytes]:
            for text in ("to", "kens"):
                chunk = {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": text}}],
                }
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            end = {
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield b"data: " + json.dumps(end).encode() + b"\n\n"
            usage = {"prompt_tokens": 11 + len(body["messages"]), "completion_tokens": 7, "total_tokens": 0}
            yield (
                b"data: "
                + json.dumps({"object": "chat.completion.chunk", "choices": [], "usage": usage}).encode()
            )
            yield b"\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    with serve(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])) as url:
        yield url + "v1"


def test_tokens_are_counted_from_the_usage_the_upstream_reports(upstream: str) -> None:
    app = create_app(ServerConfig(backend="openai", upstream=upstream))
    with serve(app) as url:
        for messages in (1, 2):
            answer = httpx.post(
                url + "v1/chat/completions",
                json={"messages": [{"role": "user", "content": "count"}] * messages, "stream": True},
                verify=SSL_CONTEXT,
            )
            assert answer.status_code == 200 and '"kens"' in answer.text
        samples = scrape(url)
    assert value(samples, "getgpt_tokens_total", direction="in") == 12 + 13
    assert value(samples, "getgpt_tokens_total", direction="out") == 7 + 7
    assert value(samples, "getgpt_upstream_latency_seconds_count", backend="openai") == 2


def test_upstream_failures_are_counted_by_status_and_kind() -> None:
    async def refuse(request: Request) -> Response:
        return Response(b'{"error": {"message": "busy"}}', status_code=503, media_type="application/json")

    upstream_app = Starlette(routes=[Route("/v1/chat/completions", refuse, methods=["POST"])])
    with serve(upstream_app) as upstream:
        busy = create_app(ServerConfig(backend="openai", upstream=upstream + "v1"))
        with serve(busy) as url:
            assert _chat(url, "one").status_code == 503
            assert _chat(url, "two").status_code == 503
            samples = scrape(url)
    assert value(samples, "getgpt_upstream_errors_total", backend="openai", status="503") == 2
    dead = create_app(ServerConfig(backend="openai", upstream=f"http://127.0.0.1:{free_port()}/v1"))
    with serve(dead) as url:
        assert _chat(url, "nobody there").status_code == 502
        samples = scrape(url)
    assert value(samples, "getgpt_upstream_errors_total", backend="openai", status="connect") == 1
    assert value(samples, "getgpt_upstream_latency_seconds_count", backend="openai") == 0


def test_tokens_are_what_the_backend_reported_in_the_replys_usage() -> None:
    with serve(create_app(ServerConfig())) as url:
        answer = httpx.post(
            url + "v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "twelve chars"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            verify=SSL_CONTEXT,
        )
        usage = next(
            json.loads(line[6:])["usage"]
            for line in answer.text.splitlines()
            if line.startswith("data: {") and json.loads(line[6:]).get("usage")
        )
        samples = scrape(url)
    assert usage["completion_tokens"] > 0
    assert value(samples, "getgpt_tokens_total", direction="in") == usage["prompt_tokens"]
    assert value(samples, "getgpt_tokens_total", direction="out") == usage["completion_tokens"]


def test_metrics_can_need_their_own_key() -> None:
    with serve(create_app(ServerConfig(metrics_key="scrape-me"))) as url:
        refused = httpx.get(url + "metrics", verify=SSL_CONTEXT)
        assert refused.status_code == 401
        wrong = httpx.get(url + "metrics", headers={"Authorization": "Bearer nope"}, verify=SSL_CONTEXT)
        assert wrong.status_code == 401
        assert (
            "getgpt_requests_total"
            in httpx.get(
                url + "metrics", headers={"Authorization": "Bearer scrape-me"}, verify=SSL_CONTEXT
            ).text
        )


def test_forwarded_routes_are_counted_like_the_chat_routes() -> None:
    # /v1/embeddings and friends take a reply slot and can be refused like a chat request: the
    # Prometheus metrics must say so, as /healthz does (they once counted only the chat routes).
    with serve(create_app(ServerConfig())) as url:
        before = scrape(url)
        refused = httpx.post(
            url + "v1/embeddings", json={"input": "x", "model": "m"}, timeout=10, verify=SSL_CONTEXT
        )
        assert refused.status_code == 400  # the echo backend forwards nothing: said, not ignored
        after = scrape(url)
    reason = refused.json()["error"]["code"]
    rejections = "getgpt_rejections_total"
    assert value(after, rejections, reason=reason) - value(before, rejections, reason=reason) == 1
