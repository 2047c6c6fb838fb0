"""The lean HTTP/1.1 path: the requests it writes, then its pools against real servers.

What both ways of sending must agree on lives in test_client.py and test_faults.py, which run
every live test through the lean path and through httpx (the ``via`` fixture); its response
reader alone is in test_response_reader.py, proxies in test_proxies.py. Here is what is the lean
path's own: the request's bytes, keep-alive and stale connections, TLS, flow control, event
loops, and when it steps aside for httpx.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import socket
import ssl
import struct
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

import getgpt
from getgpt._transports.choose import LeanOrElsewhere
from getgpt._transports.http11.async_pool import AsyncPool, _Connection
from getgpt._transports.http11.origin import endpoint
from getgpt._transports.http11.pool import Pool
from getgpt._transports.http11.tls import context
from getgpt._transports.httpx import AsyncHttpxTransport, HttpxTransport

from ..support import sockets
from ..support.faults import PATIENCE, FaultUpstream, Script, answer
from ..support.processes import SSL_CONTEXT
from ..support.scripted import Live, stream_of
from ..support.waiting import wait_until_async
from ..support.wire import CHUNKED, chunked

HI = [{"role": "user", "content": "hi"}]


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


def test_another_request_to_the_same_origin_has_its_own_head() -> None:
    where = endpoint("http://example.test:8080/v1/chat/completions", {"Authorization": "Bearer k"})
    head = where.head("GET", "/v1/models", {"X-Request": "1", "authorization": "Bearer other"}, 0)
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /v1/models HTTP/1.1" and head.endswith(b"\r\n\r\n")
    assert b"Host: example.test:8080" in lines and b"X-Request: 1" in lines
    assert b"authorization: Bearer other" in lines and b"Authorization: Bearer k" not in lines
    assert not any(line.lower().startswith(b"content-length") for line in lines)  # a GET without a body
    post = where.head("POST", "/v1/embeddings?x=1 2", None, 7).split(b"\r\n")
    assert post[0] == b"POST /v1/embeddings?x=1%202 HTTP/1.1" and b"Content-Length: 7" in post
    for method, target in [("GET /", "/v1"), ("GET", "http://elsewhere.test/"), ("GET", "/a\r\nX: 1")]:
        with pytest.raises(ValueError):
            where.head(method, target, None, 0)


def test_credentials_and_a_non_ascii_host_go_the_lean_way_too() -> None:
    where = endpoint("http://us%40er:p%3Aw@пример.test/путь", {})
    assert where.host == "xn--e1afmkfd.test"
    lines = where.request(b"").split(b"\r\n")
    assert lines[0] == b"POST /%D0%BF%D1%83%D1%82%D1%8C HTTP/1.1"
    assert b"Host: xn--e1afmkfd.test" in lines
    assert b"Authorization: Basic dXNAZXI6cDp3" in lines  # base64 of "us@er:p:w"


def test_a_header_given_replaces_the_default_and_framing_stays_ours() -> None:
    where = endpoint("http://a.test/", {"accept-encoding": "gzip", "Content-Length": "5", "Host": "evil"})
    assert where is not None
    head = where.request(b"{}").partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
    names = [line.partition(b":")[0] for line in head[1:]]
    assert sorted(names) == sorted({*names})  # no header twice
    assert b"accept-encoding: gzip" in head and b"content-length: 2" in head and b"host: a.test" in head


@pytest.mark.parametrize(
    "url",
    ["ftp://example.test/", "http://h:99999/", "http:///path", "http://☃.test/"],
    ids=["other-scheme", "bad-port", "no-host", "bad-idna"],
)
def test_a_url_no_way_can_send_to_is_refused_when_the_client_is_made(url: str) -> None:
    with pytest.raises(ValueError):
        getgpt.Client(url)
    with pytest.raises(ValueError):
        getgpt.AsyncClient(url)


def test_only_socks_https_proxies_and_httpx_objects_send_through_httpx() -> None:
    assert isinstance(getgpt.Client("http://a.test/", proxy="http://127.0.0.1:9")._transport, Pool)
    assert isinstance(getgpt.Client("https://a.test/", proxy="http://127.0.0.1:9")._transport, Pool)
    assert isinstance(getgpt.Client("http://a.test/", proxy="https://127.0.0.1:9")._transport, HttpxTransport)
    mock = httpx.MockTransport(lambda request: httpx.Response(500))
    assert isinstance(getgpt.Client("http://a.test/", transport=mock)._transport, HttpxTransport)
    lean = getgpt.AsyncClient("http://a.test/")._transport
    assert isinstance(lean, LeanOrElsewhere) and isinstance(lean.lean, AsyncPool)
    assert isinstance(
        getgpt.AsyncClient("http://a.test/", http_client=httpx.AsyncClient(verify=SSL_CONTEXT))._transport,
        AsyncHttpxTransport,
    )


@pytest.mark.parametrize("name, value", [("X-A", "1\r\nEvil: 1"), ("Bad Name", "v"), ("X-B", "a\nb")])
def test_a_header_that_could_smuggle_a_line_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="invalid HTTP header"):
        getgpt.Client("http://a.test/", headers={name: value})


# --- pools against real servers --------------------------------------------------------------------


class CloseWhenTold:
    """A script: answers one request on a kept-alive connection, then closes the connection once
    ``close`` is set (at most PATIENCE seconds on); ``closed`` is set when it has."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.close = threading.Event()
        self.closed = threading.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.reply)
        await writer.drain()
        await asyncio.to_thread(self.close.wait, PATIENCE)
        writer.close()
        await writer.wait_closed()
        self.closed.set()


REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + b"Transfer-Encoding: chunked\r\n\r\n"
REPLY += chunked(stream_of(["fine"]))


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    # The server keeps the connection alive in its headers, then drops it: with no retries
    # allowed, the second request only succeeds if the pool noticed and opened a new one.
    script = CloseWhenTold(REPLY)
    with FaultUpstream(script) as upstream, getgpt.Client(upstream.url, max_retries=0) as client:
        assert client.complete(HI) == "fine"
        assert len(client._transport._idle) == 1  # type: ignore[union-attr]
        script.close.set()
        assert script.closed.wait(10)  # the server has closed the idle connection
        assert client.complete(HI) == "fine"
        assert upstream.hits == 2


def test_async_pool_notices_a_closed_idle_connection_too() -> None:
    script = CloseWhenTold(REPLY)

    async def main(url: str) -> list[str]:
        async with getgpt.AsyncClient(url, max_retries=0) as client:
            first = await client.complete(HI)
            script.close.set()
            assert await asyncio.to_thread(script.closed.wait, 10)
            return [first, await client.complete(HI)]

    with FaultUpstream(script) as upstream:
        assert asyncio.run(main(upstream.url)) == ["fine", "fine"]
        assert upstream.hits == 2


def test_async_pool_does_not_reuse_an_idle_connection_whose_transport_is_closing() -> None:
    # A transport can be closed before its protocol hears of it: uvloop closes one on a reset at
    # once and calls connection_lost on a later turn of the loop; a write to it then raised
    # RuntimeError (not a getgpt error), which the gateway answered with a 500 instead of trying
    # another upstream (found by bench.routing's failover drill).
    script = CloseWhenTold(REPLY)

    async def main(url: str) -> list[str]:
        async with getgpt.AsyncClient(url, max_retries=0) as client:
            first = await client.complete(HI)
            [idle] = client._transport.lean._idle  # type: ignore[union-attr]
            idle.transport.close()  # closing; connection_lost runs on a later turn of the loop
            return [first, await client.complete(HI)]

    try:
        with FaultUpstream(script) as upstream:
            assert asyncio.run(main(upstream.url)) == ["fine", "fine"]
            assert upstream.hits == 2
    finally:
        script.close.set()


class _ResetsEachNewConnection:
    """An event loop (mixed into asyncio's or uvloop's) on which the server resets each new
    connection the moment it is made: its listener accepts it and closes it with SO_LINGER 0 (an
    RST), and the loop runs until it has seen the reset, before ``create_connection`` returns.
    That is what a server killed with the connection in its listen queue does, with the reset
    landing in the one gap the client has: between its connect and its first write."""

    listener: socket.socket

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, protocol = await super().create_connection(*args, **kwargs)  # type: ignore[misc]
        accepted, _ = self.listener.accept()
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        accepted.close()  # on loopback the RST is there when close returns
        for _ in range(1000):  # a turn of the loop polls the socket and sees it
            if transport.is_closing():
                break
            await asyncio.sleep(0)
        assert transport.is_closing(), "the loop never saw the reset"
        return transport, protocol


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_new_connection_reset_before_the_request_is_written_is_a_connect_error_at_once(kind: str) -> None:
    # Found as a gateway's 500 "the backend failed" when an upstream was killed (CI, stop 29):
    # uvloop raised RuntimeError writing to the closed transport, and asyncio dropped the write,
    # so the request waited out its timeout for a head. Either way no other upstream was tried;
    # a ConnectError is what a forwarding backend fails over on, and a client may retry (nothing
    # was sent).
    import uvloop

    base = asyncio.SelectorEventLoop if kind == "asyncio" else uvloop.Loop
    loop_class = type("ResettingLoop", (_ResetsEachNewConnection, base), {})
    with socket.create_server(("127.0.0.1", 0)) as listener:
        loop_class.listener = listener
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"

        async def main() -> BaseException:
            async with getgpt.AsyncClient(url, max_retries=0, timeout=5) as client:
                with pytest.raises(getgpt.GetGptError) as raised:
                    await client.complete(HI)
                return raised.value

        with asyncio.Runner(loop_factory=loop_class) as runner:
            error = runner.run(main())
    # (Before: asyncio's a Timeout, 5 s later; uvloop's a RuntimeError.)
    assert isinstance(error, getgpt.ConnectError), repr(error)
    assert "before the request was sent" in str(error) and url in str(error)


