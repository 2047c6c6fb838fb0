"""Property tests: the envelope, the SSE decoder and the reply parser under arbitrary input.

Whatever the bytes and however a transport splits them into reads, the parsers may only return
or raise one of getgpt's own errors -- never an IndexError, a UnicodeDecodeError or a
RecursionError that a caller could not have expected. Well-formed streams must give the same
text whatever the split.

Example counts are bounded so the file stays well under 30 s on a slow machine; the atheris
targets under fuzz/ are the long-running counterpart.
"""

from __future__ import annotations

import contextlib
import json
import secrets

import pytest
from fuzz._common import reply_outcome, split_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import getgpt
from getgpt.protocol import envelope
from getgpt.protocol.errors import GetGptError, ProtocolError, SignatureError, ValidationError
from getgpt.protocol.reply import ReplyParser
from getgpt.protocol.request import build_request, encode, parse_request
from getgpt.protocol.sse import SSEDecoder

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAVY = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEX = "0123456789abcdefABCDEF"

# Text a model might produce, weighted toward what breaks naive parsers: line separators that
# str.splitlines honours, SSE field names, JSON quoting, Cyrillic and astral-plane emoji.
TRICKY = st.sampled_from(
    [
        "\u2028",
        "\u2029",
        "\x85",
        "\x0b",
        "\x0c",
        "\r",
        "\n",
        "\r\n",
        "data: ",
        "data:",
        "[DONE]",
        '"content":"',
        '"',
        "\\",
        "\\u0000",
        "\x00",
        ": comment",
        "Привет",
        "мир",
        "😀",
        "👩\u200d💻",
        "\ufeff",
        "}",
        "{",
    ]
)
TEXT = st.lists(st.one_of(st.text(max_size=12), TRICKY), max_size=6).map("".join)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length), in order."""
    return split_at(data, (c % (len(data) + 1) for c in cuts))


CUTS = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=20)


# --------------------------------------------------------------------------- envelope


@FAST
@given(st.text())
def test_envelope_round_trips_any_text(text: str) -> None:
    assert envelope.decrypt(envelope.encrypt(text)) == text


@FAST
@given(TEXT)
def test_envelope_round_trips_tricky_text(text: str) -> None:
    signature = envelope.encrypt(text)
    assert signature.isascii() and all(c in HEX for c in signature)
    assert envelope.decrypt(signature) == text


def _decrypt_or_signature_error(signature: str) -> None:
    try:
        result = envelope.decrypt(signature)
    except SignatureError:
        return
    assert isinstance(result, str)


@FAST
@given(st.text(max_size=200))
def test_decrypt_any_string_raises_only_signature_error(signature: str) -> None:
    _decrypt_or_signature_error(signature)


@FAST
@given(st.text(alphabet=HEX, max_size=160))
def test_decrypt_any_hex_string_raises_only_signature_error(signature: str) -> None:
    _decrypt_or_signature_error(signature)


@FAST
@given(
    st.binary(max_size=80),
    st.text(alphabet=HEX, min_size=16, max_size=16),
    st.text(alphabet=HEX, min_size=16, max_size=16),
)
def test_decrypt_of_any_sealed_bytes(plaintext: bytes, key: str, iv: str) -> None:
    # Any bytes sealed under any hex key: valid UTF-8 comes back intact, the rest is refused.
    signature = envelope.seal(plaintext, key, iv)
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(SignatureError):
            envelope.decrypt(signature)
    else:
        assert envelope.decrypt(signature) == text


@FAST
@given(TEXT, st.data())
def test_decrypt_of_mutated_signature(text: str, data: st.DataObject) -> None:
    signature = envelope.encrypt(text)
    mutation = data.draw(st.sampled_from(["flip", "cut", "grow", "swap-tail", "non-hex"]))
    index = data.draw(st.integers(0, len(signature) - 1))
    if mutation == "flip":
        new = HEX[(HEX.index(signature[index]) + data.draw(st.integers(1, 15))) % 16]
        mutated = signature[:index] + new + signature[index + 1 :]
    elif mutation == "cut":
        mutated = signature[:index]
    elif mutation == "grow":
        mutated = signature + data.draw(st.text(alphabet=HEX, min_size=1, max_size=40))
    elif mutation == "swap-tail":
        mutated = signature[:-32] + secrets.token_hex(16)
    else:
        mutated = signature[:index] + data.draw(st.characters(exclude_characters=HEX)) + signature[index:]
    _decrypt_or_signature_error(mutated)


@pytest.mark.parametrize("value", [None, b"00" * 40, 12, ["a"]])
def test_decrypt_of_non_string_is_signature_error(value: object) -> None:
    with pytest.raises(SignatureError):
        envelope.decrypt(value)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- SSE and reply, any bytes

# Bytes biased toward the grammar, so the parsers get past their first checks.
SSE_TOKENS = st.sampled_from(
    [
        b"data: ",
        b"data:",
        b"data",
        b": ",
        b"event: x",
        b"id: 1",
        b"retry: 5",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"[DONE]",
        b"{",
        b"}",
        b"[",
        b"]",
        b'"',
        b'{"choices":[{"delta":{"content":"',
        b'"}}]}',
        b'"},"finish_reason":"stop"}]}',
        b'{"error":{"message":"x"}}',
        b'{"usage":{"prompt_tokens":1}}',
        b"\xef\xbb\xbf",
        b"\xd0",
        b"\x9f",
        b"\xff",
        b"\\u",
        b"null",
    ]
)
ANY_BYTES = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(SSE_TOKENS, st.binary(max_size=8)), max_size=40).map(b"".join),
)


def _drive_parser(data: bytes, cuts: list[int], max_event_size: int) -> None:
    parser = ReplyParser(max_event_size)
    try:
        for chunk in splits(data, cuts):
            pieces = parser.feed(chunk)
            assert all(isinstance(p, str) for p in pieces)
        parser.close()
    except GetGptError as exc:
        assert isinstance(exc.partial, str)
    assert isinstance(parser.text, str)


@HEAVY
@given(ANY_BYTES, CUTS, st.sampled_from([16, 64, 1 << 20]))
def test_reply_parser_any_bytes_any_split_raises_only_getgpt_errors(
    data: bytes, cuts: list[int], max_event_size: int
) -> None:
    _drive_parser(data, cuts, max_event_size)


@HEAVY
@given(ANY_BYTES, CUTS, st.sampled_from([16, 64, 1 << 20]))
def test_sse_decoder_any_bytes_any_split_raises_only_protocol_errors(
    data: bytes, cuts: list[int], max_event_size: int
) -> None:
    decoder = SSEDecoder(max_event_size)
    try:
        for chunk in splits(data, cuts):
            assert all(isinstance(e, bytes) for e in decoder.decode(chunk))
        assert all(isinstance(e, bytes) for e in decoder.flush())
    except ProtocolError:
        pass


def _decode_all(parts: list[bytes]) -> list[bytes]:
    decoder = SSEDecoder()
    events: list[bytes] = []
    for part in parts:
        events += decoder.decode(part)
    return events + decoder.flush()


@HEAVY
@given(ANY_BYTES, CUTS)
def test_sse_decoder_any_bytes_same_events_whatever_the_split(data: bytes, cuts: list[int]) -> None:
    # Holds for garbage too: how a transport splits the bytes never changes what they mean.
    assert _decode_all(splits(data, cuts)) == _decode_all([data])


@HEAVY
@given(ANY_BYTES, CUTS)
def test_reply_parser_any_bytes_same_outcome_whatever_the_split(data: bytes, cuts: list[int]) -> None:
    # Text, finish_reason, usage and the error (type and partial text) all split-invariant,
    # which also checks the learned-template shortcut against the full decode.
    assert reply_outcome(splits(data, cuts)) == reply_outcome([data])


@HEAVY
@given(ANY_BYTES)
def test_reply_parser_feed_json_any_bytes(data: bytes) -> None:
    with contextlib.suppress(GetGptError):
        assert isinstance("".join(ReplyParser().feed_json(data)), str)


@FAST
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_parse_request_any_input_raises_only_validation_error(data: bytes | str) -> None:
    try:
        request = parse_request(data)
    except ValidationError:
        return
    assert request.messages


@FAST
@given(
    st.text(alphabet=st.characters(codec=None), max_size=20), st.sampled_from(["content", "model", "name"])
)
def test_any_python_text_in_a_request_is_encoded_or_refused_as_invalid(text: str, where: str) -> None:
    # Python strings may hold lone surrogates, which no JSON text can carry: the client must refuse
    # them with its own ValidationError before sending, not leak UnicodeEncodeError.
    message = {"role": "user", "content": text if where == "content" else "x"}
    if where == "name":
        message["name"] = text
    params = {"model": text} if where == "model" and text else {}
    try:
        body = encode(build_request([message], **params))
    except ValidationError:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in text) or (where == "model" and len(text) > 256)
        return
    assert parse_request(body).messages[0].role == "user"


def test_a_lone_surrogate_is_refused_before_sending() -> None:
    with getgpt.Client("http://127.0.0.1:9/") as client, pytest.raises(ValidationError, match="surrogate"):
        client.stream([{"role": "user", "content": "half an emoji: \ud83d"}])


# --------------------------------------------------------------------------- well-formed streams

EOLS = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, str, str | None]:
    """A well-formed reply: its bytes, its text and its finish_reason."""
    eol = draw(EOLS)
    texts = draw(st.lists(TEXT, max_size=8))
    ascii_json = draw(st.booleans())
    events: list[str] = []
    if draw(st.booleans()):
        events.append(":" + draw(st.sampled_from(["", " keep-alive", " ping"])))
    if draw(st.booleans()):
        events.append(json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
    for text in texts:
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
        events.append(json.dumps(chunk, ensure_ascii=ascii_json, separators=(",", ":")))
        if draw(st.integers(0, 4)) == 0:
            events.append(": " + draw(st.sampled_from(["ping", "data: not an event"])))
    reason = draw(st.sampled_from(["stop", "length", None]))
    if reason is not None:
        events.append(json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}))
    done = reason is None or draw(st.booleans())
    if done:
        events.append("[DONE]")
    body = ""
    for event in events:
        if event.startswith(":"):
            body += event + eol
        else:
            body += "data: " + event + eol + eol
    return body.encode("utf-8"), "".join(texts), reason


@HEAVY
@given(streams(), CUTS)
def test_well_formed_stream_gives_same_text_whatever_the_split(
    stream: tuple[bytes, str, str | None], cuts: list[int]
) -> None:
    data, text, reason = stream
    parser = ReplyParser()
    pieces: list[str] = []
    for chunk in splits(data, cuts):
        pieces += parser.feed(chunk)
    pieces += parser.close()
    assert "".join(pieces) == text
    assert parser.text == text
    assert parser.finish_reason == reason


@HEAVY
@given(streams(), CUTS)
def test_well_formed_stream_byte_by_byte_equals_one_read(
    stream: tuple[bytes, str, str | None], cuts: list[int]
) -> None:
    data, text, _ = stream
    whole = ReplyParser()
    whole.feed(data)
    whole.close()
    trickle = ReplyParser()
    for i in range(len(data)):
        trickle.feed(data[i : i + 1])
    trickle.close()
    assert whole.text == trickle.text == text


@HEAVY
@given(streams(), CUTS)
def test_truncated_stream_raises_incomplete_with_a_prefix_of_the_text(
    stream: tuple[bytes, str, str | None], cuts: list[int]
) -> None:
    data, text, _ = stream
    cut = (cuts[0] if cuts else len(data) // 2) % (len(data) + 1)
    parser = ReplyParser()
    try:
        for chunk in splits(data[:cut], cuts[1:]):
            parser.feed(chunk)
        parser.close()
    except getgpt.IncompleteStream as exc:
        assert text.startswith(exc.partial)
    else:
        assert text.startswith(parser.text)


# --------------------------------------------------------------------------- regressions


@pytest.mark.parametrize(
    "event",
    [
        b"[" * 5000,
        b'{"choices":[{"delta":' + b"[" * 5000 + b"}]}",
        b'{"error":' + b"[" * 5000 + b"}",
        b'{"choices":' + b'{"a":' * 3000 + b"}",
        b'"\x80"',
        b'{"choices":[{"delta":{"content":"\xff"}}]}',
        b'{"error":{"message":"\xc3"}}',
    ],
    ids=[
        "deep-array",
        "deep-in-delta",
        "deep-in-error",
        "deep-objects",
        "utf8-bare",
        "utf8-content",
        "utf8-error",
    ],
)
def test_hostile_json_in_an_event_is_a_protocol_error(event: bytes) -> None:
    # msgspec raises RecursionError past ~1000 levels of nesting, and UnicodeDecodeError (not one
    # of its own errors) for bad UTF-8 in a string; a hostile server must leak neither.
    parser = ReplyParser()
    parser.feed(b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\n')
    with pytest.raises(ProtocolError) as caught:
        parser.feed(b"data: " + event + b"\n\n")
    assert caught.value.partial == "ok"
    with pytest.raises(ProtocolError):
        ReplyParser().feed_json(event)


@pytest.mark.parametrize(
    "body",
    [b'{"messages":[{"role":"user","content":"\xff"}]}', b'{"model":"\xc3"}', b'{"\xff":1}'],
)
def test_parse_request_of_invalid_utf8_is_a_validation_error(body: bytes) -> None:
    with pytest.raises(ValidationError, match="UTF-8"):
        parse_request(body)
