"""The lean path's response reader alone, sans-IO: framing, codings, interim replies, errors.

Bytes in, body and head out, whatever the cuts; every failure one of getgpt's typed errors.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from getgpt._transports.http11.reader import ResponseReader
from getgpt.errors import ProtocolError, TransportError

from ..support.wire import CHUNKED, chunked

URL = "http://upstream.test/api/chat/stream"


def read_all(*pieces: bytes, eof: bool = False) -> tuple[ResponseReader, bytes]:
    reader = ResponseReader(URL)
    body = b""
    for piece in pieces:
        reader.feed(piece)
        body += reader.take()
    if eof:
        reader.eof()
        body += reader.take()
    return reader, body


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.data())
def test_chunked_body_is_the_same_however_the_bytes_are_cut(parts: list[bytes], data: Any) -> None:
    wire = CHUNKED + chunked(*parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    reader, body = read_all(*pieces)
    assert body == b"".join(parts)
    assert reader.complete and reader.keep_alive
    assert reader.status_code == 200 and reader.headers["content-type"] == "text/event-stream"


@given(st.binary(max_size=300), st.booleans())
def test_any_bytes_give_a_body_or_a_typed_error(noise: bytes, with_head: bool) -> None:
    # Whatever a server sends, the reader raises only getgpt's transport and protocol errors,
    # never a parser's own exception or an IndexError.
    reader = ResponseReader(URL)
    try:
        reader.feed((CHUNKED if with_head else b"") + noise)
        reader.take()
        reader.eof()
    except (TransportError, ProtocolError):
        return
    assert reader.complete


def test_content_length_body_ends_at_its_length() -> None:
    reader, body = read_all(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhel", b"lo")
    assert (body, reader.complete, reader.status_code, reader.reason_phrase) == (
        b"hello",
        True,
        201,
        "Created",
    )


def test_body_without_framing_ends_when_the_connection_does() -> None:
    reader, body = read_all(b"HTTP/1.1 200 OK\r\n\r\ndata: x\n\n")
    assert body == b"data: x\n\n" and not reader.complete
    reader.eof()
    assert reader.complete and not reader.keep_alive


def test_interim_replies_are_skipped() -> None:
    wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + CHUNKED
    reader, body = read_all(wire + chunked(b"ok"))
    assert (reader.status_code, body, reader.complete) == (200, b"ok", True)
    assert "link" not in reader.headers


def test_repeated_headers_are_joined() -> None:
    reader, _ = read_all(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n")
    assert reader.headers["x-a"] == "1, 2"


@pytest.mark.parametrize(
    "coding, compress",
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_compressed_bodies_are_decoded(coding: str, compress: Any) -> None:
    packed = compress(b"data: hello\n\n" * 50)
    head = CHUNKED.replace(b"\r\n\r\n", f"\r\nContent-Encoding: {coding}\r\n\r\n".encode())
    _, body = read_all(head + chunked(packed[:7], packed[7:]))
    assert body == b"data: hello\n\n" * 50


def test_an_unknown_coding_is_a_decoding_error() -> None:
    with pytest.raises(ProtocolError, match="br"):
        read_all(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx")


def test_a_corrupt_compressed_body_is_a_decoding_error() -> None:
    with pytest.raises(ProtocolError):
        read_all(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope")


@pytest.mark.parametrize(
    "wire",
    [b"HTTP/1.1 abc OK\r\n\r\n", CHUNKED + b"zz\r\n", b"SMTP ready\r\n"],
    ids=["bad-status", "bad-chunk-size", "not-http"],
)
def test_malformed_replies_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(TransportError, match="malformed"):
        read_all(wire)


@pytest.mark.parametrize(
    "wire, message",
    [
        (b"", "without sending a response"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "without sending a response"),
        (CHUNKED + b"5\r\nhel", "complete message body"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", "complete message body"),
    ],
    ids=["nothing", "cut-head", "cut-chunk", "short-length"],
)
def test_a_close_before_the_end_is_a_protocol_error(wire: bytes, message: str) -> None:
    reader = ResponseReader(URL)
    reader.feed(wire)
    with pytest.raises(TransportError, match=message):
        reader.eof()


def test_a_second_message_after_the_reply_is_not_part_of_its_body() -> None:
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
    second = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"
    reader, body = read_all(first + second)
    assert (body, reader.complete, reader.keep_alive) == (b"one", True, False)
    reader, body = read_all(first, second)
    assert body == b"one"


def test_bytes_after_the_reply_or_connection_close_forbid_reuse() -> None:
    reader, _ = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert reader.complete and not reader.keep_alive
    reader, _ = read_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert reader.complete and not reader.keep_alive
