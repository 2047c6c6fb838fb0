"""An upstream status the server cannot pass on is its 502, and the client's connection lives on.

An upstream's 304 went out with a JSON body (the next request on that keep-alive connection then
failed in httpx and the openai SDK: "illegal status line"); a 205 went out chunked; 600 or 999
made the server answer nothing at all and log a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import openai
import pytest

from getgpt.server import ServerConfig, create_app
from getgpt.server.upstreams.statuses import refused_status

from ..support.faults import FaultUpstream, answer, response
from ..support.processes import SSL_CONTEXT
from ..support.servers import serve

STATUSES = [204, 205, 304, 600, 999]
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(params=STATUSES)
def gateway(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    status = request.param
    body = b'{"error": {"message": "see other"}}'
    with FaultUpstream(answer(response(status, body, "application/json"))) as upstream:
        config = ServerConfig(backend="openai", upstream=upstream.url + "v1")
        with serve(create_app(config)) as url:
            yield url, status


def _one_connection() -> httpx.Client:
    return httpx.Client(
        timeout=10, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), verify=SSL_CONTEXT
    )


def test_each_route_answers_502_and_the_next_request_on_the_connection_works(
    gateway: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    url, status = gateway
    asks = [
        ("POST", "v1/chat/completions", CHAT),
        ("POST", "v1/chat/completions", {**CHAT, "stream": True}),
        ("POST", "v1/embeddings", {"model": "e", "input": "x"}),
        ("POST", "v1/completions", {"model": "c", "prompt": "x", "stream": True}),
        ("GET", "v1/models", None),
    ]
    with caplog.at_level(logging.ERROR), _one_connection() as client:
        for method, path, body in asks:
            answer = client.request(method, url + path, json=body)
            assert answer.status_code == 502, (path, answer.status_code, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "bad_upstream_status" and f"HTTP {status}" in error["message"]
            # The same connection carries the next request, its framing intact.
            assert client.get(url + "healthz").status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback logged


def test_the_openai_sdk_sees_a_502_and_goes_on_on_the_same_connection(gateway: tuple[str, int]) -> None:
    url, status = gateway
    with (
        _one_connection() as http,
        openai.OpenAI(base_url=url + "v1", api_key="k", http_client=http, max_retries=0) as sdk,
    ):
        for _ in range(2):
            with pytest.raises(openai.APIStatusError) as caught:
                sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert caught.value.status_code == 502
            assert f"HTTP {status}" in caught.value.message
            with pytest.raises(openai.APIStatusError) as listed:
                sdk.models.list()
            assert listed.value.status_code == 502
        assert http.get(url + "healthz").status_code == 200


@pytest.mark.parametrize("status", [99, 100, 101, 199, 204, 205, 304, 600, 999])
def test_statuses_the_server_cannot_pass_on_are_refused(status: int) -> None:
    refused = refused_status(status)
    assert refused is not None and refused.status == 502 and str(status) in refused.message


@pytest.mark.parametrize("status", [200, 201, 203, 206, 302, 400, 401, 404, 429, 500, 503, 599])
def test_statuses_with_a_body_are_passed_on(status: int) -> None:
    assert refused_status(status) is None
