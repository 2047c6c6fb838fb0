"""The lean path's response reader alone, sans-IO: framing, codings, interim replies, errors,
and the bounds it keeps on a hostile head and a compressed body.

Bytes in, body and head out, whatever the cuts; every failure one of getgpt's typed errors.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from getgpt._transports.decoding import PIECE, accepted
from getgpt._transports.http11.reader import MAX_HEAD_BYTES, MAX_HEADERS, MAX_INTERIM, ResponseReader
from getgpt.protocol.errors import LimitExceeded, ProtocolError, TransportError

from ..support.wire import CHUNKED, chunked

URL = "http://upstream.test/api/chat/stream"


GZIP_AND_DEFLATE = accepted({"Accept-Encoding": "gzip, deflate"})


def take_all(reader: ResponseReader) -> list[bytes]:
    """Every piece the reader has to give now, as a consumer takes them."""
    pieces = [reader.take()]
    while reader.more:
        pieces.append(reader.take())
    return [piece for piece in pieces if piece]


def read_all(
    *pieces: bytes, eof: bool = False, asked: frozenset[str] = frozenset()
) -> tuple[ResponseReader, bytes]:
    reader = ResponseReader(URL, asked)
    body = b""
    for piece in pieces:
        reader.feed(piece)
        body += b"".join(take_all(reader))
    if eof:
        reader.eof()
        body += b"".join(take_all(reader))
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
    _, body = read_all(head + chunked(packed[:7], packed[7:]), asked=GZIP_AND_DEFLATE)
    assert body == b"data: hello\n\n" * 50


def test_an_unknown_coding_is_a_decoding_error() -> None:
    with pytest.raises(ProtocolError, match="br"):
        read_all(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx")


def test_a_corrupt_compressed_body_is_a_decoding_error() -> None:
    with pytest.raises(ProtocolError, match="bad compressed body"):
        read_all(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
            asked=GZIP_AND_DEFLATE,
        )


def test_deflate_without_its_zlib_wrapper_is_decoded_too() -> None:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = packer.compress(b"data: raw\n\n") + packer.flush()
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(raw)
    _, body = read_all(head + raw, asked=GZIP_AND_DEFLATE)
    assert body == b"data: raw\n\n"


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate"])
def test_a_coding_not_asked_for_is_refused_at_the_first_byte_of_the_body(coding: str) -> None:
    packed = (zlib.compress if coding == "deflate" else gzip.compress)(b"data: x\n\n")
    wire = b"HTTP/1.1 503 Busy\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (
        coding.encode(),
        len(packed),
    )
    reader = ResponseReader(URL)
    reader.feed(wire + packed)
    assert reader.head_done and reader.status_code == 503  # the status is still read
    with pytest.raises(ProtocolError, match=f"{coding} body, which was not asked for"):
        reader.take()


@pytest.mark.parametrize(
    "header, wanted",
    [
        ("identity", set()),
        ("gzip", {"gzip", "x-gzip"}),
        ("gzip;q=0, deflate", {"deflate"}),
        ("*", {"gzip", "x-gzip", "deflate"}),
        ("br", set()),
        ("deflate;q=x", set()),
    ],
)
def test_the_codings_a_request_asked_for(header: str, wanted: set[str]) -> None:
    assert accepted({"accept-ENCODING": header}) == wanted
    assert accepted({}) == set()


def test_a_bomb_is_decoded_a_bounded_piece_at_a_time() -> None:
    # 64 MiB of zeros in about 64 KB: each take() hands over at most PIECE bytes.
    packer = zlib.compressobj(9, wbits=31)
    packed = b"".join(packer.compress(bytes(1 << 20)) for _ in range(64)) + packer.flush()
    reader = ResponseReader(URL, GZIP_AND_DEFLATE)
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed))
    reader.feed(packed)
    sizes = []
    while True:
        piece = reader.take()
        if not piece and not reader.more:
            break
        sizes.append(len(piece))
    assert max(sizes) <= PIECE and sum(sizes) == 64 << 20


# --- bounds on a hostile head -------------------------------------------------------------------


def test_too_many_headers_are_refused() -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    with pytest.raises(LimitExceeded, match="headers"):
        read_all(head + b"Content-Length: 0\r\n\r\n")
    fine = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS - 1))
    reader, _ = read_all(fine + b"Content-Length: 0\r\n\r\n")
    assert reader.complete and len(reader.headers) == MAX_HEADERS


def test_an_endless_header_line_is_refused_as_it_arrives() -> None:
    reader = ResponseReader(URL)
    reader.feed(b"HTTP/1.1 200 OK\r\nX-Long: ")
    with pytest.raises(LimitExceeded, match="head"):
        for _ in range(MAX_HEAD_BYTES // 1000 + 2):
            reader.feed(b"v" * 1000)


def test_a_large_head_in_one_read_is_refused() -> None:
    big = b"X-Big: " + b"v" * (MAX_HEAD_BYTES // 2) + b"\r\n"
    with pytest.raises(LimitExceeded, match="KiB"):
        read_all(b"HTTP/1.1 200 OK\r\n" + big * 3 + b"Content-Length: 0\r\n\r\n")


def test_interim_replies_are_counted() -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    reader, body = read_all(interim * MAX_INTERIM + CHUNKED + chunked(b"ok"))
    assert (reader.status_code, body) == (200, b"ok")
    with pytest.raises(LimitExceeded, match="interim"):
        read_all(interim * (MAX_INTERIM + 1) + CHUNKED + chunked(b"ok"))


def test_a_header_repeated_many_times_is_joined_in_linear_time() -> None:
    count = MAX_HEADERS - 2
    wire = (
        b"HTTP/1.1 200 OK\r\n"
        + b"Set-Cookie: a=%d\r\n" * 0
        + b"".join(b"Set-Cookie: a=%d\r\n" % i for i in range(count))
    )
    reader, _ = read_all(wire + b"Content-Length: 0\r\n\r\n")
    assert reader.headers["set-cookie"] == ", ".join(f"a={i}" for i in range(count))


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit, MemoryError])
def test_what_a_callback_raises_comes_out_as_itself(
    raised: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    def on_header(self: ResponseReader, name: bytes, value: bytes) -> None:
        raise raised()

    monkeypatch.setattr(ResponseReader, "on_header", on_header)
    reader = ResponseReader(URL)
    with pytest.raises(raised):
        reader.feed(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n")


def test_what_the_body_callback_raises_comes_out_as_itself_too() -> None:
    # The body callback is a C method (a list's append): what it raises reaches the reader only
    # as the context of httptools' own error.
    reader = ResponseReader(URL)

    class Full:
        def __getattr__(self, name: str) -> Any:
            return getattr(reader, name)

        def on_body(self, body: bytes) -> None:
            raise MemoryError

    reader._parser = httptools.HttpResponseParser(Full())
    with pytest.raises(MemoryError):
        reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")


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
