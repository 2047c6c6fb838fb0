"""Chains: server A forwards to server B, through the openai backend (B's /v1) or the getgpt backend."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

import getgpt
from getgpt.server import ServerConfig, create_app

from ..support.openai_upstream import ScriptedUpstream, completion_of
from ..support.processes import SSL_CONTEXT
from ..support.sdk import openai_sdk
from ..support.servers import serve

TEXT = 'Цепочка серверов 🔗 works: "quoted" \\ and\nlines'


@pytest.fixture(scope="module")
def b() -> Iterator[str]:
    with serve(create_app(ServerConfig(echo_piece_chars=2))) as base:
        yield base


@pytest.fixture(scope="module", params=["openai", "getgpt"])
def a(request: pytest.FixtureRequest, b: str) -> Iterator[str]:
    upstream = b + "v1" if request.param == "openai" else b
    with serve(create_app(ServerConfig(backend=request.param, upstream=upstream))) as base:
        yield base


def test_project_client_through_the_chain(a: str, b: str) -> None:
    before = httpx.get(b + "healthz", verify=SSL_CONTEXT).json()["streams_total"]
    with getgpt.Client(a) as client:
        with client.stream([{"role": "user", "content": TEXT}]) as chat:
            pieces = list(chat)
        assert "".join(pieces) == TEXT
        assert chat.finish_reason == "stop"
        assert client.complete([{"role": "user", "content": TEXT}], stream=False) == TEXT
    assert httpx.get(b + "healthz", verify=SSL_CONTEXT).json()["streams_total"] == before + 2
    assert httpx.get(a + "healthz", verify=SSL_CONTEXT).json()["active_streams"] == 0


def test_openai_sdk_through_the_chain(a: str) -> None:
    with openai_sdk(a + "v1", "x", max_retries=0) as sdk:
        stream = sdk.chat.completions.create(
            model="gpt-3.5-turbo",
            messages=[{"role": "user", "content": TEXT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_async_clients_in_parallel_through_the_chain(a: str) -> None:
    async def main() -> list[str]:
        async with getgpt.AsyncClient(a) as client:
            replies = await asyncio.gather(
                *(client.complete([{"role": "user", "content": f"№{i} {TEXT}"}]) for i in range(16))
            )
        return [str(r) for r in replies]

    assert asyncio.run(main()) == [f"№{i} {TEXT}" for i in range(16)]


def test_upstream_errors_come_back_in_the_error_format() -> None:
    # B refuses the request A forwards (too many messages for B), and A passes B's 400 on.
    with serve(create_app(ServerConfig(max_messages=1))) as strict_b:
        for kind, upstream in (("openai", strict_b + "v1"), ("getgpt", strict_b)):
            with serve(create_app(ServerConfig(backend=kind, upstream=upstream))) as gate:
                messages = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
                with (
                    getgpt.Client(gate, max_retries=0) as client,
                    pytest.raises(getgpt.StatusError) as caught,
                ):
                    client.complete(messages)
                assert caught.value.status_code == 400, kind
                assert "too many messages" in caught.value.body


class RecordingUpstream:
    """An OpenAI-compatible upstream that records what it was sent and answers one fixed chunk."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[bytes, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.requests.append(json.loads(body))
        self.headers.append(dict(scope["headers"]))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"set-cookie", b"who=first; Path=/")],
            }
        )
        chunk = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "length"}]}
        await send(
            {
                "type": "http.response.body",
                "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                "more_body": True,
            }
        )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def test_openai_backend_keeps_no_upstream_cookies_between_users() -> None:
    recorder = RecordingUpstream()
    with serve(recorder) as upstream:
        # By name: cookie jars ignore cookies from a bare IP address.
        named = upstream.replace("127.0.0.1", "localhost")
        config = ServerConfig(backend="openai", upstream=named + "v1")
        with serve(create_app(config)) as gate:
            for _ in range(2):
                with getgpt.Client(gate) as client:  # two users, two connections
                    assert client.complete([{"role": "user", "content": "u"}]) == "ok"
    assert len(recorder.headers) == 2
    assert b"cookie" not in recorder.headers[1]


