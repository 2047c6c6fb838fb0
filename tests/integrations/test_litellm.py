"""getgpt.integrations.litellm: litellm.completion / acompletion with the ``getgpt/`` prefix,
streamed and not, against a real ``getgpt serve`` (echo backend) and scripted failing servers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import getgpt

from ..support.echo_text import HELLO, PIECES, TEXT, server_usage
from ..support.faults import FaultUpstream, answer, die_after, events
from ..support.lazy import Lazy
from ..support.openai_upstream import ScriptedUpstream
from ..support.serve_process import getgpt_serve
from ..support.servers import health

# Imported by the first test that uses them, not at collection (tests/support/lazy.py). LiteLLM
# reads LITELLM_LOCAL_MODEL_COST_MAP, set by conftest.py, when it is imported: no price list fetched.
litellm = Lazy("litellm")
provider = Lazy("getgpt.integrations.litellm")

MODEL = "getgpt/gpt-3.5-turbo"


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm, "custom_provider_map", [])
    monkeypatch.setattr(litellm, "suppress_debug_info", True)
    provider.register()


def test_completion_returns_the_reply_with_the_servers_finish_reason_and_usage(served: str) -> None:
    reply = litellm.completion(model=MODEL, api_base=served, messages=HELLO)
    assert reply.choices[0].message.content == TEXT
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "gpt-3.5-turbo"
    expected = server_usage(served)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
        expected.total_tokens,
    )


def test_completion_streams_the_reply_piece_by_piece_with_a_finish_reason_and_usage(served: str) -> None:
    chunks = list(
        litellm.completion(
            model=MODEL, api_base=served, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == PIECES
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    usage = chunks[-1].usage
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_acompletion_returns_and_streams_the_reply(served: str) -> None:
    async def main() -> tuple[Any, list[Any]]:
        whole = await litellm.acompletion(model=MODEL, api_base=served, messages=HELLO)
        stream = await litellm.acompletion(model=MODEL, api_base=served, messages=HELLO, stream=True)
        return whole, [chunk async for chunk in stream]

    whole, chunks = asyncio.run(main())
    assert whole.choices[0].message.content == TEXT
    assert whole.usage.completion_tokens == server_usage(served).completion_tokens
    assert [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content] == PIECES
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_the_server_comes_from_getgpt_base_url_when_the_call_names_none(
    served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GETGPT_BASE_URL", served)
    assert litellm.completion(model=MODEL, messages=HELLO).choices[0].message.content == TEXT


def test_a_stop_sequence_split_over_two_pieces_ends_the_reply_before_it(served: str) -> None:
    message = [{"role": "user", "content": "abcdefSTOPghij"}]  # "abcd" "efST" "OPgh" "ij"
    reply = litellm.completion(model=MODEL, api_base=served, messages=message, stop=["STOP"])
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("abcdef", "stop")
    chunks = list(
        litellm.completion(model=MODEL, api_base=served, messages=message, stop="STOP", stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "abcdef"


def test_register_twice_keeps_one_entry() -> None:
    provider.register()
    assert [entry["provider"] for entry in litellm.custom_provider_map] == ["getgpt"]
    assert litellm.custom_provider_map[0]["custom_handler"] is provider.handler


# --------------------------------------------------------------------------- errors are LiteLLM's


def test_the_api_key_reaches_the_server_and_a_wrong_one_is_litellms_authentication_error() -> None:
    with getgpt_serve(env={"GETGPT_API_KEYS": "sesame"}) as server:
        url = server.url
        reply = litellm.completion(model=MODEL, api_base=url, api_key="sesame", messages=HELLO)
        assert reply.choices[0].message.content == TEXT
        with pytest.raises(litellm.AuthenticationError) as caught:
            litellm.completion(model=MODEL, api_base=url, api_key="wrong", messages=HELLO)
    assert isinstance(caught.value.__cause__, getgpt.StatusError)


def test_a_rate_limited_call_is_litellms_rate_limit_error() -> None:
    with getgpt_serve("--rate-limit", "1", "--rate-burst", "1") as server:
        url = server.url
        litellm.completion(model=MODEL, api_base=url, messages=HELLO)
        with pytest.raises(litellm.RateLimitError):
            litellm.completion(model=MODEL, api_base=url, messages=HELLO, max_retries=0)


def test_an_unreachable_server_is_litellms_connection_error() -> None:
    from ..support.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(litellm.APIConnectionError):
        litellm.completion(model=MODEL, api_base=url, messages=HELLO, max_retries=0)


def test_a_stream_cut_short_hands_over_every_piece_then_raises_with_the_partial_text() -> None:
    with FaultUpstream(die_after("cut ", "short")) as upstream:
        received: list[str] = []
        with pytest.raises(litellm.exceptions.MidStreamFallbackError) as caught:
            for chunk in litellm.completion(model=MODEL, api_base=upstream.url, messages=HELLO, stream=True):
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "cut short"
    assert caught.value.generated_content == "cut short"
    assert caught.value.original_exception.partial == "cut short"  # type: ignore[union-attr]


def test_an_error_inside_a_whole_reply_keeps_its_partial_text() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    body = head + events("half ") + b'data: {"error": {"message": "model overloaded"}}\n\n'
    with FaultUpstream(answer(body)) as upstream, pytest.raises(litellm.InternalServerError) as caught:
        litellm.completion(model=MODEL, api_base=upstream.url, messages=HELLO)
    assert "model overloaded" in str(caught.value)
    assert caught.value.partial == "half "  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- tools, through a gateway

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": {arg: {"type": "string"}}},
        },
    }
    for name, arg in (("get_weather", "city"), ("get_time", "tz"))
]
WANTED = [("get_weather", '{"city": "Oslo", "unit": "c"}'), ("get_time", '{"tz": "Europe/Oslo"}')]


def test_tools_travel_in_the_request_and_the_calls_come_back(
    gateway: str, upstream: ScriptedUpstream
) -> None:
    asked = {"model": "getgpt/tools", "api_base": gateway, "messages": HELLO, "tools": TOOLS}
    reply = litellm.completion(**asked, tool_choice="required")
    calls = reply.choices[0].message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == WANTED
    assert [c.id for c in calls] == ["call_weather", "call_time"]
    assert reply.choices[0].finish_reason == "tool_calls"
    request = upstream.chat_requests()[-1].json()
    assert [t["function"]["name"] for t in request["tools"]] == ["get_weather", "get_time"]
    assert request["tool_choice"] == "required"

    chunks = list(litellm.completion(**asked, stream=True))
    built = litellm.stream_chunk_builder(chunks)
    streamed = built.choices[0].message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in streamed] == WANTED


def test_a_stream_reports_the_servers_usage_and_a_reasoning_model_its_reasoning(gateway: str) -> None:
    asked = {"model": "getgpt/reasoning", "api_base": gateway, "messages": HELLO}
    reply = litellm.completion(**asked)
    assert (reply.choices[0].message.content, reply.choices[0].message.reasoning_content) == (
        "42",
        "Thinking...",
    )
    chunks = list(litellm.completion(**asked, stream=True, stream_options={"include_usage": True}))
    # The scripted upstream's counts (11 + 7), passed on by the gateway, not LiteLLM's own count.
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 7, 18)


def test_every_choice_comes_back_when_n_asks_for_several(served: str) -> None:
    # It used to return the first alone, with no error, while the upstream generated (and billed) all.
    reply = litellm.completion(model=MODEL, api_base=served, messages=HELLO, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert [c.message.content for c in reply.choices] == [TEXT] * 3
    assert [c.finish_reason for c in reply.choices] == ["stop"] * 3
    cut = litellm.completion(model=MODEL, api_base=served, messages=HELLO, n=2, stop=[TEXT[6:9]])
    assert [c.message.content for c in cut.choices] == [TEXT[:6]] * 2  # the stop applies to each


def test_acompletion_gives_every_choice_too(served: str) -> None:
    reply = asyncio.run(litellm.acompletion(model=MODEL, api_base=served, messages=HELLO, n=2))
    assert [c.message.content for c in reply.choices] == [TEXT] * 2


def test_a_stream_of_several_choices_is_refused_before_anything_is_sent(served: str) -> None:
    before = health(served)["completion_tokens_total"]
    with pytest.raises(litellm.BadRequestError, match="cannot stream n=2 choices") as raised:
        list(litellm.completion(model=MODEL, api_base=served, messages=HELLO, n=2, stream=True))
    assert "stream=False" in str(raised.value)
    assert health(served)["completion_tokens_total"] == before  # nothing generated, nothing billed


@pytest.mark.parametrize("asynchronous", [False, True])
def test_embeddings_are_refused_saying_the_protocol_has_none(served: str, asynchronous: bool) -> None:
    call = (
        (lambda: asyncio.run(litellm.aembedding(model=MODEL, input=["a"], api_base=served)))
        if asynchronous
        else (lambda: litellm.embedding(model=MODEL, input=["a"], api_base=served))
    )
    with pytest.raises(litellm.BadRequestError) as raised:
        call()
    said = str(raised.value)
    assert "the GetGpt protocol has no embeddings" in said and "/v1/embeddings" in said
    assert "Not implemented yet" not in said
