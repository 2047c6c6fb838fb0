"""The lean HTTP/1.1 path: its reply reader alone (sans-IO), then its pools against real servers.

What both ways of sending must agree on lives in test_client.py and test_faults.py, which run
every live test through the lean path and through httpx (the ``via`` fixture). Here is what is
the lean path's own: framing and codings, keep-alive and stale connections, TLS, flow control,
event loops, and when it steps aside for httpx.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

import getgpt
from getgpt._http11 import AsyncPool, Pool, ReplyReader, _Protocol, endpoint
from getgpt._httpx import AsyncHttpxSender, HttpxSender

from ..support.faults import FaultUpstream, answer
from ..support.scripted import Live, stream_of
from ..support.servers import serve

HI = [{"role": "user", "content": "hi"}]
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def read_all(*pieces: bytes, eof: bool = False) -> tuple[ReplyReader, bytes]:
    reader = ReplyReader()
    body = b""
    for piece in pieces:
        reader.feed(piece)
        body += reader.take()
    if eof:
        reader.eof()
        body += reader.take()
    return reader, body


# --- the reply reader, sans-IO -------------------------------------------------------------------


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
    # Whatever a server sends, the reader raises only the errors the clients map (httpx's
    # protocol and decoding errors), never a parser's own exception or an IndexError.
    reader = ReplyReader()
    try:
        reader.feed((CHUNKED if with_head else b"") + noise)
        reader.take()
        reader.eof()
    except (httpx.RemoteProtocolError, httpx.DecodingError):
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
    with pytest.raises(httpx.DecodingError, match="br"):
        read_all(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx")


def test_a_corrupt_compressed_body_is_a_decoding_error() -> None:
    with pytest.raises(httpx.DecodingError):
        read_all(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope")


@pytest.mark.parametrize(
    "wire",
    [b"HTTP/1.1 abc OK\r\n\r\n", CHUNKED + b"zz\r\n", b"SMTP ready\r\n"],
    ids=["bad-status", "bad-chunk-size", "not-http"],
)
def test_malformed_replies_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
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
    reader = ReplyReader()
    reader.feed(wire)
    with pytest.raises(httpx.RemoteProtocolError, match=message):
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


# --- the endpoint: what goes the lean way, and the request it writes ------------------------------


def test_the_request_is_one_write_with_the_headers_given() -> None:
    where = endpoint("http://example.test:8080/x/api/chat/stream?a=1", {"Referer": "r", "X-Key": "k"})
    assert where is not None
    request = where.request(b'{"signature":"ab"}')
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /x/api/chat/stream?a=1 HTTP/1.1"
    assert b"Host: example.test:8080" in lines and b"X-Key: k" in lines
    assert b"Content-Length: 18" in lines and body == b'{"signature":"ab"}'
    v6 = endpoint("https://[::1]/", {})
    assert v6 is not None and (v6.scheme, v6.host, v6.port) == ("https", "::1", 443)
    assert b"Host: [::1]\r\n" in v6.prefix


def test_a_header_given_replaces_the_default_and_framing_stays_ours() -> None:
    where = endpoint("http://a.test/", {"accept-encoding": "gzip", "Content-Length": "5", "Host": "evil"})
    assert where is not None
    head = where.request(b"{}").partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
    names = [line.partition(b":")[0] for line in head[1:]]
    assert sorted(names) == sorted({*names})  # no header twice
    assert b"accept-encoding: gzip" in head and b"content-length: 2" in head and b"host: a.test" in head


@pytest.mark.parametrize(
    "url",
    ["http://user:pw@example.test/", "http://пример.test/", "ftp://example.test/", "http://h:99999/"],
    ids=["credentials", "non-ascii-host", "other-scheme", "bad-port"],
)
def test_what_the_lean_path_leaves_to_httpx(url: str) -> None:
    assert endpoint(url, {}) is None


def test_a_proxy_in_the_environment_sends_through_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with getgpt.Client("http://example.test/") as client:
        assert isinstance(client._sender, HttpxSender)
    monkeypatch.setenv("NO_PROXY", "example.test")
    with getgpt.Client("http://example.test/") as client:
        assert isinstance(client._sender, Pool)


def test_proxy_or_transport_arguments_send_through_httpx() -> None:
    assert isinstance(getgpt.Client("http://a.test/", proxy="http://127.0.0.1:9")._sender, HttpxSender)
    mock = httpx.MockTransport(lambda request: httpx.Response(500))
    assert isinstance(getgpt.Client("http://a.test/", transport=mock)._sender, HttpxSender)
    assert isinstance(getgpt.AsyncClient("http://a.test/")._sender, AsyncPool)
    assert isinstance(
        getgpt.AsyncClient("http://a.test/", http_client=httpx.AsyncClient())._sender, AsyncHttpxSender
    )


@pytest.mark.parametrize("name, value", [("X-A", "1\r\nEvil: 1"), ("Bad Name", "v"), ("X-B", "a\nb")])
def test_a_header_that_could_smuggle_a_line_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="invalid HTTP header"):
        getgpt.Client("http://a.test/", headers={name: value})


# --- pools against real servers --------------------------------------------------------------------


def keep_alive_then_close(reply: bytes, linger: float) -> Any:
    """Answers one request on a kept-alive connection, then closes it ``linger`` seconds later."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(linger)

    return script


REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + b"Transfer-Encoding: chunked\r\n\r\n"
REPLY += chunked(stream_of(["fine"]))


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    # The server keeps the connection alive in its headers, then drops it: with no retries
    # allowed, the second request only succeeds if the pool noticed and opened a new one.
    with (
        FaultUpstream(keep_alive_then_close(REPLY, 0.05)) as upstream,
        getgpt.Client(upstream.url, max_retries=0) as client,
    ):
        assert client.complete(HI) == "fine"
        assert len(client._sender._idle) == 1  # type: ignore[union-attr]
        time.sleep(0.3)  # the server has closed it by now
        assert client.complete(HI) == "fine"
        assert upstream.hits == 2


def test_async_pool_notices_a_closed_idle_connection_too() -> None:
    async def main(url: str) -> list[str]:
        async with getgpt.AsyncClient(url, max_retries=0) as client:
            first = await client.complete(HI)
            await asyncio.sleep(0.3)
            return [first, await client.complete(HI)]

    with FaultUpstream(keep_alive_then_close(REPLY, 0.05)) as upstream:
        assert asyncio.run(main(upstream.url)) == ["fine", "fine"]
        assert upstream.hits == 2


def test_connection_close_is_honoured() -> None:
    reply = REPLY.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    with FaultUpstream(answer(reply)) as upstream, getgpt.Client(upstream.url, max_retries=0) as client:
        assert [client.complete(HI) for _ in range(3)] == ["fine"] * 3
        assert client._sender._idle == []  # type: ignore[union-attr]
        assert upstream.hits == 3


@pytest.mark.parametrize("kind", [getgpt.Client, getgpt.AsyncClient])
def test_a_gzip_stream_through_a_real_socket(kind: Any) -> None:
    packed = gzip.compress(stream_of(["zip", "ped"]))
    reply = CHUNKED.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n")
    with FaultUpstream(answer(reply + chunked(packed[:10], packed[10:]))) as upstream:
        if kind is getgpt.Client:
            with kind(upstream.url, max_retries=0) as client:
                assert client.complete(HI) == "zipped"
        else:

            async def main() -> str:
                async with kind(upstream.url, max_retries=0) as client:
                    return str(await client.complete(HI))

            assert asyncio.run(main()) == "zipped"


def test_an_async_client_outlives_its_event_loop(live: tuple[Live, str]) -> None:
    _, url = live
    client = getgpt.AsyncClient(url)
    # Each asyncio.run is a new loop: the connection pooled by the first cannot serve the second.
    assert asyncio.run(client.complete(HI)) == "hi "
    assert asyncio.run(client.complete(HI)) == "hi "
    asyncio.run(client.aclose())


