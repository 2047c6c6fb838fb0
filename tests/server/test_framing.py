"""Request framing (getgpt.server.edge.framing) against llhttp, the parser uvicorn runs: the same
bytes, cut into the same requests, whatever the reads."""

from __future__ import annotations

import itertools

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from getgpt.server.edge.framing import CHUNKED, BadFraming, Body, read_head


class _Events:
    def __init__(self) -> None:
        self.complete = 0
        self.body = bytearray()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def _requests(reads: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(head, body bytes as sent) of each request in ``reads``, as the connection bounds cut them."""
    found: list[tuple[bytes, bytes]] = []
    pending = b""
    body: Body | None = None
    head = b""
    for read in reads:
        data, pos = pending + read, 0
        pending = b""
        while pos < len(data):
            if body is not None:
                end = body.take(data, pos)
                found[-1] = (head, found[-1][1] + data[pos:end])
                pos = end
                if body.done:
                    body = None
                continue
            while pos < len(data) and data[pos] in b"\r\n":
                pos += 1
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                pending = data[pos:]
                break
            head = data[pos : end + 4]
            pos = end + 4
            length = read_head(head)[0]
            found.append((head, b""))
            if length:
                body = Body(length)
    assert body is None and not pending.strip(b"\r\n"), "the reads end inside a request"
    return found


_NAMES = st.sampled_from([b"Host", b"Accept", b"X-Trace", b"Content-Type", b"User-Agent", b"X-Long"])
_VALUES = st.binary(min_size=0, max_size=40).map(
    lambda raw: bytes(c for c in raw if 0x21 <= c <= 0x7E and c not in b"\r\n")
)


@st.composite
def _request(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A request llhttp accepts, and the body bytes it should report."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"]))
    path = draw(st.sampled_from([b"/", b"/v1/chat/completions", b"/healthz?x=1"]))
    lines = [method + b" " + path + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))]
    payload = draw(st.binary(max_size=300))
    kind = draw(st.sampled_from(["none", "length", "chunked"]))
    if kind == "none":
        return b"\r\n".join(lines) + b"\r\n\r\n", b""
    if kind == "length":
        name = draw(st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH"]))
        space = draw(st.sampled_from([b"", b" ", b"  "]))
        length = name + b":" + space + str(len(payload)).encode() + space
        lines.insert(draw(st.integers(1, len(lines))), length)
        return b"\r\n".join(lines) + b"\r\n\r\n" + payload, payload
    coding = draw(st.sampled_from([b"chunked", b"Chunked", b"gzip, chunked"]))
    lines.insert(draw(st.integers(1, len(lines))), b"Transfer-Encoding: " + coding)
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
    chunks = [payload[a:b] for a, b in itertools.pairwise([0, *cuts, len(payload)]) if b > a]
    body = b""
    for chunk in chunks:
        size = f"{len(chunk):x}".encode()
        if draw(st.booleans()):
            size = b"0" + size.upper()
        extension = draw(st.sampled_from([b"", b";x=1", b';name="a b"']))
        body += size + extension + b"\r\n" + chunk + b"\r\n"
    trailers = draw(st.sampled_from([b"", b"X-Checksum: 1\r\n", b"A: 1\r\nB: 2\r\n"]))
    body += b"0\r\n" + trailers + b"\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body, payload


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_request(), min_size=1, max_size=5),
    st.lists(st.integers(0, 2000), max_size=12),
    st.sampled_from([b"", b"\r\n"]),
)
def test_requests_are_cut_where_llhttp_ends_them_whatever_the_reads(
    requests: list[tuple[bytes, bytes]], cuts: list[int], between: bytes
) -> None:
    stream = between.join(raw for raw, _ in requests)
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    reads = [stream[a:b] for a, b in itertools.pairwise(points) if b > a]
    found = _requests(reads)
    assert len(found) == len(requests)
    parser_events = _Events()
    parser = httptools.HttpRequestParser(parser_events)
    for number, ((head, body), (_, payload)) in enumerate(zip(found, requests, strict=True), 1):
        before = len(parser_events.body)
        parser.feed_data(head + body)  # one request's bytes: llhttp completes exactly that one
        assert parser_events.complete == number
        assert bytes(parser_events.body[before:]) == payload
    assert parser_events.complete == len(requests)


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    ],
    ids=["twice", "and-chunked", "signed", "hex", "empty", "gzip", "chunked-not-last"],
)
def test_a_head_whose_body_has_no_clear_end_is_bad_framing_for_llhttp_too(head: bytes) -> None:
    with pytest.raises(BadFraming):
        read_head(head)
    with pytest.raises(httptools.HttpParserError):
        httptools.HttpRequestParser(_Events()).feed_data(head + b"abc\r\n0\r\n\r\n")


@pytest.mark.parametrize("size_line", [b"3 \r\n", b"3 ;x\r\n", b"x\r\n", b"\r\n", b"-1\r\n"])
def test_a_chunk_size_llhttp_refuses_is_bad_framing(size_line: bytes) -> None:
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = Body(read_head(head)[0])
    with pytest.raises(BadFraming):
        body.take(size_line + b"abc\r\n0\r\n\r\n", 0)
    with pytest.raises(httptools.HttpParserError):
        httptools.HttpRequestParser(_Events()).feed_data(head + size_line + b"abc\r\n0\r\n\r\n")


def test_endless_chunk_lines_and_trailers_are_bad_framing_past_16_kib() -> None:
    body = Body(CHUNKED)
    with pytest.raises(BadFraming):
        for _ in range(100):
            body.take(b"1;" + b"e" * 1000, 0)
    trailers = Body(CHUNKED)
    trailers.take(b"0\r\n", 0)
    with pytest.raises(BadFraming):
        for _ in range(3000):  # 24 KB of trailer lines
            trailers.take(b"X-A: 1\r\n", 0)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", True),
        (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nX-Upgrade: no\r\n\r\n", False),
    ],
)
def test_a_protocol_switch_is_seen(head: bytes, expected: bool) -> None:
    assert read_head(head)[1] is expected
