"""ChatGetGpt with tools, for real: bind_tools, a whole tool round trip, with_structured_output
and a reasoning model, through a getgpt server whose openai backend forwards to a scripted
OpenAI-compatible upstream that answers with tool calls (the echo cannot decide to call one).

The upstream records every request, so each test also checks what went over the GetGpt protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import create_model
from typing_extensions import TypedDict

from getgpt.integrations.langchain import ChatGetGpt

from ..support.openai_upstream import ScriptedUpstream

QUESTION = "What is the weather in Oslo, and the time there?"
WANTED = [("get_weather", {"city": "Oslo", "unit": "c"}), ("get_time", {"tz": "Europe/Oslo"})]


@tool
def get_weather(city: str, unit: str = "c") -> str:
    """The weather in a city."""
    return f"12 degrees {unit} in {city}"


@tool
def get_time(tz: str) -> str:
    """The time in a time zone."""
    return f"10:00 in {tz}"


def calls(message: AIMessage) -> list[tuple[str, dict[str, Any]]]:
    return [(call["name"], call["args"]) for call in message.tool_calls]


def sent(upstream: ScriptedUpstream) -> dict[str, Any]:
    """The last chat request the upstream received (the GetGpt request, as the gateway forwarded it)."""
    body: dict[str, Any] = upstream.chat_requests()[-1].json()
    return body


def test_bind_tools_sends_the_tools_and_returns_the_models_tool_calls(
    gateway: str, upstream: ScriptedUpstream
) -> None:
    chat = ChatGetGpt(base_url=gateway, model="tools").bind_tools([get_weather, get_time], tool_choice="any")
    reply = chat.invoke(QUESTION)
    assert calls(reply) == WANTED
    assert [call["id"] for call in reply.tool_calls] == ["call_weather", "call_time"]
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    request = sent(upstream)
    assert [t["function"]["name"] for t in request["tools"]] == ["get_weather", "get_time"]
    assert request["tools"][0]["function"]["parameters"]["properties"]["city"] == {"type": "string"}
    assert request["tool_choice"] == "required"


@pytest.mark.parametrize("asynchronous", [False, True])
def test_streamed_tool_calls_add_up_to_the_same_calls(gateway: str, asynchronous: bool) -> None:
    chat = ChatGetGpt(base_url=gateway, model="tools").bind_tools([get_weather, get_time])

    async def collect() -> list[AIMessageChunk]:
        return [chunk async for chunk in chat.astream(QUESTION)]

    chunks = asyncio.run(collect()) if asynchronous else list(chat.stream(QUESTION))
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert isinstance(whole, AIMessageChunk)
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == WANTED
    assert whole.usage_metadata is not None and whole.usage_metadata["total_tokens"] == 18  # the upstream's


def test_a_tool_round_trip_reaches_the_upstream_as_langchain_wrote_it(
    gateway: str, upstream: ScriptedUpstream
) -> None:
    chat = ChatGetGpt(base_url=gateway, model="tools").bind_tools([get_weather, get_time])
    history: list[Any] = [HumanMessage(QUESTION)]
    first = chat.invoke(history)
    history.append(first)
    for call in first.tool_calls:
        answer = {"get_weather": get_weather, "get_time": get_time}[call["name"]].invoke(call["args"])
        history.append(ToolMessage(answer, tool_call_id=call["id"]))
    second = chat.invoke(history, model="text")  # the upstream's "text" script answers in words
    assert second.content == "Hello, wörld 🙂"
    assert second.tool_calls == []
    messages = sent(upstream)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [c["function"]["name"] for c in messages[1]["tool_calls"]] == ["get_weather", "get_time"]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_weather", "content": "12 degrees c in Oslo"}
    assert messages[3]["tool_call_id"] == "call_time" and messages[3]["content"] == "10:00 in Europe/Oslo"


class Weather(TypedDict):
    city: str
    unit: str


def test_structured_output_by_function_calling_parses_the_forced_tool_call(
    gateway: str, upstream: ScriptedUpstream
) -> None:
    # The scripted model's first call is named get_weather: so are the schemas.
    as_class = create_model("get_weather", city=(str, ...), unit=(str, ...))
    parsed = ChatGetGpt(base_url=gateway, model="tools").with_structured_output(as_class).invoke(QUESTION)
    assert (parsed.city, parsed.unit) == ("Oslo", "c")  # type: ignore[union-attr]
    assert sent(upstream)["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    schema = {"title": "get_weather", "type": "object", "properties": {"city": {"type": "string"}}}
    as_dict = ChatGetGpt(base_url=gateway, model="tools").with_structured_output(schema, include_raw=True)
    result = as_dict.invoke(QUESTION)
    assert result["parsed"] == {"city": "Oslo", "unit": "c"}  # type: ignore[index]
    assert result["parsing_error"] is None  # type: ignore[index]


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_structured_output_by_response_format_sends_it_and_reports_what_did_not_parse(
    gateway: str, upstream: ScriptedUpstream, method: str
) -> None:
    chat = ChatGetGpt(base_url=gateway, model="text")
    result = chat.with_structured_output(Weather, method=method, include_raw=True, strict=True).invoke("hi")  # type: ignore[arg-type]
    response_format = sent(upstream)["response_format"]
    if method == "json_schema":
        assert response_format["type"] == "json_schema"
        assert response_format["json_schema"]["name"] == "Weather"
        assert response_format["json_schema"]["strict"] is True
        assert set(response_format["json_schema"]["schema"]["properties"]) == {"city", "unit"}
    else:
        assert response_format == {"type": "json_object"}
    # The scripted model answers in words, which is no JSON: the raw reply and the error come back.
    assert result["raw"].content == "Hello, wörld 🙂"  # type: ignore[index]
    assert result["parsed"] is None and result["parsing_error"] is not None  # type: ignore[index]


def test_a_reasoning_models_reasoning_comes_with_the_answer(gateway: str) -> None:
    chat = ChatGetGpt(base_url=gateway, model="reasoning")
    reply = chat.invoke("6 times 7?")
    assert (reply.content, reply.additional_kwargs["reasoning_content"]) == ("42", "Thinking...")
    whole = None
    for chunk in chat.stream("6 times 7?"):
        whole = chunk if whole is None else whole + chunk
    assert whole is not None and whole.additional_kwargs["reasoning_content"] == "Thinking..."


def test_content_parts_reach_the_upstream_as_langchain_wrote_them(
    gateway: str, upstream: ScriptedUpstream
) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    message = HumanMessage(content=[{"type": "text", "text": "What is in it?"}, image])
    reply = ChatGetGpt(base_url=gateway, model="text").invoke([message])
    assert reply.content == "Hello, wörld 🙂"
    [sent_message] = sent(upstream)["messages"]
    assert sent_message["content"] == [{"type": "text", "text": "What is in it?"}, image]