def test_async_read_timeout_mid_stream_keeps_the_partial_text() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The head and the events up to the one with "fine" (cut inside its HTTP chunk), then silence.
        writer.write(REPLY[: REPLY.index(b"\n\n", REPLY.index(b"fine")) + 2])
        await writer.drain()
        await asyncio.sleep(1)

    async def main(url: str) -> getgpt.Timeout:
        async with getgpt.AsyncClient(url, timeout=0.3) as client:
            try:
                await client.complete(HI)
            except getgpt.Timeout as exc:
                return exc
        raise AssertionError("the silence must time out")

    with FaultUpstream(script) as upstream:
        error = asyncio.run(main(upstream.url))
    assert error.partial == "fine"
    assert upstream.hits == 1


def test_a_slow_async_reader_holds_the_server_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 MB of events read slowly: the connection must stop reading (TCP pushes back on the
    # server) rather than buffer everything, and every byte must still arrive.
    words = [f"w{i:06d} " for i in range(60_000)]
    body = stream_of(words)
    reply = CHUNKED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + chunked(body)
    seen = {"most": 0, "paused": 0}
    received = _Protocol.data_received

    def spy(self: _Protocol, data: bytes) -> None:
        received(self, data)
        seen["most"] = max(seen["most"], self.reader.unread if self.reader else 0)
        seen["paused"] += self._paused

    monkeypatch.setattr(_Protocol, "data_received", spy)

    async def main(url: str) -> str:
        async with getgpt.AsyncClient(url, max_retries=0) as client:
            pieces = []
            async with client.stream(HI) as chat:
                async for piece in chat:
                    pieces.append(piece)
                    if len(pieces) % 2000 == 0:
                        await asyncio.sleep(0.02)  # the server goes on writing meanwhile
            return "".join(pieces)

    with FaultUpstream(answer(reply)) as upstream:
        text = asyncio.run(main(upstream.url))
    assert len(body) > 4 << 20
    assert text == "".join(words)
    assert seen["paused"] > 0
    assert seen["most"] < 2 << 20


# --- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A live server on https://127.0.0.1 whose certificate a throwaway CA signed; and that CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    where = tmp_path_factory.mktemp("tls")
    key_file, chain_file, ca_file = where / "key.pem", where / "chain.pem", where / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(chain_file))
    ca.cert_pem.write_to_path(str(ca_file))
    from starlette.applications import Starlette
    from starlette.routing import Route

    script = Live()
    app = Starlette(routes=[Route("/api/chat/stream", script.chat, methods=["POST"])])
    with serve(app, ssl_certfile=str(chain_file), ssl_keyfile=str(key_file)) as url:
        yield url, ca_file


def test_tls_with_a_trusted_ca(tls: tuple[str, Path]) -> None:
    url, ca_file = tls
    with getgpt.Client(url, verify=str(ca_file)) as client:
        assert isinstance(client._sender, Pool)
        assert client.complete(HI) == "hi "
        assert client.complete(HI) == "hi "
        assert len(client._sender._idle) == 1

    async def main() -> str:
        async with getgpt.AsyncClient(url, verify=str(ca_file)) as client:
            return str(await client.complete(HI))

    assert asyncio.run(main()) == "hi "


