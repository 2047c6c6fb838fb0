"""Faults: upstreams that die, hang, refuse or lie, and clients that walk away.

The misbehaving upstream is a raw asyncio socket server on loopback (:class:`FaultUpstream`): it
reads one request per connection, counts it, then follows a script -- send some events and close,
reset the connection, stop mid-chunk, hang, answer 429/500/a Cloudflare page -- and records when
its peer closed the connection. The project's client talks to it directly, or through a real
getgpt server whose ``getgpt`` or ``openai`` backend forwards to it (a chain).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import getgpt
from getgpt.server import ServerConfig, create_app

from .conftest import serve

HI = [{"role": "user", "content": "hi"}]
PIECES = ["Привет, ", "мир 😀 ", "\u2028 part"]
SENT = "".join(PIECES)

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n"
)
# A script that waits on its peer never waits longer than this, so a test cannot hang forever.
PATIENCE = 20.0


def events(*texts: str) -> bytes:
    out = b""
    for text in texts:
        chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
        out += b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"
    return out


def response(status: int, body: bytes, content_type: str, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Status", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode() + body


class FaultUpstream:
    """A raw HTTP/1.1 server on loopback, in its own thread and event loop, that runs ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.hits = 0
        #: time.monotonic() of each moment a peer was seen closing its connection.
        self.peer_closed: list[float] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"

    def __enter__(self) -> FaultUpstream:
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            self.hits += 1
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def wait_for_peer_to_close(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            while await asyncio.wait_for(reader.read(1024), PATIENCE):
                pass
            self.peer_closed.append(time.monotonic())


# --------------------------------------------------------------------------- scripts


def die_after(*texts: str) -> Script:
    """200, some events, then a clean close (FIN): no [DONE], no finish_reason."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + events(*texts))
        await writer.drain()

    return script


def reset_after(*texts: str) -> Script:
    """200, some events, then a TCP reset."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + events(*texts))
        await writer.drain()
        await asyncio.sleep(0.05)  # let the events reach the client before the reset
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return script


def cut_mid_chunk(*texts: str) -> Script:
    """Chunked transfer encoding, events in whole chunks, then a chunk that never ends."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED_HEAD)
        for text in texts:
            data = events(text)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        writer.write(b'400\r\ndata: {"choi')
        await writer.drain()

    return script


def hang_after(upstream: list[FaultUpstream], *texts: str, head: bool = True) -> Script:
    """Optionally the head and some events, then silence until the peer gives up."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if head:
            writer.write(STREAM_HEAD + events(*texts))
            await writer.drain()
        await upstream[0].wait_for_peer_to_close(reader)

    return script


def answer(data: bytes) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return script


@contextlib.contextmanager
def hanging(*texts: str, head: bool = True) -> Iterator[FaultUpstream]:
    box: list[FaultUpstream] = []
    with FaultUpstream(hang_after(box, *texts, head=head)) as upstream:
        box.append(upstream)
        yield upstream


_http = httpx.Client(timeout=10)


def health(url: str) -> dict[str, int]:
    return {k: v for k, v in _http.get(url + "healthz").json().items() if isinstance(v, int)}


def wait_until(condition: Callable[[], bool], limit: float) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, f"still false after {limit} s"
        time.sleep(0.01)
    return time.monotonic() - start


def chain(upstream: FaultUpstream, backend: str, **options: float) -> ServerConfig:
    target = upstream.url + "v1" if backend == "openai" else upstream.url
    return ServerConfig(backend=backend, upstream=target, **options)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- upstream dies mid-stream


def test_upstream_closing_mid_stream_raises_incomplete_stream_with_the_partial_text(via: Any) -> None:
    with FaultUpstream(die_after(*PIECES)) as upstream, via(getgpt.Client, upstream.url) as client:
        received: list[str] = []
        with pytest.raises(getgpt.IncompleteStream) as caught:
            for piece in client.stream(HI):
                received.append(piece)
    assert "".join(received) == SENT
    assert caught.value.partial == SENT
    assert upstream.hits == 1  # bytes had arrived: never retried


def test_async_client_too(via: Any) -> None:
    async def main(url: str) -> getgpt.IncompleteStream:
        async with via(getgpt.AsyncClient, url) as client:
            try:
                await client.complete(HI)
            except getgpt.IncompleteStream as exc:
                return exc
        raise AssertionError("a cut stream must raise")

    with FaultUpstream(die_after(*PIECES)) as upstream:
        error = asyncio.run(main(upstream.url))
    assert error.partial == SENT
    assert upstream.hits == 1


@pytest.mark.parametrize("script", [reset_after, cut_mid_chunk], ids=["reset", "cut-mid-chunk"])
def test_broken_connection_mid_stream_is_a_transport_error_with_the_partial_text(
    script: Callable[..., Script], via: Any
) -> None:
    with (
        FaultUpstream(script(*PIECES)) as upstream,
        via(getgpt.Client, upstream.url) as client,
        pytest.raises(getgpt.TransportError) as caught,
    ):
        client.complete(HI)
    assert caught.value.partial == SENT
    assert upstream.hits == 1


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_upstream_dying_behind_a_chain_server_reaches_the_client_with_the_partial_text(backend: str) -> None:
    with (
        FaultUpstream(die_after(*PIECES)) as upstream,
        serve(create_app(chain(upstream, backend))) as server,
        getgpt.Client(server, max_retries=0) as client,
    ):
        # The server had begun streaming, so the upstream's failure is an in-stream error event.
        with pytest.raises(getgpt.RemoteError) as caught:
            client.complete(HI)
        assert caught.value.partial == SENT
        assert caught.value.code == "bad_upstream"
        assert "before [DONE]" in caught.value.message
        wait_until(lambda: health(server)["active_streams"] == 0, 2)
        assert health(server)["failed_total"] == 1
    assert upstream.hits == 1


# --------------------------------------------------------------------------- upstream hangs


def test_upstream_hanging_before_headers_times_out_and_retries_then_gives_up(via: Any) -> None:
    with hanging(head=False) as upstream:
        client = via(getgpt.Client, upstream.url, timeout=0.3, max_retries=1, max_retry_wait=0)
        started = time.monotonic()
        with client, pytest.raises(getgpt.Timeout) as caught:
            client.complete(HI)
        elapsed = time.monotonic() - started
        # Nothing had arrived, so one retry was allowed; each attempt's connection was closed.
        assert upstream.hits == 2
        wait_until(lambda: len(upstream.peer_closed) == 2, 2)
    assert caught.value.partial == ""
    assert "timed out" in str(caught.value)
    assert elapsed < 10


def test_upstream_hanging_mid_stream_times_out_with_the_partial_text_and_no_retry(via: Any) -> None:
    with hanging(*PIECES) as upstream, via(getgpt.Client, upstream.url, timeout=0.3) as client:
        with pytest.raises(getgpt.Timeout) as caught:
            client.complete(HI)
        wait_until(lambda: len(upstream.peer_closed) == 1, 2)
    assert caught.value.partial == SENT
    assert upstream.hits == 1


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_chain_server_times_out_a_silent_upstream_and_frees_the_slot(backend: str) -> None:
    with hanging(head=False) as upstream:
        config = chain(upstream, backend, upstream_timeout=0.3)
        with serve(create_app(config)) as server, getgpt.Client(server, max_retries=0) as client:
            with pytest.raises(getgpt.StatusError) as caught:
                client.complete(HI)
            assert caught.value.status_code in (502, 504)
            assert "timed out" in caught.value.message
            assert health(server)["active_streams"] == 0
            # The server closed every upstream connection it opened.
            wait_until(lambda: len(upstream.peer_closed) == upstream.hits, 2)


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_chain_server_times_out_an_upstream_that_stalls_mid_stream(backend: str) -> None:
    with hanging(*PIECES) as upstream:
        config = chain(upstream, backend, upstream_timeout=0.3)
        with serve(create_app(config)) as server, getgpt.Client(server, max_retries=0) as client:
            with pytest.raises(getgpt.RemoteError) as caught:
                client.complete(HI)
            assert caught.value.partial == SENT
            assert health(server)["active_streams"] == 0
            wait_until(lambda: len(upstream.peer_closed) == 1, 2)
        assert upstream.hits == 1  # text had been forwarded: no retry


# --------------------------------------------------------------------------- upstream refuses

CLOUDFLARE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
    b"<div id='cf-chl-widget'>Checking your browser</div> Performance &amp; security by Cloudflare"
    b"</body></html>"
)


