"""The request model: wire format, defaults and validation."""

from __future__ import annotations

import json
import uuid

import pytest

from getgpt import ValidationError
from getgpt.protocol.request import Message, build_request, encode, parse_request

HI = [{"role": "user", "content": "Hi"}]


def test_defaults_and_field_order_match_the_protocol() -> None:
    wire = json.loads(encode(build_request(HI)))
    assert list(wire) == [
        "messages",
        "frequency_penalty",
        "max_tokens",
        "model",
        "presence_penalty",
        "temperature",
        "top_p",
        "stream",
        "uuid",
    ]
    assert wire["messages"] == HI
    assert (wire["frequency_penalty"], wire["max_tokens"], wire["model"]) == (0, 4000, "gpt-3.5-turbo")
    assert (wire["presence_penalty"], wire["temperature"], wire["top_p"], wire["stream"]) == (0, 1, 1, True)
    assert uuid.UUID(wire["uuid"]).version == 4


def test_integer_defaults_stay_integers_on_the_wire() -> None:
    raw = encode(build_request(HI))
    assert b'"temperature":1,' in raw and b'"top_p":1,' in raw and b'"frequency_penalty":0,' in raw


def test_every_request_gets_a_fresh_uuid() -> None:
    assert build_request(HI).uuid != build_request(HI).uuid


def test_callers_model_and_stream_are_honoured() -> None:
    request = build_request(HI, model="llama3", stream=False, temperature=0.2, max_tokens=5)
    assert (request.model, request.stream, request.temperature, request.max_tokens) == (
        "llama3",
        False,
        0.2,
        5,
    )


def test_none_means_default() -> None:
    assert build_request(HI, temperature=None).temperature == 1


def test_message_structs_and_names_are_accepted() -> None:
    request = build_request([Message("system", "Be brief"), {"role": "user", "content": "x", "name": "ann"}])
    wire = json.loads(encode(request))
    assert wire["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "x", "name": "ann"},
    ]


@pytest.mark.parametrize(
    ("messages", "params", "where"),
    [
        ([{"role": "bot", "content": "x"}], {}, "request.messages[0].role"),
        ([{"role": "user", "content": 5}], {}, "request.messages[0].content"),
        ([{"role": "user"}], {}, "content"),
        ([], {}, "request.messages"),
        (HI, {"temperature": 2.5}, "request.temperature"),
        (HI, {"temperature": -0.1}, "request.temperature"),
        (HI, {"top_p": 1.01}, "request.top_p"),
        (HI, {"frequency_penalty": -3}, "request.frequency_penalty"),
        (HI, {"presence_penalty": 2.5}, "request.presence_penalty"),
        (HI, {"max_tokens": 0}, "request.max_tokens"),
        (HI, {"max_tokens": 1.5}, "request.max_tokens"),
        (HI, {"model": ""}, "request.model"),
        (HI, {"stream": "yes"}, "request.stream"),
        ([{"role": "user", "content": "x", "extra": 1}], {}, "extra"),
    ],
)
def test_invalid_requests_say_what_and_where(messages: list, params: dict, where: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match="invalid chat request") as caught:
        build_request(messages, **params)
    assert where in str(caught.value)


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ValidationError, match=r"unknown parameter.*temprature.*extra_body"):
        build_request(HI, temprature=1)


@pytest.mark.parametrize("messages", ["hello", b"hello", 42, None])
def test_messages_must_be_a_list(messages: object) -> None:
    with pytest.raises(ValidationError, match="messages must be a list"):
        build_request(messages)  # type: ignore[arg-type]


def test_parse_request_round_trip_and_errors() -> None:
    request = build_request(HI, temperature=0.5)
    assert parse_request(encode(request)) == request
    with pytest.raises(ValidationError, match="not valid JSON"):
        parse_request(b"{nope")
    with pytest.raises(ValidationError, match="Expected `object`"):
        parse_request(b"[1, 2]")
    with pytest.raises(ValidationError, match="unknown field `mood`") as caught:
        parse_request(b'{"messages":[{"role":"user","content":"x","mood":"odd"}],"colour":"red"}')
    assert caught.value.param == "messages[0]"
    with pytest.raises(ValidationError, match="temperature") as caught:
        parse_request(b'{"messages":[{"role":"user","content":"x"}],"temperature":7,"colour":"red"}')
    assert caught.value.param == "temperature"


TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
AGENT_TURNS = [
    {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"c":"Oslo"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
]


def test_openai_parameters_follow_the_nine_fields_in_the_order_given() -> None:
    request = build_request(
        AGENT_TURNS, tools=TOOLS, temperature=0.5, tool_choice="auto", stop=["\n"], seed=7
    )
    wire = json.loads(encode(request))
    assert list(wire)[:9] == [*json.loads(encode(build_request(HI)))][:9]
    assert list(wire)[9:] == ["tools", "tool_choice", "stop", "seed"]
    assert wire["temperature"] == 0.5 and wire["tools"] == TOOLS and wire["stop"] == ["\n"]
    # The assistant's null content stays null, and nothing the caller left out appears.
    assert wire["messages"] == AGENT_TURNS
    assert parse_request(encode(request)) == request


def test_a_request_with_no_extra_fields_is_exactly_the_seeds_nine() -> None:
    raw = encode(build_request(HI, uuid="u-1"))
    assert raw == (
        b'{"messages":[{"role":"user","content":"Hi"}],"frequency_penalty":0,"max_tokens":4000,'
        b'"model":"gpt-3.5-turbo","presence_penalty":0,"temperature":1,"top_p":1,"stream":true,"uuid":"u-1"}'
    )


def test_extra_body_carries_a_servers_own_fields_and_may_not_repeat_the_nine() -> None:
    request = build_request(HI, n=2, extra_body={"top_k": 40, "min_p": 0.1})
    assert list(json.loads(encode(request)))[9:] == ["n", "top_k", "min_p"]
    with pytest.raises(ValidationError, match="temperature"):
        build_request(HI, extra_body={"temperature": 0.1})


def test_parsing_keeps_unknown_fields_in_order_even_one_named_extra() -> None:
    raw = (
        b'{"messages":[{"role":"user","content":"x"}],"model":"m","extra":{"a":1},"top_k":3,'
        b'"tools":[],"stream":false}'
    )
    request = parse_request(raw)
    assert (request.model, request.stream) == ("m", False)
    assert list(request.extra.items()) == [("extra", {"a": 1}), ("top_k", 3), ("tools", [])]
    again = json.loads(encode(request))
    assert list(again)[9:] == ["extra", "top_k", "tools"]
    assert parse_request(encode(request)) == request


@pytest.mark.parametrize(
    ("message", "needs"),
    [
        ({"role": "user", "content": None}, "content"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ({"role": "assistant", "content": None}, "tool_calls"),
        ({"role": "assistant"}, "tool_calls"),
        ({"role": "user", "content": ["x"]}, "object"),
    ],
)
def test_each_kind_of_message_needs_what_openai_needs(message: dict, needs: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match=needs):
        build_request([message])


def test_a_value_json_cannot_carry_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="JSON cannot carry"):
        encode(build_request(HI, metadata={"when": object()}))