def test_tls_verification_is_on_by_default(tls: tuple[str, Path]) -> None:
    url, _ = tls
    with getgpt.Client(url, max_retries=0) as client, pytest.raises(getgpt.TransportError) as caught:
        client.complete(HI)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert isinstance(caught.value.__cause__.__cause__, ssl.SSLCertVerificationError)

    async def main() -> None:
        async with getgpt.AsyncClient(url, max_retries=0) as client:
            await client.complete(HI)

    with pytest.raises(getgpt.TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(main())


def test_tls_verification_can_be_turned_off(tls: tuple[str, Path]) -> None:
    url, _ = tls
    with getgpt.Client(url, verify=False) as client:
        assert client.complete(HI) == "hi "


def test_async_client_under_uvloop(live: tuple[Live, str]) -> None:
    # uvloop's transports are not asyncio.Transport subclasses; the server's chain backend runs
    # the client under uvloop whenever uvicorn picks it.
    import uvloop  # installed with the server extra, which the tests need

    _, url = live

    async def main() -> list[str]:
        async with getgpt.AsyncClient(url) as client:
            return [str(await client.complete([{"role": "user", "content": f"u{i}"}])) for i in range(3)]

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == ["u0 ", "u1 ", "u2 "]
    finally:
        loop.close()


def test_async_client_under_trio(live: tuple[Live, str]) -> None:
    # The lean path speaks asyncio only; under trio the same client sends through httpx.
    import trio

    _, url = live
    client = getgpt.AsyncClient(url)

    async def main() -> list[str]:
        async with client:
            return [str(await client.complete([{"role": "user", "content": f"t{i}"}])) for i in range(2)]

    assert trio.run(main) == ["t0 ", "t1 "]
    assert isinstance(client._elsewhere, AsyncHttpxSender)


def test_neither_way_sends_back_a_cookie_a_reply_set() -> None:
    # The server's backends serve many users through one sender: a cookie one upstream reply
    # sets must not ride on another user's request. The lean path keeps none; nor may httpx.
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        body = stream_of(["ok"])
        headers = {"content-type": "text/event-stream", "set-cookie": "session=abc; Path=/"}
        return httpx.Response(200, headers=headers, content=body)

    with getgpt.Client("http://a.test/", transport=httpx.MockTransport(handler)) as client:
        assert [client.complete(HI) for _ in range(2)] == ["ok", "ok"]
    assert seen == [None, None]


class SlowToRead(FaultUpstream):
    """Waits before reading a request, so a large one fills the socket buffers on the way."""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.3)
        await super()._handle(reader, writer)


@pytest.mark.parametrize("kind", [getgpt.Client, getgpt.AsyncClient])
def test_a_request_larger_than_the_socket_buffers(kind: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # ~12 MB sealed, to a server that does not read at first: the async path must wait for the
    # transport to drain (pause_writing / resume_writing), the sync path for sendall.
    paused = []
    pause = _Protocol.pause_writing
    monkeypatch.setattr(_Protocol, "pause_writing", lambda self: (paused.append(1), pause(self)))
    word = "ж" * 3_000_000
    with SlowToRead(answer(REPLY)) as upstream:
        if kind is getgpt.Client:
            with kind(upstream.url) as client:
                assert client.complete([{"role": "user", "content": word}]) == "fine"
        else:

            async def main() -> str:
                async with kind(upstream.url) as client:
                    return str(await client.complete([{"role": "user", "content": word}]))

            assert asyncio.run(main()) == "fine"
            assert paused
        assert upstream.hits == 1


def test_one_client_shared_by_threads(live: tuple[Live, str]) -> None:
    # The pool hands each request its own connection: replies never cross between threads.
    from concurrent.futures import ThreadPoolExecutor

    _, url = live
    with getgpt.Client(url) as client, ThreadPoolExecutor(8) as threads:
        words = [f"w{i}" for i in range(80)]
        replies = list(threads.map(lambda w: str(client.complete([{"role": "user", "content": w}])), words))
        assert replies == [w + " " for w in words]
        assert len(client._sender._idle) <= 8  # type: ignore[attr-defined]


def test_an_idle_connection_past_its_keepalive_is_not_reused(live: tuple[Live, str]) -> None:
    from getgpt._senders import KEEPALIVE

    script, url = live
    with getgpt.Client(url) as client:
        client.complete(HI)
        client.complete(HI)
        assert len(set(script.peers)) == 1  # reused while fresh
        pool = client._sender
        assert isinstance(pool, Pool)
        sock, since = pool._idle[0]
        pool._idle[0] = (sock, since - KEEPALIVE - 0.1)  # as if it had waited that long
        client.complete(HI)
        assert len(set(script.peers)) == 2
        assert sock.fileno() == -1  # the stale one was closed, not leaked
