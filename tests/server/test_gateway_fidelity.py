"""The gateway is transparent: the openai SDK gets the same result through it as straight from the upstream.

The upstream is the scripted one of tests/support/openai_upstream.py (raw asyncio HTTP/1.1 on
loopback): tool calls with their arguments split across HTTP chunks, reasoning deltas, logprobs,
two choices, a refusal, usage, errors with ``Retry-After``. For each, the official SDK's result
through ``getgpt serve --backend openai`` must equal its result from the upstream directly,
streamed and not, and the upstream must receive every byte the client sent (the one field the
gateway owns, ``stream_options.include_usage``, added at the end of a stream's request).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from getgpt.server import ServerConfig, create_app

from ..support.openai_upstream import ScriptedUpstream
from ..support.processes import SSL_CONTEXT
from ..support.sdk import openai_sdk
from ..support.servers import health, serve

HI = [{"role": "user", "content": "Weather in Oslo, and the time there?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]
# Each case: the script (the model name) and the parameters a client sends with it.
CASES: dict[str, dict[str, Any]] = {
    "text": {"temperature": 0.2, "seed": 7, "user": "u-1", "stop": ["\n\n"]},
    "tools": {"tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": True},
    "reasoning": {"reasoning_effort": "low", "max_completion_tokens": 4000},
    "logprobs": {"logprobs": True, "top_logprobs": 2},
    "n2": {"n": 2, "max_tokens": 4000},
    "refusal": {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
}
# A vendor's own parameters, sent by the SDK through extra_body: forwarded like any other field.
EXTRA = {"top_k": 40, "min_p": 0.05, "chat_template_kwargs": {"enable_thinking": True}}


def sdk(base: str) -> openai.OpenAI:
    return openai_sdk(base + "v1", "sk-client", max_retries=0)


def ask(base: str, model: str, stream: bool, **params: Any) -> Any:
    with sdk(base) as client:
        reply = client.chat.completions.create(
            model=model, messages=HI, stream=stream, extra_body=EXTRA, **params, **CASES.get(model, {})
        )
        if stream:
            return [chunk.model_dump() for chunk in reply]
        return reply.model_dump()


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("script", list(CASES))
def test_the_sdk_gets_the_same_through_the_gateway(
    upstream: ScriptedUpstream, gateway: str, script: str, stream: bool
) -> None:
    direct = ask(upstream.url, script, stream)
    sent = upstream.chat_requests()[-1].body
    through = ask(gateway, script, stream)
    forwarded = upstream.chat_requests()[-1].body
    assert through == direct
    if stream:
        # Every byte as the client sent it; the gateway's own ask for the usage at the end.
        assert forwarded == sent[:-1] + b',"stream_options":{"include_usage":true}}'
        assert all(chunk["usage"] is None for chunk in through)
    else:
        assert forwarded == sent
    fields = json.loads(forwarded)
    assert {name: fields[name] for name in EXTRA} == EXTRA


def test_tool_call_arguments_arrive_whole_and_the_usage_when_asked(
    upstream: ScriptedUpstream, gateway: str
) -> None:
    chunks = ask(gateway, "tools", True, stream_options={"include_usage": True})
    assert upstream.chat_requests()[-1].json()["stream_options"] == {"include_usage": True}
    calls: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"]["tool_calls"] or []:
                calls[call["index"]] = calls.get(call["index"], "") + call["function"]["arguments"]
    assert calls == {0: '{"city": "Oslo", "unit": "c"}', 1: '{"tz": "Europe/Oslo"}'}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 18
    assert chunks == ask(upstream.url, "tools", True, stream_options={"include_usage": True})


def test_the_gateway_counts_the_upstreams_real_tokens(upstream: ScriptedUpstream) -> None:
    with serve(create_app(ServerConfig(backend="openai", upstream=upstream.url + "v1"))) as base:
        ask(base, "text", True)
        ask(base, "text", False)
        counts = health(base)
    assert (counts["prompt_tokens_total"], counts["completion_tokens_total"]) == (22, 14)


def test_an_agents_second_turn_goes_through_untouched(upstream: ScriptedUpstream, gateway: str) -> None:
    first = ask(gateway, "tools", False)["choices"][0]["message"]
    turns = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_weather", "content": '{"celsius": -3}'},
        {"role": "tool", "tool_call_id": "call_time", "content": "09:15"},
    ]
    with sdk(gateway) as client:
        reply = client.chat.completions.create(model="text", messages=turns, tools=TOOLS)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Hello, wörld 🙂"
    assert upstream.chat_requests()[-1].json()["messages"] == turns


ERRORS = {
    "error-400": (openai.BadRequestError, 400),
    "error-404": (openai.NotFoundError, 404),
    "error-429": (openai.RateLimitError, 429),
    "error-500": (openai.InternalServerError, 500),
    "error-503": (openai.InternalServerError, 503),
}


@pytest.mark.parametrize("script", list(ERRORS))
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_an_upstream_error_keeps_its_status_body_and_retry_after(
    upstream: ScriptedUpstream, gateway: str, script: str, stream: bool
) -> None:
    error, status = ERRORS[script]
    caught: list[openai.APIStatusError] = []
    for base in (upstream.url, gateway):
        with pytest.raises(error) as raised:
            ask(base, script, stream)
        caught.append(raised.value)
    direct, through = caught
    assert through.status_code == direct.status_code == status
    assert through.body == direct.body
    assert (through.param, through.code) == (direct.param, direct.code)  # type: ignore[attr-defined]
    assert through.response.headers.get("retry-after") == direct.response.headers.get("retry-after")


def test_an_upstream_401_is_the_gateways_502_with_the_upstreams_message(
    upstream: ScriptedUpstream, gateway: str
) -> None:
    # The client's own key was fine; the gateway's key upstream was not: not the client's 401.
    with pytest.raises(openai.InternalServerError) as caught:
        ask(gateway, "error-401", False)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unauthorized"  # type: ignore[attr-defined]
    assert "Incorrect API key" in caught.value.message


def test_an_error_inside_the_stream_is_passed_on_as_the_upstream_sent_it(
    upstream: ScriptedUpstream, gateway: str
) -> None:
    for base in (upstream.url, gateway):
        with pytest.raises(openai.APIError, match="the model crashed"):
            ask(base, "error-event", True)
    response = httpx.post(
        gateway + "v1/chat/completions",
        json={"model": "error-event", "messages": HI, "stream": True},
        verify=SSL_CONTEXT,
    )
    events = [block.removeprefix("data: ") for block in response.text.split("\n\n") if block]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "model_crashed"
    assert json.loads(events[-3])["choices"][0]["delta"]["content"] == "Hello"


def test_a_stream_cut_short_upstream_ends_in_an_error_never_as_complete(gateway: str) -> None:
    response = httpx.post(
        gateway + "v1/chat/completions",
        json={"model": "cut", "messages": HI, "stream": True},
        verify=SSL_CONTEXT,
    )
    events = [block.removeprefix("data: ") for block in response.text.split("\n\n") if block]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "bad_upstream" and "broke off" in error["message"]
    assert json.loads(events[-3])["choices"][0]["delta"]["content"] == "Hello"
    with pytest.raises(openai.APIError, match="broke off"):
        ask(gateway, "cut", True)


def test_the_model_is_the_gateways_only_where_it_says_so(upstream: ScriptedUpstream) -> None:
    config = ServerConfig(
        backend="openai", upstream=upstream.url + "v1", model_aliases=("fast=tools", "plain=text")
    )
    with serve(create_app(config)) as base:
        through = ask(base, "fast", False)
        sent = upstream.chat_requests()[-1]
        assert sent.json()["model"] == "tools"
        assert through["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
        ask(base, "reasoning", False)  # no alias: the client's own model, its bytes untouched
        assert upstream.chat_requests()[-1].json()["model"] == "reasoning"
