"""The client's API for tool calls, reasoning, usage and several choices (CONTRACTS B), over real HTTP.

The scripted upstream (tests/support/openai_upstream.py) answers the GetGpt protocol with the
same scripts it answers OpenAI's API with: tool calls whose arguments arrive in fragments split
across HTTP chunks, reasoning deltas, two choices, a usage chunk.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import getgpt
from getgpt.protocol import envelope

from ..support.openai_upstream import USAGE, ScriptedUpstream, completion_of

HI = [{"role": "user", "content": "What is the weather in Oslo, and the time?"}]
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
CALLS = completion_of("tools", "tools")["choices"][0]["message"]["tool_calls"]


def sent(upstream: ScriptedUpstream) -> dict[str, Any]:
    """The last GetGpt request the upstream received, out of its envelope."""
    request = upstream.received[-1]
    assert request.path == "/api/chat/stream"
    return dict(json.loads(envelope.decrypt(request.json()["signature"])))


def test_tool_calls_split_across_chunks_arrive_whole(upstream: ScriptedUpstream, via: Any) -> None:
    with via(getgpt.Client, upstream.url) as client:
        with client.stream(HI, model="tools", tools=TOOLS, tool_choice="auto") as chat:
            pieces = list(chat)
        assert pieces == []
        assert chat.tool_calls == CALLS
        assert chat.tool_calls[0]["function"]["arguments"] == '{"city": "Oslo", "unit": "c"}'
        assert chat.finish_reason == "tool_calls"
        assert chat.reasoning == ""
    request = sent(upstream)
    assert list(request)[9:] == ["tools", "tool_choice"]
    assert request["tools"] == TOOLS and request["model"] == "tools"


def test_an_agents_second_turn_is_sent_as_given(upstream: ScriptedUpstream, via: Any) -> None:
    turns = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": CALLS},
        {"role": "tool", "tool_call_id": "call_weather", "content": "-3 C"},
        {"role": "tool", "tool_call_id": "call_time", "content": "09:15"},
    ]
    with via(getgpt.Client, upstream.url) as client:
        reply = client.complete(turns, model="text", tools=TOOLS)
    assert reply == "Hello, wörld 🙂" and reply.tool_calls == []
    assert sent(upstream)["messages"] == turns


def test_reasoning_and_usage_come_with_the_text(upstream: ScriptedUpstream, via: Any) -> None:
    with via(getgpt.Client, upstream.url) as client:
        with client.stream(HI, model="reasoning", stream_options={"include_usage": True}) as chat:
            assert list(chat) == ["42"]
        assert chat.reasoning == "Thinking..."
        assert chat.usage is not None
        assert (chat.usage.prompt_tokens, chat.usage.completion_tokens, chat.usage.total_tokens) == (
            11,
            7,
            18,
        )
        assert chat.usage.completion_tokens_details == USAGE["completion_tokens_details"]
        reply = chat.reply()
    assert (reply, reply.reasoning, reply.finish_reason) == ("42", "Thinking...", "stop")


def test_a_whole_reply_carries_its_tool_calls_and_reasoning(upstream: ScriptedUpstream, via: Any) -> None:
    with via(getgpt.Client, upstream.url) as client:
        calls = client.complete(HI, model="tools", tools=TOOLS, stream=False)
        thought = client.complete(HI, model="reasoning", stream=False)
    assert calls == "" and calls.tool_calls == CALLS and calls.finish_reason == "tool_calls"
    assert thought == "42" and thought.reasoning == "Thinking..."
    assert thought.usage is not None and thought.usage.total_tokens == 18


def test_several_choices_are_all_kept(upstream: ScriptedUpstream, via: Any) -> None:
    with via(getgpt.Client, upstream.url) as client:
        with client.stream(HI, model="n2", n=2) as chat:
            assert "".join(chat) == "first"
        first, second = chat.choices
    assert (first, first.finish_reason) == ("first", "stop")
    assert (second, second.finish_reason) == ("second choice", "length")
    assert sent(upstream)["n"] == 2


def test_async_client_gives_the_same(upstream: ScriptedUpstream, via: Any) -> None:
    async def main() -> tuple[list[str], list[dict[str, Any]], str | None, getgpt.Reply]:
        async with via(getgpt.AsyncClient, upstream.url) as client:
            async with client.stream(HI, model="tools", tools=TOOLS) as chat:
                pieces = [piece async for piece in chat]
            whole = await client.complete(HI, model="reasoning", stream=False)
            return pieces, chat.tool_calls, chat.finish_reason, whole

    pieces, calls, reason, whole = asyncio.run(main())
    assert (pieces, calls, reason) == ([], CALLS, "tool_calls")
    assert whole.reasoning == "Thinking..."


def test_a_server_extension_travels_in_extra_body(upstream: ScriptedUpstream) -> None:
    with getgpt.Client(upstream.url) as client:
        client.complete(HI, model="text", seed=3, extra_body={"top_k": 40})
    request = sent(upstream)
    assert list(request.items())[9:] == [("seed", 3), ("top_k", 40)]
