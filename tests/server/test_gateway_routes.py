"""OpenAI's other routes through the gateway: models from the upstream, embeddings, completions and
responses forwarded as they are -- with the chat routes' keys, limits and disconnect handling."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from getgpt.server import ServerConfig, create_app

from ..support.faults import hanging
from ..support.openai_upstream import MODELS, ScriptedUpstream
from ..support.processes import SSL_CONTEXT
from ..support.sdk import openai_sdk
from ..support.servers import health, serve, wait_until

KEY = "sk-gateway-test"


@pytest.fixture(scope="module")
def gateway(upstream: ScriptedUpstream) -> Iterator[str]:
    config = ServerConfig(
        backend="openai", upstream=upstream.url + "v1", model_aliases=("fast=llama3:8b",), models_cache_ttl=60
    )
    with serve(create_app(config)) as base:
        yield base


def sdk(base: str, key: str = "sk-client") -> openai.OpenAI:
    return openai_sdk(base + "v1", key, max_retries=0)


def both(upstream: ScriptedUpstream, gateway: str, call: Any) -> tuple[Any, Any]:
    """``call(client)`` straight to the upstream, then through the gateway."""
    with sdk(upstream.url) as direct, sdk(gateway) as through:
        return call(direct), call(through)


def test_the_models_are_the_upstreams_with_the_aliases(upstream: ScriptedUpstream, gateway: str) -> None:
    direct, through = both(
        upstream, gateway, lambda c: [m.model_dump(exclude_none=True) for m in c.models.list()]
    )
    assert direct == MODELS
    assert through == [
        *MODELS,
        {"id": "fast", "object": "model", "created": 1_700_000_000, "owned_by": "library"},
    ]
    one, same = both(
        upstream, gateway, lambda c: c.models.retrieve("llama3:8b").model_dump(exclude_none=True)
    )
    assert one == same == MODELS[2]
    with sdk(gateway) as client:
        assert client.models.retrieve("fast").id == "fast"
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"  # type: ignore[attr-defined]


def test_the_model_list_is_asked_again_only_once_it_is_old(upstream: ScriptedUpstream) -> None:
    def asked() -> int:
        return sum(r.path == "/v1/models" for r in upstream.received)

    for ttl, expected in ((60.0, 1), (0.0, 3)):
        before = asked()
        config = ServerConfig(backend="openai", upstream=upstream.url + "v1", models_cache_ttl=ttl)
        with serve(create_app(config)) as base, sdk(base) as client:
            for _ in range(3):
                assert [m.id for m in client.models.list()] == [m["id"] for m in MODELS]
        assert asked() - before == expected


def test_embeddings_are_forwarded_as_they_are(upstream: ScriptedUpstream, gateway: str) -> None:
    def embed(client: openai.OpenAI) -> Any:
        return client.embeddings.create(model="embed-1", input=["один", "two"], dimensions=3).model_dump()

    direct, through = both(upstream, gateway, embed)
    assert through == direct
    sent = [r for r in upstream.received if r.path == "/v1/embeddings"]
    assert sent[-1].body == sent[-2].body
    assert sent[-1].json()["dimensions"] == 3


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_text_completions_are_forwarded_streamed_where_asked(
    upstream: ScriptedUpstream, gateway: str, stream: bool
) -> None:
    def complete(client: openai.OpenAI) -> Any:
        reply = client.completions.create(model="text-1", prompt="Hello", stream=stream, max_tokens=5)
        return [c.model_dump() for c in reply] if stream else reply.model_dump()  # type: ignore[union-attr]

    direct, through = both(upstream, gateway, complete)
    assert through == direct
    if stream:
        assert "".join(c["choices"][0]["text"] for c in through) == " world"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_responses_are_forwarded_streamed_where_asked(
    upstream: ScriptedUpstream, gateway: str, stream: bool
) -> None:
    def respond(client: openai.OpenAI) -> Any:
        if stream:
            return [
                event.model_dump() for event in client.responses.create(model="r-1", input="Hi", stream=True)
            ]
        return client.responses.create(model="r-1", input="Hi").output_text

    direct, through = both(upstream, gateway, respond)
    assert through == direct
    if stream:
        assert [event["type"] for event in through][-1] == "response.completed"
    else:
        assert through == "Hi there"


def test_an_alias_in_a_forwarded_request_becomes_the_upstreams_name(
    upstream: ScriptedUpstream, gateway: str
) -> None:
    with sdk(gateway) as client:
        client.embeddings.create(model="fast", input="x")
    assert upstream.received[-1].json()["model"] == "llama3:8b"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_servers_model_holds_on_every_forwarded_route(upstream: ScriptedUpstream, stream: bool) -> None:
    # The client's gpt-4-expensive reached the upstream on these routes despite --upstream-model.
    config = ServerConfig(backend="openai", upstream=upstream.url + "v1", upstream_model="pinned-1")
    with serve(create_app(config)) as base, sdk(base) as client:
        before = len(upstream.received)
        client.embeddings.create(model="gpt-4-expensive", input="x")
        reply = client.completions.create(model="gpt-4-expensive", prompt="Hi", stream=stream)
        if stream:
            list(reply)  # type: ignore[arg-type]
        answer = client.responses.create(model="gpt-4-expensive", input="Hi", stream=stream)
        if stream:
            list(answer)  # type: ignore[arg-type]
        # A body that names no model gets the server's.
        httpx.post(base + "v1/embeddings", json={"input": "x"}, verify=SSL_CONTEXT).raise_for_status()
    sent = upstream.received[before:]
    assert [r.path for r in sent] == ["/v1/embeddings", "/v1/completions", "/v1/responses", "/v1/embeddings"]
    assert [r.json()["model"] for r in sent] == ["pinned-1"] * 4


@pytest.mark.parametrize("route", ["embeddings", "completions", "responses"])
def test_a_forwarded_request_that_gives_a_key_twice_is_refused_before_the_upstream(
    upstream: ScriptedUpstream, gateway: str, route: str
) -> None:
    # The upstream may read the first "model" where the server read (and aliased) the last.
    before = len(upstream.received)
    body = b'{"model": "fast", "input": "x", "prompt": "x", "model": "expensive"}'
    answer = httpx.post(
        gateway + "v1/" + route,
        content=body,
        headers={"content-type": "application/json"},
        verify=SSL_CONTEXT,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "duplicate_key"
    assert answer.json()["error"]["param"] == "model"
    assert len(upstream.received) == before


def test_forwarded_routes_take_the_chat_routes_keys_and_limits(
    upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ServerConfig(
        backend="openai", upstream=upstream.url + "v1", api_keys=(KEY,), max_body_bytes=2048
    )
    with serve(create_app(config)) as base:
        with sdk(base, "wrong") as client, pytest.raises(openai.AuthenticationError):
            client.embeddings.create(model="e", input="x")
        with sdk(base, KEY) as client:
            assert len(client.embeddings.create(model="e", input="x").data) == 1
            with pytest.raises(openai.APIStatusError) as caught:
                client.embeddings.create(model="e", input="x" * 5000)
        assert caught.value.status_code == 413
        counts = health(base)
    assert (counts["streams_total"], counts["active_streams"]) == (1, 0)


def test_other_backends_say_which_backend_serves_the_other_routes() -> None:
    with serve(create_app(ServerConfig(models=("echo-1", "echo-2")))) as base, sdk(base) as client:
        for call in (
            lambda: client.embeddings.create(model="e", input="x"),
            lambda: client.completions.create(model="c", prompt="x"),
            lambda: client.responses.create(model="r", input="x"),
        ):
            with pytest.raises(openai.BadRequestError) as caught:
                call()
            assert "--backend openai" in caught.value.message
            assert caught.value.code == "unsupported_endpoint"  # type: ignore[attr-defined]
        assert [m.id for m in client.models.list()] == ["echo-1", "echo-2"]
        assert client.models.retrieve("echo-2").id == "echo-2"


def test_a_client_leaving_a_forwarded_stream_closes_the_upstream_within_a_second() -> None:
    with (
        hanging("first") as upstream,
        serve(create_app(ServerConfig(backend="openai", upstream=upstream.url + "v1"))) as base,
    ):
        with (
            httpx.Client(timeout=10, verify=SSL_CONTEXT) as http,
            http.stream(
                "POST", base + "v1/completions", json={"model": "m", "prompt": "x", "stream": True}
            ) as response,
        ):
            assert response.status_code == 200
            reads = response.iter_bytes()  # kept: a dropped generator would close the connection
            assert next(reads).startswith(b"data: ")
            assert health(base)["active_streams"] == 1
            left = time.monotonic()
        wait_until(lambda: bool(upstream.peer_closed), 1.0)
        assert upstream.peer_closed[0] - left < 1.0
        wait_until(lambda: health(base)["active_streams"] == 0, 1.0)
        assert health(base)["disconnects_total"] == 1
