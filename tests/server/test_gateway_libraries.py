"""LangChain and LiteLLM through the gateway: tool calls come back, and a whole tool round trip works.

``ChatOpenAI(...).bind_tools(...)`` and ``litellm.completion(..., tools=...)`` are pointed at
``getgpt serve --backend openai`` in front of the scripted upstream, and at the upstream itself:
the tool calls each library returns must be the same both ways, and the second turn (the
assistant's tool calls and the tool's answers) must reach the upstream as the library wrote it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ..support.lazy import Lazy
from ..support.openai_upstream import ScriptedUpstream
from ..support.sdk import sdk_http_clients

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage
    from langchain_openai import ChatOpenAI

# Imported by the first test that uses them, not at collection (tests/support/lazy.py). LiteLLM
# reads LITELLM_LOCAL_MODEL_COST_MAP, set by conftest.py, when it is imported: no price list fetched.
litellm = Lazy("litellm")
langchain_messages = Lazy("langchain_core.messages")
langchain_openai = Lazy("langchain_openai")

QUESTION = "What is the weather in Oslo, and the time there?"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a time zone",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
]
WANTED = [("get_weather", {"city": "Oslo", "unit": "c"}), ("get_time", {"tz": "Europe/Oslo"})]


def chat_model(base: str, model: str, **options: Any) -> ChatOpenAI:
    model_class: type[ChatOpenAI] = langchain_openai.ChatOpenAI
    return model_class(
        model=model, base_url=base + "v1", api_key="sk-client", max_retries=0, **sdk_http_clients(), **options
    )  # type: ignore[arg-type]


def calls_of(message: AIMessage) -> list[tuple[str, dict[str, Any]]]:
    return [(call["name"], call["args"]) for call in message.tool_calls]


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
def test_langchain_bind_tools_returns_the_tool_calls(
    upstream: ScriptedUpstream, gateway: str, streaming: bool
) -> None:
    results = []
    for base in (upstream.url, gateway):
        bound = chat_model(base, "tools").bind_tools(TOOLS)
        if streaming:
            merged: Any = None
            for chunk in bound.stream(QUESTION):
                merged = chunk if merged is None else merged + chunk
            results.append(merged)
        else:
            results.append(bound.invoke(QUESTION))
    direct, through = results
    assert calls_of(through) == calls_of(direct) == WANTED
    assert [call["id"] for call in through.tool_calls] == ["call_weather", "call_time"]
    assert upstream.chat_requests()[-1].json()["tools"] == TOOLS


def test_langchain_tool_round_trip(upstream: ScriptedUpstream, gateway: str) -> None:
    first = chat_model(gateway, "tools").bind_tools(TOOLS).invoke(QUESTION)
    history = [
        langchain_messages.HumanMessage(QUESTION),
        first,
        langchain_messages.ToolMessage('{"celsius": -3}', tool_call_id=first.tool_calls[0]["id"]),
        langchain_messages.ToolMessage("09:15", tool_call_id=first.tool_calls[1]["id"]),
    ]
    answer = chat_model(gateway, "text").bind_tools(TOOLS).invoke(history)
    assert answer.content == "Hello, wörld 🙂"
    sent = upstream.chat_requests()[-1].json()["messages"]
    assert [message["role"] for message in sent] == ["user", "assistant", "tool", "tool"]
    assert [call["function"]["name"] for call in sent[1]["tool_calls"]] == ["get_weather", "get_time"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo", "unit": "c"}'
    assert [(m["tool_call_id"], m["content"]) for m in sent[2:]] == [
        ("call_weather", '{"celsius": -3}'),
        ("call_time", "09:15"),
    ]


def litellm_calls(base: str, stream: bool, **params: Any) -> Any:
    litellm.telemetry = False
    reply = litellm.completion(
        model="openai/tools",
        api_base=base + "v1",
        api_key="sk-client",
        messages=[{"role": "user", "content": QUESTION}],
        tools=TOOLS,
        stream=stream,
        **params,
    )
    if stream:
        reply = litellm.stream_chunk_builder(list(reply))
    return reply.choices[0].message.tool_calls


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_litellm_completion_with_tools(upstream: ScriptedUpstream, gateway: str, stream: bool) -> None:
    direct = litellm_calls(upstream.url, stream)
    through = litellm_calls(gateway, stream)
    found = [(call.function.name, call.function.arguments) for call in through]
    assert found == [(call.function.name, call.function.arguments) for call in direct]
    assert found == [
        ("get_weather", '{"city": "Oslo", "unit": "c"}'),
        ("get_time", '{"tz": "Europe/Oslo"}'),
    ]


def test_litellm_tool_round_trip(upstream: ScriptedUpstream, gateway: str) -> None:
    calls = litellm_calls(gateway, False)
    messages = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump() for call in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"celsius": -3}'},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "09:15"},
    ]
    reply = litellm.completion(
        model="openai/text", api_base=gateway + "v1", api_key="sk-client", messages=messages, tools=TOOLS
    )
    assert reply.choices[0].message.content == "Hello, wörld 🙂"
    sent = upstream.chat_requests()[-1].json()["messages"]
    assert [message["role"] for message in sent] == ["user", "assistant", "tool", "tool"]
    assert sent[1]["tool_calls"][1]["function"] == {"name": "get_time", "arguments": '{"tz": "Europe/Oslo"}'}
