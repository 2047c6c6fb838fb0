"""Limits, request checks and failing backends: answered in the error format, the server unharmed.

Malformed requests have their own catalogue, in test_bad_input.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Scope

import getgpt
from getgpt.protocol.envelope import encrypt
from getgpt.protocol.request import build_request, encode
from getgpt.server import ApiError, ServerConfig, create_app
from getgpt.server.chat.request import Chat

from ..support.processes import SSL_CONTEXT
from ..support.servers import health, serve, wait_until

HI = [{"role": "user", "content": "hi"}]


def signature_of(text: str) -> str:
    return encrypt(text)


def chat_body(**params: Any) -> dict[str, str]:
    return {"signature": signature_of(encode(build_request(HI, **params)).decode())}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(create_app(ServerConfig(max_body_bytes=4096, max_messages=3, body_timeout=0.5))) as base:
        yield base


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert "Traceback" not in response.text
    return dict(error)


# One client for the module: a new httpx client per request costs far more than the request.
_http = httpx.Client(timeout=10, verify=SSL_CONTEXT)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return _http.post(url + "api/chat/stream", **kwargs)


def test_over_the_stream_limit_is_503_with_retry_after() -> None:
    app = create_app(ServerConfig(max_streams=1, echo_delay=0.05, echo_piece_chars=1))
    with serve(app) as base, getgpt.Client(base, max_retries=0) as client:
        held = client.stream([{"role": "user", "content": "x" * 40}])
        assert next(held) == "x"
        response = post(base, json=chat_body())
        error = assert_error(response, 503, "too_many_streams")
        assert error["type"] == "server_overloaded"
        assert response.headers["retry-after"] == "1"
        with pytest.raises(getgpt.StatusError) as caught:
            client.complete(HI)
        assert caught.value.status_code == 503
        held.close()
        wait_until(lambda: health(base)["active_streams"] == 0, what="the held stream's slot freed")
        assert client.complete(HI) == "hi"


def test_request_checks_can_refuse_and_a_failing_check_costs_one_request() -> None:
    app = create_app(ServerConfig())
    seen: list[str] = []

    async def key_check(scope: Scope) -> None:
        headers = dict(scope["headers"])
        if headers.get(b"authorization") != b"Bearer good":
            raise ApiError(
                401,
                "bad key",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def replay_check(scope: Scope, request: Chat) -> None:
        if request.uuid in seen:
            raise ApiError(409, "replayed request", code="replay")
        seen.append(request.uuid)

    app.state.request_checks.append(key_check)
    app.state.chat_checks.append(replay_check)
    with serve(app) as base:
        refused = post(base, json=chat_body())
        assert_error(refused, 401, "invalid_api_key")
        assert refused.headers["www-authenticate"] == "Bearer"
        body = chat_body(uuid="same-uuid")
        good = {"authorization": "Bearer good"}
        assert post(base, json=body, headers=good).status_code == 200
        assert_error(post(base, json=body, headers=good), 409, "replay")

        async def broken(scope: Scope) -> None:
            raise RuntimeError("a bug in a check")

        app.state.request_checks.insert(0, broken)
        response = post(base, json=chat_body(), headers=good)
        error = assert_error(response, 500, "internal")
        assert "bug" not in error["message"]
        app.state.request_checks.remove(broken)
        assert post(base, json=chat_body(), headers=good).status_code == 200


def upstream_that_breaks(after: list[str], how: str) -> Starlette:
    """An OpenAI-compatible upstream that sends ``after`` and then fails in the way ``how`` names."""

    async def completions(request: Request) -> Response:
        if how == "status":
            return Response(
                b'{"error":{"message":"model overloaded","type":"x"}}',
                status_code=500,
                media_type="application/json",
            )

        async def body() -> AsyncIterator[bytes]:
            for text in after:
                chunk = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            if how == "error-event":
                error = {"message": "upstream exploded", "type": "server_error", "code": "boom"}
                yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
            # "cut": end without [DONE] or a finish_reason

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/api/chat/stream", completions, methods=["POST"]),
        ]
    )


@pytest.mark.parametrize("backend", ["openai", "getgpt"])
@pytest.mark.parametrize("how", ["error-event", "cut"])
def test_error_after_the_stream_started_is_an_event_then_done(how: str, backend: str) -> None:
    with (
        serve(upstream_that_breaks(["part one, ", "part two"], how)) as upstream,
        serve(
            create_app(
                ServerConfig(backend=backend, upstream=upstream + ("v1" if backend == "openai" else ""))
            )
        ) as base,
    ):
        response = post(base, json=chat_body())
        assert response.status_code == 200
        blocks = [b for b in response.text.split("\n\n") if b]
        assert blocks[-1] == "data: [DONE]"
        error = json.loads(blocks[-2].removeprefix("data: "))["error"]
        assert error["type"] in ("server_error", "upstream_error")
        assert "Traceback" not in response.text
        with getgpt.Client(base, max_retries=0) as client, pytest.raises(getgpt.RemoteError) as caught:
            client.complete(HI)
        assert caught.value.partial == "part one, part two"
        assert httpx.get(base + "healthz", verify=SSL_CONTEXT).json()["failed_total"] == 2


def test_upstream_status_error_before_the_stream_keeps_its_status_and_body() -> None:
    with (
        serve(upstream_that_breaks([], "status")) as upstream,
        serve(create_app(ServerConfig(backend="openai", upstream=upstream + "v1"))) as base,
    ):
        response = post(base, json=chat_body())
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.content == b'{"error":{"message":"model overloaded","type":"x"}}'
        assert httpx.get(base + "healthz", verify=SSL_CONTEXT).json()["failed_total"] == 1


def test_unreachable_upstream_is_502() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        config = ServerConfig(backend="openai", upstream=f"http://127.0.0.1:{port}/v1")
        with serve(create_app(config)) as base:
            response = post(base, json=chat_body())
    error = response.json()["error"]
    assert response.status_code == 502
    assert error["code"] == "upstream_unreachable"


def test_many_bad_requests_in_parallel_leave_the_server_well() -> None:
    with serve(create_app(ServerConfig())) as base:

        def hammer() -> None:
            with httpx.Client(verify=SSL_CONTEXT) as http:
                for i in range(30):
                    http.post(base + "api/chat/stream", json={"signature": "ab" * (i + 1)})

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        health = httpx.get(base + "healthz", verify=SSL_CONTEXT).json()
        assert health["rejected_total"] == 120
        assert health["active_streams"] == 0


@pytest.mark.parametrize("after", [0, 1])
def test_a_crashing_backend_costs_one_request(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    from getgpt.server.backends.echo import EchoBackend

    original = EchoBackend.stream

    async def crashing(self: EchoBackend, request: Chat, outcome: Any) -> AsyncIterator[str]:
        if request.request.messages[-1].content != "crash":
            async for piece in original(self, request, outcome):
                yield piece
            return
        for _ in range(after):
            yield "piece"
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(EchoBackend, "stream", crashing)
    with serve(create_app(ServerConfig())) as base, getgpt.Client(base, max_retries=0) as client:
        signature = signature_of(encode(build_request([{"role": "user", "content": "crash"}])).decode())
        response = post(base, json={"signature": signature})
        assert "secret" not in response.text and "Traceback" not in response.text
        if after:
            assert response.status_code == 200
            blocks = [b for b in response.text.split("\n\n") if b]
            assert blocks[-1] == "data: [DONE]"
            assert json.loads(blocks[-2].removeprefix("data: "))["error"]["code"] == "backend_error"
        else:
            assert_error(response, 500, "backend_error")
        assert client.complete(HI) == "hi"
        health = _http.get(base + "healthz").json()
        assert (health["active_streams"], health["failed_total"]) == (0, 1)
