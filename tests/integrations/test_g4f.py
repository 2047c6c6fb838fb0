"""getgpt.integrations.g4f.GetGpt, and the seed's module face, in today's g4f -- against a real
``getgpt serve`` (echo backend) and, for the failures, scripted servers on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import g4f
import pytest
from g4f import errors as g4f_errors
from g4f.client import AsyncClient, Client
from g4f.providers.response import FinishReason, Usage

import getgpt
from getgpt.integrations.g4f import GetGpt
from getgpt.providers import GetGpt as SeedFace

from ..support.echo_text import HELLO, PIECES, TEXT, server_usage
from ..support.faults import FaultUpstream, answer, die_after, events, hanging, response
from ..support.openai_upstream import ScriptedUpstream
from ..support.serve_process import getgpt_serve

pytestmark = pytest.mark.usefixtures("g4f_home")


def test_g4f_client_gets_the_whole_reply_with_the_servers_finish_reason_and_usage(served: str) -> None:
    reply = Client(provider=GetGpt).chat.completions.create(
        model="gpt-3.5-turbo", messages=HELLO, api_base=served
    )
    choice = reply.choices[0]
    assert choice.message.content == TEXT
    assert choice.finish_reason == "stop"
    expected = server_usage(served)
    # The server's counts, not the ones g4f estimates when a provider reports none.
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )


def test_g4f_client_streams_the_reply_piece_by_piece(served: str) -> None:
    chunks = list(
        Client(provider=GetGpt).chat.completions.create(
            model="gpt-3.5-turbo", messages=HELLO, api_base=served, stream=True
        )
    )
    assert [c.choices[0].delta.content for c in chunks[:-1]] == PIECES
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_g4f_async_client_gets_and_streams_the_reply(served: str) -> None:
    async def main() -> tuple[Any, list[Any]]:
        client = AsyncClient(provider=GetGpt)
        whole = await client.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO, api_base=served)
        stream = client.chat.completions.create(
            model="gpt-3.5-turbo", messages=HELLO, api_base=served, stream=True
        )
        return whole, [chunk async for chunk in stream]

    whole, chunks = asyncio.run(main())
    assert whole.choices[0].message.content == TEXT
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens == server_usage(served).completion_tokens
    assert [c.choices[0].delta.content for c in chunks[:-1]] == PIECES
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_legacy_chat_completion_create_returns_the_text_or_streams_it(served: str) -> None:
    whole = g4f.ChatCompletion.create(model="gpt-3.5-turbo", messages=HELLO, provider=GetGpt, api_base=served)
    assert whole == TEXT
    streamed = g4f.ChatCompletion.create(
        model="gpt-3.5-turbo", messages=HELLO, provider=GetGpt, api_base=served, stream=True
    )
    items = list(streamed)
    assert [item for item in items if isinstance(item, str)] == PIECES
    # Like g4f's own providers, the stream ends with a FinishReason and the Usage (whose str() is
    # empty); the usage is the server's, asked for with stream_options.
    assert [item.reason for item in items if isinstance(item, FinishReason)] == ["stop"]
    [usage] = [item for item in items if isinstance(item, Usage)]
    assert usage.completion_tokens == server_usage(served).completion_tokens


def test_the_server_comes_from_getgpt_base_url_when_the_call_names_none(
    served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GETGPT_BASE_URL", served)
    reply = Client(provider=GetGpt).chat.completions.create(model="", messages=HELLO)
    assert reply.choices[0].message.content == TEXT
    assert GetGpt.get_dict() == {"name": "GetGpt", "url": served, "label": "GetGpt"}


def test_g4f_clients_base_url_reaches_the_provider(served: str) -> None:
    reply = Client(provider=GetGpt, base_url=served).chat.completions.create(model="", messages=HELLO)
    assert reply.choices[0].message.content == TEXT


def test_a_stop_sequence_split_over_two_pieces_ends_the_reply_before_it(served: str) -> None:
    # Echoed as "abcd" "efST" "OPgh" "ij": the stop sequence spans two pieces.
    message = [{"role": "user", "content": "abcdefSTOPghij"}]
    pieces = list(
        GetGpt.create_completion("gpt-3.5-turbo", message, stream=True, api_base=served, stop=["STOP"])
    )
    assert "".join(p for p in pieces if isinstance(p, str)) == "abcdef"
    assert [p.reason for p in pieces if isinstance(p, FinishReason)] == ["stop"]
    reply = Client(provider=GetGpt).chat.completions.create(
        model="", messages=message, api_base=served, stop="STOP"
    )
    assert reply.choices[0].message.content == "abcdef"


def test_the_seeds_module_face_works_as_a_provider_of_todays_g4f(
    served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first symptom: "module 'getgpt.providers.GetGpt' has no attribute 'get_dict'".
    monkeypatch.setenv("GETGPT_BASE_URL", served)
    client = Client(provider=SeedFace)
    assert (
        client.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO).choices[0].message.content
        == TEXT
    )
    streamed = client.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO, stream=True)
    assert [c.choices[0].delta.content for c in streamed][:-1] == PIECES

    async def main() -> str:
        reply = await AsyncClient(provider=SeedFace).chat.completions.create(model="", messages=HELLO)
        return str(reply.choices[0].message.content)

    assert asyncio.run(main()) == TEXT
    assert g4f.ChatCompletion.create(model="gpt-3.5-turbo", messages=HELLO, provider=SeedFace) == TEXT


def test_images_are_refused_with_a_clear_error(served: str) -> None:
    with pytest.raises(getgpt.ValidationError, match="content parts"):
        list(
            GetGpt.create_completion(
                "m", HELLO, api_base=served, media=[("data:image/png;base64,AA", "a.png")]
            )
        )


# --------------------------------------------------------------------------- errors become g4f's


def test_a_wrong_api_key_is_g4fs_missing_auth_error_and_the_right_one_works() -> None:
    with getgpt_serve(env={"GETGPT_API_KEYS": "sesame"}) as server:
        url = server.url
        client = Client(provider=GetGpt)
        reply = client.chat.completions.create(model="", messages=HELLO, api_base=url, api_key="sesame")
        assert reply.choices[0].message.content == TEXT
        with pytest.raises(g4f_errors.MissingAuthError, match="401"):
            client.chat.completions.create(model="", messages=HELLO, api_base=url, api_key="wrong")


def test_a_rate_limited_call_is_g4fs_rate_limit_error() -> None:
    with getgpt_serve("--rate-limit", "1", "--rate-burst", "1") as server:
        url = server.url
        client = Client(provider=GetGpt)
        client.chat.completions.create(model="", messages=HELLO, api_base=url)
        with pytest.raises(g4f_errors.RateLimitError, match="429"):
            client.chat.completions.create(model="", messages=HELLO, api_base=url, max_retries=0)


ERROR_JSON = b'{"error": {"message": "no such thing", "type": "invalid_request_error"}}'
CLOUDFLARE = (
    b"<html><title>Just a moment...</title><script src='/cdn-cgi/challenge-platform/cf-chl'></script>"
)
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
IN_STREAM_ERROR = STREAM_HEAD + events("half ") + b'data: {"error": {"message": "model overloaded"}}\n\n'


@pytest.mark.parametrize(
    ("script", "expected", "partial"),
    [
        (answer(response(400, ERROR_JSON, "application/json")), g4f_errors.BadRequestError, ""),
        (answer(response(402, ERROR_JSON, "application/json")), g4f_errors.PaymentRequiredError, ""),
        (answer(response(403, CLOUDFLARE, "text/html")), g4f_errors.CloudflareError, ""),
        (answer(response(500, ERROR_JSON, "application/json")), g4f_errors.ResponseStatusError, ""),
        (answer(IN_STREAM_ERROR), g4f_errors.ResponseError, "half "),
        (die_after("cut ", "short"), g4f_errors.ResponseError, "cut short"),
    ],
    ids=["400", "402", "cloudflare", "500", "in-stream-error", "cut-short"],
)
def test_a_failure_surfaces_as_g4fs_own_type_with_the_partial_reply(
    script: Any, expected: type[Exception], partial: str
) -> None:
    with FaultUpstream(script) as upstream:
        received: list[Any] = []
        with pytest.raises(expected) as caught:
            for item in GetGpt.create_completion("m", HELLO, api_base=upstream.url, max_retries=0):
                received.append(item)
    assert caught.value.partial == partial  # type: ignore[attr-defined]
    # Even the text read together with the error is handed over before it.
    assert "".join(received) == partial
    assert isinstance(caught.value.__cause__, getgpt.GetGptError)


def test_a_silent_server_is_g4fs_timeout_error_on_the_async_path() -> None:
    async def main(url: str) -> None:
        async for _ in GetGpt.create_async_generator("m", HELLO, api_base=url, timeout=0.3, max_retries=0):
            pass

    with hanging(head=False) as upstream, pytest.raises(g4f_errors.TimeoutError):
        asyncio.run(main(upstream.url))


# --------------------------------------------------------------------------- tools, through a gateway

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
]
WANTED = [("get_weather", '{"city": "Oslo", "unit": "c"}'), ("get_time", '{"tz": "Europe/Oslo"}')]


def test_tools_travel_in_the_request_and_the_calls_come_back_as_g4fs(
    gateway: str, upstream: ScriptedUpstream
) -> None:
    # g4f emulates tools in the prompt for providers without native tools: this one has them.
    client = Client(provider=GetGpt)
    asked = {"model": "tools", "messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS}
    reply = client.chat.completions.create(**asked, api_base=gateway)
    message = reply.choices[0].message
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls] == WANTED
    assert reply.choices[0].finish_reason == "tool_calls"
    request = upstream.chat_requests()[-1].json()
    assert [t["function"]["name"] for t in request["tools"]] == ["get_weather", "get_time"]
    assert request["messages"] == [{"role": "user", "content": "weather?"}]  # no emulation prompt

    chunks = list(
        client.chat.completions.create(
            model="tools",
            messages=[{"role": "user", "content": "weather?"}],
            tools=TOOLS,
            api_base=gateway,
            stream=True,
        )
    )
    streamed = [call for c in chunks for call in (c.choices[0].delta.tool_calls or [])]
    assert [(c.function.name, c.function.arguments) for c in streamed] == WANTED