def test_openai_backend_forwards_parameters_key_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-test-123")
    recorder = RecordingUpstream()
    with serve(recorder) as upstream:
        config = ServerConfig(
            backend="openai",
            upstream=upstream + "v1",
            upstream_key_env="TEST_UPSTREAM_KEY",
            upstream_model="llama3",
        )
        with serve(create_app(config)) as gate, getgpt.Client(gate) as client:
            reply = client.complete(
                [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], temperature=0.3
            )
            plain = client.complete([{"role": "user", "content": "u"}])
    assert reply == "ok" and reply.finish_reason == "length"
    assert plain == "ok"
    first, second = recorder.requests
    # The server asks for the usage (its token counters) on a stream; the GetGpt request did not.
    usage = {"stream_options": {"include_usage": True}}
    assert first == {
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "model": "llama3",
        "temperature": 0.3,
        "stream": True,
        **usage,
    }
    # Parameters at the protocol's defaults are left to the upstream's own defaults.
    assert second == {
        "messages": [{"role": "user", "content": "u"}],
        "model": "llama3",
        "stream": True,
        **usage,
    }
    assert list(first) == ["messages", "model", "temperature", "stream", "stream_options"]
    assert recorder.headers[0][b"authorization"] == b"Bearer sk-test-123"


def test_missing_upstream_key_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        create_app(
            ServerConfig(
                backend="openai", upstream="http://127.0.0.1:9/v1", upstream_key_env="NO_SUCH_KEY_VAR"
            )
        )
    with pytest.raises(ValueError, match="upstream"):
        ServerConfig(backend="getgpt")


async def gzipping_upstream(scope: Scope, receive: Receive, send: Send) -> None:
    """An upstream that compresses its event stream even though the gateway asked for identity."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    events = b"".join(
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n"
        for text in ("сжатый ", "поток ", "🗜️")
    )
    body = gzip.compress(events + b"data: [DONE]\n\n")
    headers = [(b"content-type", b"text/event-stream"), (b"content-encoding", b"gzip")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_openai_backend_refuses_a_compressed_upstream_it_did_not_ask_for() -> None:
    # Decoding what was not asked for is how a compression bomb gets in (issue 11): the backend
    # asks for identity, so a gzip body is the upstream's fault, named, and never decoded.
    with (
        serve(gzipping_upstream) as upstream,
        serve(create_app(ServerConfig(backend="openai", upstream=upstream + "v1"))) as gate,
        getgpt.Client(gate, max_retries=0) as client,
        pytest.raises(getgpt.StatusError) as caught,
    ):
        client.complete([{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502
    assert "gzip body, which was not asked for" in caught.value.message


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module", params=["gateway", "chain"])
def front(request: pytest.FixtureRequest, scripted: ScriptedUpstream) -> Iterator[str]:
    """A GetGpt server in front of the scripted upstream: the gateway itself (openai backend), or a
    chain server (getgpt backend) in front of that gateway."""
    with serve(create_app(ServerConfig(backend="openai", upstream=scripted.url + "v1"))) as gateway:
        if request.param == "gateway":
            yield gateway
            return
        with serve(create_app(ServerConfig(backend="getgpt", upstream=gateway))) as chain:
            yield chain


def test_tool_calls_come_through_the_chain(front: str, scripted: ScriptedUpstream) -> None:
    expected = completion_of("tools", "tools")["choices"][0]["message"]["tool_calls"]
    with getgpt.Client(front, max_retries=0) as client:
        with client.stream([{"role": "user", "content": "weather?"}], model="tools", tools=TOOLS) as chat:
            assert list(chat) == []
        assert chat.tool_calls == expected
        assert chat.finish_reason == "tool_calls"
        whole = client.complete(
            [{"role": "user", "content": "weather?"}], model="tools", tools=TOOLS, stream=False
        )
        assert whole.tool_calls == expected
    sent = scripted.chat_requests()[-1].json()
    assert sent["tools"] == TOOLS and sent["model"] == "tools"


def test_reasoning_choices_and_usage_come_through_the_chain(front: str) -> None:
    with getgpt.Client(front, max_retries=0) as client:
        with client.stream(
            [{"role": "user", "content": "?"}], model="reasoning", stream_options={"include_usage": True}
        ) as chat:
            assert "".join(chat) == "42"
        assert chat.reasoning == "Thinking..."
        assert chat.usage is not None and chat.usage.total_tokens == 18
        with client.stream([{"role": "user", "content": "?"}], model="n2", n=2) as two:
            assert "".join(two) == "first"
        assert [str(choice) for choice in two.choices] == ["first", "second choice"]
        # Not asked for, the usage chunk the gateway itself asked the upstream for is not passed on.
        with client.stream([{"role": "user", "content": "?"}], model="text") as plain:
            assert "".join(plain) == "Hello, wörld 🙂"
        assert plain.usage is None
