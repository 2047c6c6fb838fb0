"""The reply parser: chat.completion.chunk events into text, state and typed errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from getgpt import IncompleteStream, ProtocolError, RemoteError, Usage
from getgpt.protocol.reply import ReplyParser

from ..support.scripted import chunk, stream_of


def parse(stream: bytes, cuts: list[int] | None = None) -> tuple[list[str], ReplyParser]:
    parser = ReplyParser()
    out: list[str] = []
    start = 0
    for cut in sorted(cuts or []):
        out += parser.feed(stream[start:cut])
        start = cut
    out += parser.feed(stream[start:])
    out += parser.close()
    return out, parser


TRICKY = ["Привет", " 🙂", "data: x", "content", '"quoted"', "back\\slash", "line\nbreak", "\u2028", "tab\t"]


def test_pieces_state_and_tricky_text() -> None:
    pieces, parser = parse(stream_of(TRICKY))
    assert pieces == TRICKY
    assert parser.text == "".join(TRICKY)
    assert parser.finish_reason == "stop" and parser.done


def test_same_pieces_whatever_the_split() -> None:
    stream = stream_of(TRICKY)
    for cut in range(0, len(stream), 7):
        assert parse(stream, [cut])[0] == TRICKY


@given(st.lists(st.text(min_size=1, max_size=8), max_size=30), st.lists(st.integers(0, 5000), max_size=6))
def test_fast_path_agrees_with_full_decode(pieces: list[str], cuts: list[int]) -> None:
    stream = stream_of(pieces)
    got, parser = parse(stream, [c for c in cuts if c <= len(stream)])
    assert got == pieces and parser.text == "".join(pieces)


def test_text_before_a_bad_event_in_the_same_read_is_kept() -> None:
    # Found by the reply fuzz target: the pieces decoded from a read before its bad event were in
    # the error's partial but not in ``text``, so ``text`` depended on where the reads fell.
    parser = ReplyParser()
    with pytest.raises(ProtocolError) as caught:
        parser.feed(chunk("good ") + chunk("text") + b"data: {not json\n\n")
    assert caught.value.partial == parser.text == "good text"


def test_template_is_learned_and_only_trusted_for_plain_strings() -> None:
    parser = ReplyParser()
    assert parser.feed(chunk("abc") + chunk("def")) == ["abc", "def"]
    assert parser._tail > 0  # learned from the first content chunk
    # A chunk of the same shape but with escapes or another shape goes through the full decode.
    assert parser.feed(chunk("\\n\u00e9") + chunk("x", finish="length")) == ["\\n\u00e9", "x"]
    assert parser.finish_reason == "length"


def test_a_tampered_template_does_not_fool_the_fast_path() -> None:
    # The first chunk's delta content is an escape; the literal "a" lives in another field.
    head = b'data: {"choices":[{"delta":{"content":"\\u0061"}}],"x":{"content":"a"}}\n\n'
    later = b'data: {"choices":[{"delta":{"content":"\\u0061"}}],"x":{"content":"zzz"}}\n\n'
    parser = ReplyParser()
    assert parser.feed(head + later) == ["a", "a"]


def test_role_only_first_chunk_and_usage() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    stream = chunk() + chunk("hi") + chunk(finish="stop", usage=usage) + b"data: [DONE]\n\n"
    pieces, parser = parse(stream)
    assert pieces == ["hi"]
    assert parser.usage == Usage(3, 2, 5)
    assert parser.reply() == "hi" and parser.reply().finish_reason == "stop"


def test_finish_reason_without_done_is_complete() -> None:
    pieces, parser = parse(stream_of(["a", "b"], done=False))
    assert pieces == ["a", "b"] and parser.finish_reason == "stop"


def test_done_without_finish_reason_is_complete() -> None:
    assert parse(chunk("a") + b"data: [DONE]")[0] == ["a"]


def test_events_after_done_are_ignored() -> None:
    assert parse(chunk("a") + b"data: [DONE]\n\n" + chunk("b"))[0] == ["a"]


def test_cut_short_raises_with_partial_text() -> None:
    stream = stream_of(["Hel", "lo", " there"])
    cut = stream.index(b"there") - 20
    parser = ReplyParser()
    parser.feed(stream[:cut])
    with pytest.raises(IncompleteStream) as caught:
        parser.close()
    assert caught.value.partial == "Hello"


def test_error_event_inside_a_200_stream() -> None:
    error = b'data: {"error": {"message": "model overloaded", "type": "server_error", "code": "busy"}}\n\n'
    parser = ReplyParser()
    with pytest.raises(RemoteError, match="model overloaded") as caught:
        parser.feed(chunk("par") + chunk("tial") + error)
    assert (caught.value.type, caught.value.code, caught.value.partial) == ("server_error", "busy", "partial")


def test_error_as_plain_string() -> None:
    with pytest.raises(RemoteError, match="quota"):
        ReplyParser().feed(b'data: {"error": "quota exceeded"}\n\n')


def test_non_json_event_is_a_protocol_error_with_partial() -> None:
    parser = ReplyParser()
    with pytest.raises(ProtocolError, match="not JSON") as caught:
        parser.feed(chunk("ok") + b"data: <html>\n\n")
    assert caught.value.partial == "ok"


def test_odd_shapes_are_read_leniently() -> None:
    stream = (
        b'data: {"choices": {"not": "a list"}}\n\n'
        b'data: {"choices": [{"delta": {"content": 5}}]}\n\n'
        b'data: {"choices": [{"delta": {"content": "ok"}, "finish_reason": 7}]}\n\n'
        b'data: {"choices": [], "usage": null}\n\n'
        b"data: {}\n\n"
        b"data: \n\n"
        b"data: [DONE]\n\n"
    )
    assert parse(stream)[0] == ["ok"]
    with pytest.raises(ProtocolError, match="not a JSON object"):
        ReplyParser().feed(b"data: [1, 2]\n\n")


def test_a_whole_json_reply() -> None:
    body = json.dumps(
        {
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()
    parser = ReplyParser()
    assert parser.feed_json(body) == ["whole"]
    assert parser.reply().usage == Usage(1, 1, 2)


def test_text_survives_compaction() -> None:
    pieces = [f"{i}," for i in range(10_000)]
    got, parser = parse(stream_of(pieces))
    assert got == pieces and parser.text == "".join(pieces)


def test_multi_line_data_cannot_pose_as_the_template() -> None:
    parser = ReplyParser()
    first = chunk("abc")
    parser.feed(first + first)
    prefix, suffix = parser._prefix, parser._suffix
    # An event whose data has two lines, arranged so a joint-like run sits inside it.
    odd = b"data: " + suffix + b"\ndata: " + prefix + b"zz" + suffix + b"\n\n"
    expected = ReplyParser()
    expected.feed(first + first)
    with pytest.raises(Exception) as caught:
        expected.feed(odd)
    with pytest.raises(type(caught.value)):
        parser.feed(first + odd + first)


def event(value: object) -> bytes:
    return b"data: " + json.dumps(value).encode() + b"\n\n"


def test_the_template_never_hides_a_constant_reasoning_or_another_choice() -> None:
    # A chunk with content and the same reasoning text each time: if the fast path learned it as a
    # template, every later event's reasoning would vanish. Likewise choice 1's text is not choice 0's.
    both = [event({"choices": [{"index": 0, "delta": {"reasoning": "r", "content": c}}]}) for c in "abcdef"]
    other = [event({"choices": [{"index": 1, "delta": {"content": c}}]}) for c in "uvwxyz"]
    parser = ReplyParser()
    pieces = parser.feed(b"".join(both) + b"".join(other) + b"data: [DONE]\n\n")
    assert pieces == list("abcdef")
    assert parser.reasoning == "rrrrrr"
    assert [str(choice) for choice in parser.choices()] == ["abcdef", "uvwxyz"]


def test_tool_call_fragments_without_an_index_continue_the_last_call() -> None:
    parser = ReplyParser()
    fragments = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x"'}},
        {"function": {"arguments": ": 1}"}},
        {"id": "b", "function": {"name": "g", "arguments": "{}"}},
    ]
    for fragment in fragments:
        parser.feed(event({"choices": [{"delta": {"tool_calls": [fragment]}}]}))
    parser.feed(event({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}))
    assert parser.tool_calls == [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]


def test_odd_typed_choices_keep_what_can_be_read() -> None:
    parser = ReplyParser()
    odd = {
        "choices": [
            {"index": "zero", "delta": {"content": "kept", "reasoning_content": 5, "tool_calls": "no"}},
            {"index": 1, "delta": {"content": "other"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": "many"},
    }
    assert parser.feed(event(odd)) == ["kept"]
    assert parser.reasoning == "" and parser.tool_calls == [] and parser.usage is None
    assert [str(c) for c in parser.choices()] == ["kept", "other"]
    assert parser.choices()[1].finish_reason == "stop"
