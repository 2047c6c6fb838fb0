"""The event relay: an upstream's events passed on untouched, whatever the reads, and what matters seen."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from getgpt.protocol.reply import ReplyParser
from getgpt.protocol.sse import SSEDecoder
from getgpt.server.api_error import ApiError
from getgpt.server.upstreams.relay import EventRelay, completion_from_events, events_from_completion

from ..support.openai_upstream import completion_of, script_events


def events_of(name: str, usage: bool = False, spaced: bool = False) -> list[bytes]:
    separators = (", ", ": ") if spaced else (",", ":")
    return [json.dumps(chunk, separators=separators).encode() for chunk in script_events(name, name, usage)]


def stream_of(events: list[bytes], line_end: bytes = b"\n", done: bool = True) -> bytes:
    body = b"".join(b"data: " + event + line_end * 2 for event in events)
    return body + (b"data: [DONE]" + line_end * 2 if done else b"")


def relay_all(body: bytes, cuts: list[int], **options: bool) -> tuple[list[bytes], EventRelay]:
    relay = EventRelay(**options)
    out = b""
    start = 0
    for cut in sorted(cuts):
        out += relay.feed(body[start:cut])
        start = cut
    out += relay.feed(body[start:])
    out += relay.close()
    return SSEDecoder().decode(out), relay


cuts = st.lists(st.integers(0, 4000), max_size=8)


@settings(deadline=None)  # a shared, loaded machine: no per-example time limit
@given(cuts, st.sampled_from(["tools", "reasoning", "logprobs", "n2", "refusal"]), st.booleans())
def test_every_event_goes_on_untouched_whatever_the_reads(cut: list[int], name: str, spaced: bool) -> None:
    events = events_of(name, spaced=spaced)
    out, relay = relay_all(stream_of(events), cut)
    assert out == events  # the upstream's own bytes, [DONE] held back for the server to write
    assert relay.done and relay.finished and relay.error is None


@settings(deadline=None)  # a shared, loaded machine: no per-example time limit
@given(cuts, st.sampled_from([b"\r\n", b"\r"]))
def test_other_line_ends_are_read_and_the_events_framed_anew(cut: list[int], line_end: bytes) -> None:
    events = events_of("tools")
    out, relay = relay_all(b"\xef\xbb\xbf" + stream_of(events, line_end), cut)
    assert out == events and relay.done


@settings(deadline=None)  # a shared, loaded machine: no per-example time limit
@given(cuts)
def test_the_usage_chunk_the_server_asked_for_is_counted_and_dropped(cut: list[int]) -> None:
    events = events_of("text", usage=True)
    out, relay = relay_all(stream_of(events), cut, strip_usage=True)
    assert out == events[:-1]
    assert relay.usage is not None and relay.usage.total_tokens == 18
    kept, _ = relay_all(stream_of(events), cut)
    assert kept == events


@settings(deadline=None)  # a shared, loaded machine: no per-example time limit
@given(cuts)
def test_a_stream_cut_short_is_an_error_not_an_end(cut: list[int]) -> None:
    events = events_of("text")[:2]  # no finish reason, no [DONE]
    out, relay = relay_all(stream_of(events, done=False), cut)
    assert out == events
    assert relay.error is not None and relay.error.code == "bad_upstream"


def test_an_error_event_ends_the_relay_and_is_passed_on_as_sent() -> None:
    error = b'{"error": {"message": "boom", "type": "server_error", "code": "x"}}'
    relay = EventRelay()
    out = relay.feed(stream_of([events_of("text")[1], error, events_of("text")[2]], done=False))
    assert SSEDecoder().decode(out) == [events_of("text")[1]]
    assert relay.error is not None and relay.error.body == error and relay.error.code == "x"
    assert relay.feed(b"data: {}\n\n") == b""


def test_a_finish_reason_without_done_is_an_end_and_what_follows_done_is_dropped() -> None:
    events = events_of("text")
    out, relay = relay_all(stream_of(events, done=False), [])
    assert out == events and relay.finished and not relay.done and relay.error is None
    out, relay = relay_all(stream_of(events) + b'data: {"late": 1}\n\n', [])
    assert out == events


def test_an_event_that_is_not_json_where_it_matters_is_a_broken_upstream() -> None:
    with pytest.raises(ApiError) as caught:
        EventRelay().feed(b'data: {"finish_reason": "stop", oops\n\n')
    assert caught.value.code == "bad_upstream"


def test_an_endless_event_is_refused() -> None:
    relay = EventRelay(max_event_size=1000)
    with pytest.raises(ApiError, match="larger than 1000"):
        relay.feed(b"data: " + b"x" * 2000)


def test_a_whole_reply_and_a_stream_reshape_into_each_other() -> None:
    parser = ReplyParser()
    parser.feed(stream_of(events_of("tools", usage=True)))
    whole = json.loads(completion_from_events(parser, "tools"))
    expected = completion_of("tools", "tools")
    assert whole["choices"][0]["message"]["tool_calls"] == expected["choices"][0]["message"]["tool_calls"]
    assert whole["choices"][0]["finish_reason"] == "tool_calls" and whole["usage"]["total_tokens"] == 18
    again = ReplyParser()
    again.feed(events_from_completion(json.dumps(expected).encode()) + b"data: [DONE]\n\n")
    assert again.tool_calls == expected["choices"][0]["message"]["tool_calls"]
    assert again.finish_reason == "tool_calls"


def test_an_event_of_several_data_lines_keeps_its_line_ends() -> None:
    # Found by the relay's fuzz target: re-framed as one `data:` line, the LF that joined the
    # lines ended the event early and the rest of its data was lost.
    pretty = b'data: {"choices": [{"index": 0,\ndata:  "delta": {}, "finish_reason": "stop"}]}\n\n'
    relay = EventRelay()
    out = relay.feed(stream_of(events_of("text")[:2], done=False) + pretty) + relay.close()
    decoded = SSEDecoder().decode(out)
    assert decoded == [
        *events_of("text")[:2],
        b'{"choices": [{"index": 0,\n "delta": {}, "finish_reason": "stop"}]}',
    ]
    assert relay.finished and relay.error is None


def test_a_byte_order_mark_after_the_start_is_no_mark_to_drop() -> None:
    # Found by the relay's fuzz target: the decoder, first used after events had gone on as they
    # came, took a mark after them for the stream's own and read the line it opened as data.
    first, second = events_of("text")[1], events_of("text")[2]
    body = b"data: " + first + b"\n\n" + b"\xef\xbb\xbfdata: " + second + b"\n\n"
    relay = EventRelay()
    out = relay.feed(body[: len(first) + 8]) + relay.feed(body[len(first) + 8 :]) + relay.close()
    assert SSEDecoder().decode(out) == SSEDecoder().decode(body) == [first]


def test_done_followed_by_another_line_of_its_event_still_ends_the_stream() -> None:
    # Found by the relay's fuzz target: the byte-level pass looked for [DONE] only in a read's last
    # 16 bytes, so "data: [DONE]" with a line after it in the same event (an id:, say) went on as
    # content, and the relay read on past the end of the stream.
    events = events_of("text")
    before = stream_of(events, done=False)
    body = before + b"data: [DONE]\nid: 7\n\n" + b'data: {"late": 1}\n\n'
    for cuts in ([], [len(before)]):  # [DONE]'s event in a read with the finish, and in one alone
        out, relay = relay_all(body, cuts)
        assert out == events, cuts
        assert relay.done and relay.error is None


def test_a_short_reply_in_one_read_goes_on_as_framed_up_to_its_end() -> None:
    # Only the finish and [DONE] are looked into: the content events before them keep the
    # upstream's own framing ("data:" without a space here) byte for byte.
    events = events_of("text")
    content = b"".join(b"data:" + event + b"\n\n" for event in events[:-1])
    body = content + b"data:" + events[-1] + b"\n\ndata: [DONE]\n\n"
    relay = EventRelay()
    out = relay.feed(body) + relay.close()
    assert out.startswith(content)
    assert SSEDecoder().decode(out) == events and relay.finished and relay.done


@settings(deadline=None)  # a shared, loaded machine: no per-example time limit
@given(cuts)
def test_a_finish_reason_that_is_not_a_string_is_seen_whatever_the_reads(cut: list[int]) -> None:
    events = [*events_of("text")[:-1], b'{"choices": [{"index": 0, "delta": {}, "finish_reason": 1}]}']
    out, relay = relay_all(stream_of(events, done=False), cut)
    assert out == events and relay.finished and relay.error is None