@pytest.mark.parametrize(
    ("reply", "error", "hits"),
    [
        (response(429, b'{"error":{"message":"slow down"}}', "application/json", Retry_After="0"), "rate", 3),
        (response(500, b'{"error":{"message":"boom"}}', "application/json", Retry_After="0"), "status", 3),
        (response(503, b"overloaded", "text/plain", Retry_After="0"), "status", 3),
        (response(403, CLOUDFLARE_PAGE, "text/html", CF_RAY="8a1b2c3d4e5f-AMS"), "cloudflare", 1),
        (response(400, b'{"error":{"message":"bad"}}', "application/json"), "status", 1),
        (response(429, b"{}", "application/json", Retry_After="3600"), "rate", 1),
    ],
    ids=["429", "500", "503", "403-cloudflare", "400", "429-too-long-to-wait"],
)
def test_refusals_are_typed_and_retried_only_when_worth_it(
    reply: bytes, error: str, hits: int, via: Any
) -> None:
    expected = {
        "rate": getgpt.RateLimitError,
        "status": getgpt.StatusError,
        "cloudflare": getgpt.CloudflareBlocked,
    }[error]
    with (
        FaultUpstream(answer(reply)) as upstream,
        via(getgpt.Client, upstream.url, max_retries=2) as client,
        pytest.raises(expected) as caught,
    ):
        client.complete(HI)
    assert upstream.hits == hits
    status = int(reply.split(b" ", 2)[1])
    assert isinstance(caught.value, getgpt.StatusError)
    assert caught.value.status_code == status
    if isinstance(caught.value, getgpt.RateLimitError):
        assert caught.value.retry_after == float(reply.split(b"Retry-After: ")[1].split(b"\r")[0])