def test_connection_close_is_honoured() -> None:
    reply = REPLY.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    with FaultUpstream(answer(reply)) as upstream, getgpt.Client(upstream.url, max_retries=0) as client:
        assert [client.complete(HI) for _ in range(3)] == ["fine"] * 3
        assert client._transport._idle == []  # type: ignore[union-attr]
        assert upstream.hits == 3


@pytest.mark.parametrize("kind", [getgpt.Client, getgpt.AsyncClient])
def test_a_gzip_stream_through_a_real_socket_when_asked_for(kind: Any) -> None:
    packed = gzip.compress(stream_of(["zip", "ped"]))
    reply = CHUNKED.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n")
    asked = {"Accept-Encoding": "gzip"}
    with FaultUpstream(answer(reply + chunked(packed[:10], packed[10:]))) as upstream:
        if kind is getgpt.Client:
            with kind(upstream.url, max_retries=0, headers=asked) as client:
                assert client.complete(HI) == "zipped"
            with kind(upstream.url, max_retries=0) as client, pytest.raises(getgpt.ProtocolError):
                client.complete(HI)  # not asked for: not decoded
        else:

            async def main(headers: dict[str, str]) -> str:
                async with kind(upstream.url, max_retries=0, headers=headers) as client:
                    return str(await client.complete(HI))

            assert asyncio.run(main(asked)) == "zipped"
            with pytest.raises(getgpt.ProtocolError):
                asyncio.run(main({}))


def test_an_async_client_outlives_its_event_loop(live: tuple[Live, str]) -> None:
    _, url = live
    client = getgpt.AsyncClient(url)
    # Each asyncio.run is a new loop: the connection pooled by the first cannot serve the second.
    assert asyncio.run(client.complete(HI)) == "hi "
    assert asyncio.run(client.complete(HI)) == "hi "
    asyncio.run(client.aclose())


def test_async_read_timeout_mid_stream_keeps_the_partial_text() -> None:
    box: list[FaultUpstream] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The head and the events up to the one with "fine" (cut inside its HTTP chunk), then
        # silence until the client gives up.
        writer.write(REPLY[: REPLY.index(b"\n\n", REPLY.index(b"fine")) + 2])
        await writer.drain()
        await box[0].wait_for_peer_to_close(reader)

    async def main(url: str) -> getgpt.Timeout:
        async with getgpt.AsyncClient(url, timeout=0.3) as client:
            try:
                await client.complete(HI)
            except getgpt.Timeout as exc:
                return exc
        raise AssertionError("the silence must time out")

    with FaultUpstream(script) as upstream:
        box.append(upstream)
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
    received = _Connection.data_received

    def spy(self: _Connection, data: bytes) -> None:
        received(self, data)
        seen["most"] = max(seen["most"], self.reader.unread if self.reader else 0)
        seen["paused"] += self._paused

    monkeypatch.setattr(_Connection, "data_received", spy)

    async def main(url: str) -> str:
        async with getgpt.AsyncClient(url, max_retries=0) as client:
            pieces = []
            async with client.stream(HI) as chat:
                async for piece in chat:
                    pieces.append(piece)
                    if len(pieces) % 2000 == 0:
                        # The behaviour under test: a slow reader; the server goes on writing meanwhile.
                        await asyncio.sleep(0.02)
            return "".join(pieces)

    with FaultUpstream(answer(reply)) as upstream:
        text = asyncio.run(main(upstream.url))
    assert len(body) > 4 << 20
    assert text == "".join(words)
    assert seen["paused"] > 0
    assert seen["most"] < 2 << 20


# --- TLS -------------------------------------------------------------------------------------------


def test_tls_with_a_trusted_ca(tls: tuple[str, Path]) -> None:
    url, ca_file = tls
    with getgpt.Client(url, verify=str(ca_file)) as client:
        assert isinstance(client._transport, Pool)
        assert client.complete(HI) == "hi "
        assert client.complete(HI) == "hi "
        assert len(client._transport._idle) == 1

    async def main() -> str:
        async with getgpt.AsyncClient(url, verify=str(ca_file)) as client:
            return str(await client.complete(HI))

    assert asyncio.run(main()) == "hi "


