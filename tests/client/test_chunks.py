"""getgpt._chunks.coalesce: the same body bytes and errors as plain httpx, in fewer pieces, and
the connection still reused. A raw-socket server writes exact chunked framings (extensions,
trailers, odd splits across writes, broken footers) that no ASGI server would produce."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from getgpt._chunks import _run, coalesce

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class RawServer:
    """Answers each request with the next scripted response, written in the given pieces."""

    def __init__(self, script: list[tuple[list[bytes], bool]]) -> None:
        self.script = list(script)
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while self.script:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                parts, close = self.script.pop(0)
                for part in parts:
                    conn.sendall(part)
                    time.sleep(0.001)  # separate writes, so reads end in odd places
                if close:
                    return

    def close(self) -> None:
        self._sock.close()


@contextmanager
def raw_server(script: list[tuple[list[bytes], bool]]) -> Iterator[RawServer]:
    server = RawServer(script)
    try:
        yield server
    finally:
        server.close()


def framing(seed: int) -> tuple[bytes, bytes]:
    """A random chunked body and its payload: sizes 1..300, some extensions, maybe trailers."""
    rng = random.Random(seed)
    payload = b""
    wire = b""
    for _ in range(rng.randrange(1, 400)):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        size = b"%x" % len(data)
        if rng.random() < 0.3:
            size = size.upper()
        if rng.random() < 0.05:
            size += b";ext=1"
        if rng.random() < 0.05:
            size = b"0" + size  # leading zeros are legal
        wire += size + b"\r\n" + data + b"\r\n"
        payload += data
    wire += b"0\r\n" + (b"x-trailer: 1\r\n" if rng.random() < 0.5 else b"") + b"\r\n"
    return wire, payload


def split(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(40, len(data) - 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def read(client: httpx.Client, url: str, use: bool) -> tuple[bytes, int]:
    with client.stream("POST", url, content=b"{}") as response:
        if use:
            coalesce(response)
        pieces = list(response.iter_bytes())
    return b"".join(pieces), len(pieces)


@pytest.mark.parametrize("seed", range(12))
def test_same_bytes_fewer_pieces_connection_reused(seed: int) -> None:
    wire, payload = framing(seed)
    response = HEAD + wire
    # One write per response here, so a read holds many chunks; then the same split up.
    script = [([response], False), ([response], False), (split(response, seed), False)]
    with raw_server(script) as server, httpx.Client(timeout=10) as client:
        plain, plain_count = read(client, server.url, False)
        fast, fast_count = read(client, server.url, True)
        assert fast == plain == payload
        assert fast_count <= plain_count
        split_fast, _ = read(client, server.url, True)
        assert split_fast == payload
        assert server.connections == 1  # every response ended cleanly, so one connection served all


def test_many_small_chunks_arrive_in_few_pieces() -> None:
    wire = b"".join(b"5\r\nhello\r\n" for _ in range(2000)) + b"0\r\n\r\n"
    with raw_server([([HEAD + wire], False)]) as server, httpx.Client(timeout=10) as client:
        body, count = read(client, server.url, True)
    assert body == b"hello" * 2000
    assert count < 100


@pytest.mark.parametrize(
    "broken",
    [
        b"5\r\nhello\r\n5\r\nworldXY3\r\nabc\r\n0\r\n\r\n",  # a footer that is not CRLF
        b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",  # a size that is not hex
        b"5\r\nhello\r\n5\r\nwor",  # cut off inside a chunk
        b"5\r\nhello\r\n",  # cut off at a boundary, no last chunk
    ],
)
def test_broken_framing_fails_as_without(broken: bytes) -> None:
    outcomes = []
    for use in (False, True):
        with raw_server([([HEAD + broken], True)]) as server, httpx.Client(timeout=10) as client:
            with pytest.raises(httpx.RemoteProtocolError) as caught:
                read(client, server.url, use)
            outcomes.append(str(caught.value))
    assert outcomes[0] == outcomes[1]


def test_async_client_same_bytes_and_reuse() -> None:
    wire, payload = framing(99)
    response = HEAD + wire

    async def main(url: str) -> list[bytes]:
        bodies = []
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(2):
                async with client.stream("POST", url, content=b"{}") as reply:
                    coalesce(reply)
                    bodies.append(b"".join([part async for part in reply.aiter_bytes()]))
        return bodies

    with raw_server([([response], False), (split(response, 1), False)]) as server:
        assert asyncio.run(main(server.url)) == [payload, payload]
        assert server.connections == 1


def test_other_responses_are_left_alone() -> None:
    sized = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world"
    with raw_server([([sized], False)]) as server, httpx.Client(timeout=10) as client:
        body, _ = read(client, server.url, True)
    assert body == b"hello world"

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"mock"))
    with httpx.Client(transport=transport) as client, client.stream("GET", "http://x/") as response:
        coalesce(response)  # no httpcore connection behind it: nothing to do, nothing broken
        assert response.read() == b"mock"


# Payloads rich in what could fool a splitter: CRLF, lone CR/LF, digits, and framing look-alikes.
_tricky = st.lists(
    st.sampled_from([b"a", b"\r\n", b"\r", b"\n", b"0", b"5", b"\r\n0\r\n", b"\xff"]), min_size=1, max_size=10
).map(b"".join)


@given(
    st.lists(st.one_of(st.binary(min_size=1, max_size=40), _tricky), max_size=12),
    st.booleans(),
    st.integers(min_value=0, max_value=30),
    st.sampled_from(["x", "X"]),
)
def test_a_run_of_chunks_is_exactly_the_framing(
    payloads: list[bytes], last: bool, cut: int, case: str
) -> None:
    # The real framing: size line, payload, CRLF; then maybe the last chunk; then a cut tail.
    frames = [format(len(p), case).encode() + b"\r\n" + p + b"\r\n" for p in payloads]
    data = b"".join(frames) + (b"0\r\n\r\n" if last else b"")
    data = data[: max(len(data) - cut, 0)]
    run = _run(data)
    if run is None:
        return
    got, used = run
    assert got == payloads[: len(got)]
    assert used == sum(map(len, frames[: len(got)]))
    # Everything taken was complete in what had arrived.
    assert used <= len(data)


@pytest.mark.parametrize(
    "data",
    [
        b" 5\r\nhello\r\n",
        b"0x5\r\nhello\r\n",
        b"5_\r\nhello\r\n",
        b"5;x=1\r\nhello\r\n",
        b"a\nb\r\nhello\r\n",
    ],
)
def test_a_run_refuses_size_lines_int_would_take(data: bytes) -> None:
    assert _run(data) is None
