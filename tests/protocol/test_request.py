"""The request model: wire format, defaults and validation."""

from __future__ import annotations

import json
import uuid

import pytest

from getgpt import ValidationError
from getgpt.request import Message, build_request, encode, parse_request

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
    with pytest.raises(ValidationError, match=r"unknown parameter.*temprature"):
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
    with pytest.raises(ValidationError, match="unknown field `colour`"):
        parse_request(b'{"messages":[{"role":"user","content":"x"}],"colour":"red"}')
    with pytest.raises(ValidationError, match="Expected `object`"):
        parse_request(b"[1, 2]")