def test_a_ca_bundle_is_read_once_and_again_when_it_is_replaced(
    tls: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca_file = tls
    bundle = tmp_path / "ca.pem"

    def install(pem: bytes) -> None:  # as a rotation does it: a new file moved over the old one
        fresh = tmp_path / "fresh.pem"
        fresh.write_bytes(pem)
        os.replace(fresh, bundle)

    install(ca_file.read_bytes())
    # Two clients trusting one bundle share its context: the file was read once.
    assert context(str(bundle)) is context(str(bundle))
    with getgpt.Client(url, verify=str(bundle), max_retries=0) as client:
        assert client.complete(HI) == "hi "
    install(trustme.CA().cert_pem.bytes())
    with (
        getgpt.Client(url, verify=str(bundle), max_retries=0) as client,
        pytest.raises(getgpt.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.complete(HI)
    install(ca_file.read_bytes())
    with getgpt.Client(url, verify=str(bundle), max_retries=0) as client:
        assert client.complete(HI) == "hi "


def test_tls_verification_is_on_by_default(tls: tuple[str, Path]) -> None:
    url, _ = tls
    with getgpt.Client(url, max_retries=0) as client, pytest.raises(getgpt.TransportError) as caught:
        client.complete(HI)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert isinstance(caught.value, getgpt.ConnectError)
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)

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
    chosen = client._transport
    assert isinstance(chosen, LeanOrElsewhere) and isinstance(chosen.elsewhere, AsyncHttpxTransport)


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
    """Waits before reading a request -- until ``go`` is set (at most 5 s), or without one until the
    client's sends queue up (the socket buffers on the way are full) -- so a large one fills them."""

    def __init__(self, script: Script, go: threading.Event | None = None) -> None:
        super().__init__(script)
        self.go = go

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.go is None:
            peer = writer.get_extra_info("peername")[1]
            await wait_until_async(
                lambda: sockets.unsent(peer, self.port) > 0, 5, "the client's sends queued"
            )
        else:
            await asyncio.to_thread(self.go.wait, 5)
        await super().handle(reader, writer)


@pytest.mark.parametrize("kind", [getgpt.Client, getgpt.AsyncClient])
def test_a_request_larger_than_the_socket_buffers(kind: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # ~12 MB sealed, to a server that does not read at first: the async path must wait for the
    # transport to drain (pause_writing / resume_writing), the sync path for sendall.
    # The server reads nothing until the async client's transport has paused: were it reading
    # already, loopback could take the whole request in one send and the pause never be needed.
    paused, go = [], threading.Event()
    pause = _Connection.pause_writing

    def pause_and_note(connection: _Connection) -> None:
        paused.append(1)
        go.set()
        pause(connection)

    monkeypatch.setattr(_Connection, "pause_writing", pause_and_note)
    word = "ж" * 3_000_000
    with SlowToRead(answer(REPLY), None if kind is getgpt.Client else go) as upstream:
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
        assert len(client._transport._idle) <= 8  # type: ignore[attr-defined]


def test_an_idle_connection_past_its_keepalive_is_not_reused(live: tuple[Live, str]) -> None:
    from getgpt._transports.base import KEEPALIVE

    script, url = live
    with getgpt.Client(url) as client:
        client.complete(HI)
        client.complete(HI)
        assert len(set(script.peers)) == 1  # reused while fresh
        pool = client._transport
        assert isinstance(pool, Pool)
        sock, since = pool._idle[0]
        pool._idle[0] = (sock, since - KEEPALIVE - 0.1)  # as if it had waited that long
        client.complete(HI)
        assert len(set(script.peers)) == 2
        assert sock.fileno() == -1  # the stale one was closed, not leaked


@pytest.mark.parametrize("way", ["lean", "httpx"])
def test_credentials_in_the_url_stay_out_of_error_messages(way: str) -> None:
    # Messages travel on: into logs, and through the gateway to its own clients.
    from ..support.faults import response
    from ..support.servers import free_port

    def made(url: str) -> getgpt.Client:
        options: dict[str, Any] = {"http_client": httpx.Client(verify=SSL_CONTEXT)} if way == "httpx" else {}
        return getgpt.Client(url, max_retries=0, **options)

    port = free_port()
    with (
        made(f"http://user:s3cret@127.0.0.1:{port}/") as client,
        pytest.raises(getgpt.ConnectError) as refused,
    ):
        client.complete(HI)
    assert f"127.0.0.1:{port}" in str(refused.value) and "s3cret" not in str(refused.value)
    failing = response(500, b'{"error":{"message":"boom"}}', "application/json")
    with FaultUpstream(answer(failing)) as upstream:
        keyed = upstream.url.replace("http://", "http://user:s3cret@")
        with made(keyed) as client, pytest.raises(getgpt.StatusError) as caught:
            client.complete(HI)
    assert "boom" in str(caught.value) and "s3cret" not in str(caught.value)
