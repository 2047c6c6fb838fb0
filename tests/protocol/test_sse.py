"""The SSE decoder: line ends, fields, splits and limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from getgpt import ProtocolError
from getgpt.protocol.sse import SSEDecoder


def decode_all(stream: bytes, cuts: list[int] | None = None, **options: int) -> list[bytes]:
    decoder = SSEDecoder(**options)
    out: list[bytes] = []
    start = 0
    for cut in sorted(cuts or []):
        out += decoder.decode(stream[start:cut])
        start = cut
    out += decoder.decode(stream[start:])
    return out + decoder.flush()


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_end(eol: bytes) -> None:
    stream = b"data: one" + eol + eol + b"data: two" + eol + eol
    assert decode_all(stream) == [b"one", b"two"]


def test_crlf_split_across_reads_is_one_line_end() -> None:
    stream = b"data: a\r\n\r\ndata: b\r\n\r\n"
    for cut in range(len(stream) + 1):
        assert decode_all(stream, [cut]) == [b"a", b"b"], cut


def test_a_read_of_one_lf_after_a_cr_ends_the_pending_crlf() -> None:
    # Found by the sse fuzz target: reads "...\r", "\n", "\n..." ate both LFs, because the CR's
    # pending LF stayed pending after the read that completed it, and the event never ended.
    decoder = SSEDecoder()
    reads = [b"data: a\r", b"\n", b"\ndata: b\n\n"]
    assert [event for read in reads for event in decoder.decode(read)] == [b"a", b"b"]


def test_unicode_line_separators_are_not_line_ends() -> None:
    text = "x\u2028y\u2029z\x85w\x0bv\x0cu".encode()
    assert decode_all(b"data: " + text + b"\n\n") == [text]


def test_multibyte_utf8_split_across_reads() -> None:
    stream = "data: Привет 🙂\n\n".encode()
    for cut in range(len(stream) + 1):
        assert [d.decode() for d in decode_all(stream, [cut])] == ["Привет 🙂"]


def test_comments_fields_and_multiline_data() -> None:
    stream = (
        b": keep-alive\n\n"
        b"event: message\nid: 7\nretry: 1000\ndata: first\ndata: second\n\n"
        b"data:no-space\n\n"
        b"data\n\n"
        b"unknown: field\n\n"
        b"data:  two spaces\n\n"
    )
    assert decode_all(stream) == [b"first\nsecond", b"no-space", b"", b" two spaces"]


def test_done_without_trailing_blank_line() -> None:
    assert decode_all(b"data: x\n\ndata: [DONE]") == [b"x", b"[DONE]"]
    assert decode_all(b"data: x\n\ndata: [DONE]\n") == [b"x", b"[DONE]"]


def test_byte_order_mark_at_start() -> None:
    stream = b"\xef\xbb\xbfdata: a\n\n"
    for cut in range(len(stream) + 1):
        assert decode_all(stream, [cut]) == [b"a"]


def test_byte_order_mark_split_across_the_first_reads() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"\xef") == [] and decoder.decode(b"\xbb") == []
    assert decoder.decode(b"\xbfdata: x\n\n") == [b"x"]


def test_byte_order_mark_counts_only_at_the_start_of_the_stream() -> None:
    # Found by the sse fuzz target once it really cut its input: a mark after the start was
    # dropped only when a read happened to end just before it, so the events depended on the cuts.
    # Mid-stream it is part of the field name, which makes the line an unknown field.
    stream = b"data: a\n\n\n\xef\xbb\xbfdata: b\n\n"
    whole = SSEDecoder().decode(stream)
    for cut in range(len(stream) + 1):
        decoder = SSEDecoder()
        assert decoder.decode(stream[:cut]) + decoder.decode(stream[cut:]) + decoder.flush() == whole
    assert whole == [b"a"]


def test_event_size_is_bounded() -> None:
    with pytest.raises(ProtocolError, match="exceeds the limit of 64 bytes"):
        decode_all(b"data: " + b"x" * 100 + b"\n\n", max_event_size=64)
    # Without its end in sight, the pending event is bounded too.
    decoder = SSEDecoder(max_event_size=64)
    with pytest.raises(ProtocolError):
        for _ in range(20):
            decoder.decode(b"data: xxxxxxx")
    assert decode_all(b"data: " + b"x" * 50 + b"\n\n", max_event_size=64) == [b"x" * 50]


events = st.lists(
    st.tuples(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20
        ),
        st.sampled_from([b"\n", b"\r\n", b"\r"]),
        st.booleans(),
    ),
    max_size=12,
)


@given(events, st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_any_split_gives_the_same_events(items: list[tuple[str, bytes, bool]], cuts: list[int]) -> None:
    stream = b""
    for text, eol, comment in items:
        if comment:
            stream += b": note" + eol
        stream += b"data: " + text.encode() + eol + eol
    expected = [text.encode() for text, _, _ in items]
    assert decode_all(stream) == expected
    assert decode_all(stream, [c for c in cuts if c <= len(stream)]) == expected