def test_a_429_passes_through_a_chain_server_with_its_retry_after() -> None:
    reply = response(429, b'{"error":{"message":"slow down"}}', "application/json", Retry_After="3600")
    with (
        FaultUpstream(answer(reply)) as upstream,
        serve(create_app(chain(upstream, "getgpt"))) as server,
        getgpt.Client(server) as client,
    ):
        with pytest.raises(getgpt.RateLimitError) as caught:
            client.complete(HI)
        assert caught.value.retry_after == 3600
        assert "slow down" in caught.value.message
        assert upstream.hits == 1
        assert health(server)["active_streams"] == 0


def test_a_cloudflare_page_behind_a_chain_server_is_a_502_naming_it() -> None:
    reply = response(403, CLOUDFLARE_PAGE, "text/html", CF_RAY="8a1b2c3d4e5f-AMS")
    with (
        FaultUpstream(answer(reply)) as upstream,
        serve(create_app(chain(upstream, "getgpt"))) as server,
        getgpt.Client(server, max_retries=0) as client,
    ):
        with pytest.raises(getgpt.StatusError) as caught:
            client.complete(HI)
        assert caught.value.status_code == 502
        assert "Cloudflare" in caught.value.message
        assert "<html" not in caught.value.message.lower()
        assert upstream.hits == 1


# --------------------------------------------------------------------------- client disconnects


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_client_leaving_closes_the_upstream_within_a_second(backend: str) -> None:
    with hanging(*PIECES) as upstream, serve(create_app(chain(upstream, backend))) as server:
        with getgpt.Client(server, max_retries=0) as client:
            chat = client.stream(HI)
            assert next(chat) == PIECES[0]
            assert health(server)["active_streams"] == 1
            left = time.monotonic()
            chat.close()
        wait_until(lambda: bool(upstream.peer_closed), 1.0)
        assert upstream.peer_closed[0] - left < 1.0
        wait_until(lambda: health(server)["active_streams"] == 0, 1.0)
        assert health(server)["disconnects_total"] == 1


# --------------------------------------------------------------------------- hostile error bodies


def test_error_body_nested_past_the_json_limit_is_a_status_error() -> None:
    # Regression: the client read the error message with a generic JSON decode, which raised
    # RecursionError on a body nested ~1000 levels deep instead of the typed StatusError.
    async def nested(request: Request) -> Response:
        return Response(b"[" * 5000, status_code=500, media_type="application/json")

    app = Starlette(routes=[Route("/api/chat/stream", nested, methods=["POST"])])
    with (
        serve(app) as url,
        getgpt.Client(url, max_retries=0) as client,
        pytest.raises(getgpt.StatusError) as caught,
    ):
        client.complete(HI)
    assert caught.value.status_code == 500
    assert caught.value.body.startswith("[[[")


def test_error_body_with_invalid_utf8_is_a_status_error() -> None:
    # Regression: msgspec raised UnicodeDecodeError reading the error message of such a body.
    async def garbled(request: Request) -> Response:
        return Response(b'{"error":{"message":"\xff"}}', status_code=400, media_type="application/json")

    app = Starlette(routes=[Route("/api/chat/stream", garbled, methods=["POST"])])
    with (
        serve(app) as url,
        getgpt.Client(url, max_retries=0) as client,
        pytest.raises(getgpt.StatusError) as caught,
    ):
        client.complete(HI)
    assert caught.value.status_code == 400
