"""ReplyParser's batch path when a read mixes template events with events that need a full decode
(escapes, quotes, empty text, non-ASCII): the same pieces as one event at a time, whatever the split,
and an error part-way through a batch carries exactly the text before it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from getgpt import ProtocolError, RemoteError
from getgpt.protocol.reply import ReplyParser

HEAD = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'


def event(content: str) -> bytes:
    body = HEAD + '"delta":{"content":' + json.dumps(content) + '},"finish_reason":null}]}'
    return b"data: " + body.encode() + b"\n\n"


END = b"data: " + (HEAD + '"delta":{},"finish_reason":"stop"}]}').encode() + b"\n\n" + b"data: [DONE]\n\n"

plain = st.sampled_from([" the", " of", "ing", ",", " model", "x"])
odd = st.one_of(
    st.sampled_from(["\n", '"', "\\", "", " café", "🙂", "\t", "a\u2028b"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=6),
)
# Mostly plain, as a reply is: a read then holds a few odd events among many template ones.
texts = st.lists(st.one_of(*[plain] * 12, odd), min_size=1, max_size=300)


def pieces_of(stream: bytes, cuts: list[int]) -> tuple[list[str], str]:
    parser = ReplyParser()
    out: list[str] = []
    last = 0
    for cut in [*sorted(c for c in cuts if c <= len(stream)), len(stream)]:
        out += parser.feed(stream[last:cut])
        last = cut
    out += parser.close()
    return out, parser.text


@settings(max_examples=150, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=40_000), max_size=6))
def test_mixed_reads_give_the_same_pieces(contents: list[str], cuts: list[int]) -> None:
    warm_up = event("warm") + event("up")  # a read of its own: the template is learnt from it
    stream = warm_up + b"".join(event(c) for c in contents) + END
    one_by_one, _ = pieces_of(stream, list(range(0, len(stream), 7)))
    at_once, text = pieces_of(stream, [len(warm_up), *cuts])
    expected = [c for c in ["warm", "up", *contents] if c]
    assert at_once == one_by_one == expected
    assert text == "".join(expected)


def test_bad_utf8_inside_a_batch_keeps_the_text_before_it() -> None:
    good = [event(f"w{i}") for i in range(50)]
    good[10] = event('q"')  # an event decoded alone, so the read goes through in runs
    bad = event("zz").replace(b'"zz"', b'"\xff\xfe"')
    parser = ReplyParser()
    parser.feed(b"".join(good[:3]))  # the template is learnt
    with pytest.raises(ProtocolError) as caught:
        parser.feed(b"".join([*good[3:], bad, event("after")]))
    assert caught.value.partial == "".join(
        ["w0", "w1", "w2", *(f"w{i}" for i in range(3, 10)), 'q"', *(f"w{i}" for i in range(11, 50))]
    )


def test_error_event_inside_a_batch_keeps_the_text_before_it() -> None:
    before = [event(f"w{i}") for i in range(20)] + [event('say "hi"')] + [event(f"v{i}") for i in range(20)]
    error = b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    parser = ReplyParser()
    parser.feed(b"".join(before[:3]))  # the template is learnt
    with pytest.raises(RemoteError) as caught:
        parser.feed(b"".join([*before[3:], error, event("lost")]))
    expected = [f"w{i}" for i in range(20)] + ['say "hi"'] + [f"v{i}" for i in range(20)]
    assert caught.value.partial == "".join(expected)
