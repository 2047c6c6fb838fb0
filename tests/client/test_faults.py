"""Faults: upstreams that die, hang, refuse or lie, and clients that walk away.

The misbehaving upstream is a raw asyncio socket server on loopback (:class:`FaultUpstream`): it
reads one request per connection, counts it, then follows a script -- send some events and close,
reset the connection, stop mid-chunk, hang, answer 429/500/a Cloudflare page -- and records when
its peer closed the connection. The project's client talks to it directly, or through a real
getgpt server whose ``getgpt`` or ``openai`` backend forwards to it (a chain).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import getgpt
from getgpt.server import ServerConfig, create_app

from ..support.faults import (
    FaultUpstream,
    Script,
    answer,
    cut_mid_chunk,
    die_after,
    hanging,
    reset_after,
    response,
)
from ..support.servers import health, serve, wait_until

HI = [{"role": "user", "content": "hi"}]
PIECES = ["Привет, ", "мир 😀 ", "\u2028 part"]
SENT = "".join(PIECES)


def chain(upstream: FaultUpstream, backend: str, **options: float) -> ServerConfig:
    target = upstream.url + "v1" if backend == "openai" else upstream.url
    return ServerConfig(backend=backend, upstream=target, **options)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- upstream dies mid-stream


def test_upstream_closing_mid_stream_raises_incomplete_stream_with_the_partial_text(via: Any) -> None:
    with FaultUpstream(die_after(*PIECES)) as upstream, via(getgpt.Client, upstream.url) as client:
        received: list[str] = []
        with pytest.raises(getgpt.IncompleteStream) as caught:
            for piece in client.stream(HI):
                received.append(piece)
    assert "".join(received) == SENT
    assert caught.value.partial == SENT
    assert upstream.hits == 1  # bytes had arrived: never retried


def test_async_client_too(via: Any) -> None:
    async def main(url: str) -> getgpt.IncompleteStream:
        async with via(getgpt.AsyncClient, url) as client:
            try:
                await client.complete(HI)
            except getgpt.IncompleteStream as exc:
                return exc
        raise AssertionError("a cut stream must raise")

    with FaultUpstream(die_after(*PIECES)) as upstream:
        error = asyncio.run(main(upstream.url))
    assert error.partial == SENT
    assert upstream.hits == 1


@pytest.mark.parametrize("script", [reset_after, cut_mid_chunk], ids=["reset", "cut-mid-chunk"])
def test_broken_connection_mid_stream_is_a_transport_error_with_the_partial_text(
    script: Callable[..., Script], via: Any
) -> None:
    with (
        FaultUpstream(script(*PIECES)) as upstream,
        via(getgpt.Client, upstream.url) as client,
        pytest.raises(getgpt.TransportError) as caught,
    ):
        client.complete(HI)
    assert caught.value.partial == SENT
    assert upstream.hits == 1


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_upstream_dying_behind_a_chain_server_reaches_the_client_with_the_partial_text(backend: str) -> None:
    with (
        FaultUpstream(die_after(*PIECES)) as upstream,
        serve(create_app(chain(upstream, backend))) as server,
        getgpt.Client(server, max_retries=0) as client,
    ):
        # The server had begun streaming, so the upstream's failure is an in-stream error event.
        with pytest.raises(getgpt.RemoteError) as caught:
            client.complete(HI)
        assert caught.value.partial == SENT
        assert caught.value.code == "bad_upstream"
        assert "before [DONE]" in caught.value.message
        wait_until(lambda: health(server)["active_streams"] == 0, 2)
        assert health(server)["failed_total"] == 1
    assert upstream.hits == 1


# --------------------------------------------------------------------------- upstream hangs


def test_upstream_hanging_before_headers_times_out_and_retries_then_gives_up(via: Any) -> None:
    with hanging(head=False) as upstream:
        client = via(getgpt.Client, upstream.url, timeout=0.3, max_retries=1, max_retry_wait=0)
        started = time.monotonic()
        with client, pytest.raises(getgpt.Timeout) as caught:
            client.complete(HI)
        elapsed = time.monotonic() - started
        # Nothing had arrived, so one retry was allowed; each attempt's connection was closed.
        assert upstream.hits == 2
        wait_until(lambda: len(upstream.peer_closed) == 2, 2)
    assert caught.value.partial == ""
    assert "timed out" in str(caught.value)
    assert elapsed < 10


def test_upstream_hanging_mid_stream_times_out_with_the_partial_text_and_no_retry(via: Any) -> None:
    with hanging(*PIECES) as upstream, via(getgpt.Client, upstream.url, timeout=0.3) as client:
        with pytest.raises(getgpt.Timeout) as caught:
            client.complete(HI)
        wait_until(lambda: len(upstream.peer_closed) == 1, 2)
    assert caught.value.partial == SENT
    assert upstream.hits == 1


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_chain_server_times_out_a_silent_upstream_and_frees_the_slot(backend: str) -> None:
    with hanging(head=False) as upstream:
        config = chain(upstream, backend, upstream_timeout=0.3)
        with serve(create_app(config)) as server, getgpt.Client(server, max_retries=0) as client:
            with pytest.raises(getgpt.StatusError) as caught:
                client.complete(HI)
            assert caught.value.status_code in (502, 504)
            assert "timed out" in caught.value.message
            assert health(server)["active_streams"] == 0
            # The server closed every upstream connection it opened.
            wait_until(lambda: len(upstream.peer_closed) == upstream.hits, 2)


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_chain_server_times_out_an_upstream_that_stalls_mid_stream(backend: str) -> None:
    with hanging(*PIECES) as upstream:
        config = chain(upstream, backend, upstream_timeout=0.3)
        with serve(create_app(config)) as server, getgpt.Client(server, max_retries=0) as client:
            with pytest.raises(getgpt.RemoteError) as caught:
                client.complete(HI)
            assert caught.value.partial == SENT
            assert health(server)["active_streams"] == 0
            wait_until(lambda: len(upstream.peer_closed) == 1, 2)
        assert upstream.hits == 1  # text had been forwarded: no retry


# --------------------------------------------------------------------------- upstream refuses

CLOUDFLARE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
    b"<div id='cf-chl-widget'>Checking your browser</div> Performance &amp; security by Cloudflare"
    b"</body></html>"
)


@pytest.mark.parametrize(
    ("reply", "error", "hits"),
    [
        (response(429, b'{"error":{"message":"slow down"}}', "application/json", Retry_After="0"), "rate", 3),
        (response(500, b'{"error":{"message":"boom"}}', "application/json", Retry_After="0"), "status", 3),
        (response(503, b"overloaded", "text/plain", Retry_After="0"), "status", 3),
        (response(403, CLOUDFLARE_PAGE, "text/html", CF_RAY="8a1b2c3d4e5f-AMS"), "cloudflare", 1),
        (response(400, b'{"error":{"message":"bad"}}', "application/json"), "status", 1),
        (response(429, b"{}", "application/json", Retry_After="3600"), "rate", 1),
    ],
    ids=["429", "500", "503", "403-cloudflare", "400", "429-too-long-to-wait"],
)
def test_refusals_are_typed_and_retried_only_when_worth_it(
    reply: bytes, error: str, hits: int, via: Any
) -> None:
    expected = {
        "rate": getgpt.RateLimitError,
        "status": getgpt.StatusError,
        "cloudflare": getgpt.CloudflareBlocked,
    }[error]
    with (
        FaultUpstream(answer(reply)) as upstream,
        via(getgpt.Client, upstream.url, max_retries=2) as client,
        pytest.raises(expected) as caught,
    ):
        client.complete(HI)
    assert upstream.hits == hits
    status = int(reply.split(b" ", 2)[1])
    assert isinstance(caught.value, getgpt.StatusError)
    assert caught.value.status_code == status
    if isinstance(caught.value, getgpt.RateLimitError):
        assert caught.value.retry_after == float(reply.split(b"Retry-After: ")[1].split(b"\r")[0])


def test_a_429_passes_through_a_chain_server_with_its_retry_after() -> None:
    reply = response(429, b'{"error":{"message":"slow down"}}', "application/json", Retry_After="3600")
    with (
        FaultUpstream(answer(reply)) as upstream,
        serve(create_app(chain(upstream, "getgpt"))) as server,
        getgpt.Client(server) as client,
    ):
        with pytest.raises(getgpt.RateLimitError) as caught:
            client.complete(HI)
        assert caught.value.retry_after == 3600
        assert "slow down" in caught.value.message
        assert upstream.hits == 1
        assert health(server)["active_streams"] == 0


def test_a_cloudflare_page_behind_a_chain_server_is_a_502_naming_it() -> None:
    reply = response(403, CLOUDFLARE_PAGE, "text/html", CF_RAY="8a1b2c3d4e5f-AMS")
    with (
        FaultUpstream(answer(reply)) as upstream,
        serve(create_app(chain(upstream, "getgpt"))) as server,
        getgpt.Client(server, max_retries=0) as client,
    ):
        with pytest.raises(getgpt.StatusError) as caught:
            client.complete(HI)
        assert caught.value.status_code == 502
        assert "Cloudflare" in caught.value.message
        assert "<html" not in caught.value.message.lower()
        assert upstream.hits == 1


# --------------------------------------------------------------------------- client disconnects


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_client_leaving_closes_the_upstream_within_a_second(backend: str) -> None:
    with hanging(*PIECES) as upstream, serve(create_app(chain(upstream, backend))) as server:
        with getgpt.Client(server, max_retries=0) as client:
            chat = client.stream(HI)
            assert next(chat) == PIECES[0]
            assert health(server)["active_streams"] == 1
            left = time.monotonic()
            chat.close()
        wait_until(lambda: bool(upstream.peer_closed), 1.0)
        assert upstream.peer_closed[0] - left < 1.0
        wait_until(lambda: health(server)["active_streams"] == 0, 1.0)
        assert health(server)["disconnects_total"] == 1


# --------------------------------------------------------------------------- hostile error bodies


def test_error_body_nested_past_the_json_limit_is_a_status_error() -> None:
    # Regression: the client read the error message with a generic JSON decode, which raised
    # RecursionError on a body nested ~1000 levels deep instead of the typed StatusError.
    async def nested(request: Request) -> Response:
        return Response(b"[" * 5000, status_code=500, media_type="application/json")

    app = Starlette(routes=[Route("/api/chat/stream", nested, methods=["POST"])])
    with (
        serve(app) as url,
        getgpt.Client(url, max_retries=0) as client,
        pytest.raises(getgpt.StatusError) as caught,
    ):
        client.complete(HI)
    assert caught.value.status_code == 500
    assert caught.value.body.startswith("[[[")


def test_error_body_with_invalid_utf8_is_a_status_error() -> None:
    # Regression: msgspec raised UnicodeDecodeError reading the error message of such a body.
    async def garbled(request: Request) -> Response:
        return Response(b'{"error":{"message":"\xff"}}', status_code=400, media_type="application/json")

    app = Starlette(routes=[Route("/api/chat/stream", garbled, methods=["POST"])])
    with (
        serve(app) as url,
        getgpt.Client(url, max_retries=0) as client,
        pytest.raises(getgpt.StatusError) as caught,
    ):
        client.complete(HI)
    assert caught.value.status_code == 400
