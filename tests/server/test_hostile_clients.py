"""Hostile clients against ``getgpt serve`` in a subprocess, on real loopback sockets.

Slow heads, idle sockets, huge heads, floods of header lines, file-descriptor exhaustion and
clients that stop reading: each is closed within its bound, and ``/healthz`` keeps answering.
Timing bounds are the configured ones plus a margin for a loaded machine; a lower bound too,
so a connection closed early for some other reason does not pass. Every lower bound is measured
from a moment before its deadline can have begun (before the connection is opened, before the
request is sent), so a slow machine can only make the time longer: it never fails one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

from getgpt.server import ServerConfig
from getgpt.server.running.serving import connection_limit

from ..support import sockets
from ..support.hostile import (
    Ended,
    closed_by_peer,
    idle,
    memory_kib,
    read_response,
    send_head,
    status_of,
    trickle,
)
from ..support.serve_process import ServeProcess, getgpt_serve, run_getgpt
from ..support.servers import wait_until

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + b"s" * 200 + b"\r\n\r\n"
# Deadlines are short here so the tests are; the margin absorbs a loaded 2-core machine.
MARGIN = 2.5


def chat_request(text: str, *, path: str = "/v1/chat/completions") -> bytes:
    body = json.dumps({"messages": [{"role": "user", "content": text}], "stream": True}).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def crowd(
    count: int, client: Callable[[Callable[[], object]], Awaitable[Ended]], server: ServeProcess
) -> tuple[list[Ended], float]:
    """Run ``count`` hostile clients at once; once every one is connected, time a ``/healthz``
    from outside them. ``client(connected)`` calls ``connected()`` when its connection is open."""

    async def main() -> tuple[list[Ended], float]:
        all_in = asyncio.Event()
        opened = 0

        def connected() -> None:
            nonlocal opened
            opened += 1
            if opened == count:
                all_in.set()

        clients = asyncio.gather(*(client(connected) for _ in range(count)))
        await asyncio.wait_for(all_in.wait(), 30)
        health = await asyncio.to_thread(server.healthz, 5.0)
        return list(await clients), health

    return asyncio.run(main())


def test_heads_trickled_a_byte_a_second_get_408_at_the_head_timeout() -> None:
    with getgpt_serve("--head-timeout", "2", "--idle-timeout", "60") as server:
        ended, health = crowd(
            100,
            lambda connected: trickle(
                server.address, SLOW_HEAD, every=1.0, limit=2 + 3 * MARGIN, connected=connected
            ),
            server,
        )
        assert health < 1.0
    for end in ended:
        assert end.closed, f"still open after {end.seconds:.1f} s"
        assert end.status == 408
        assert b'"code":"head_timeout"' in end.received
        assert 1.9 <= end.seconds < 2 + MARGIN


def test_connections_that_never_send_a_request_are_closed_at_the_idle_timeout() -> None:
    with getgpt_serve("--idle-timeout", "1.5", "--head-timeout", "60") as server:
        ended, health = crowd(
            100, lambda connected: idle(server.address, limit=1.5 + 3 * MARGIN, connected=connected), server
        )
        assert health < 1.0
    for end in ended:
        assert end.closed, f"still open after {end.seconds:.1f} s"
        assert end.received == b""  # closed quietly: no request, no answer
        assert 1.4 <= end.seconds < 1.5 + MARGIN


def test_a_kept_alive_connection_is_closed_at_the_idle_timeout_though_it_sends_blank_lines() -> None:
    # Bytes that begin no request (the parser skips blank lines between requests) used to put
    # uvicorn's keep-alive timer back each time: a CRLF a second held the connection for ever.
    with getgpt_serve("--idle-timeout", "1.5", "--head-timeout", "60") as server:
        end = asyncio.run(
            trickle(server.address, b"\r\n" * 100, every=0.25, limit=1.5 + 3 * MARGIN, start=HEALTH)
        )
    assert end.closed, f"still open after {end.seconds:.1f} s"
    assert end.status == 200 and end.received.count(b"HTTP/1.1 ") == 1
    assert 1.4 <= end.seconds < 1.5 + MARGIN


def test_requests_on_a_kept_alive_connection_within_the_idle_timeout_are_answered() -> None:
    # Three pauses of 0.8 s: 2.4 s in all, past one idle timeout of 2 s, yet each well within one.
    with getgpt_serve("--idle-timeout", "2") as server, socket.create_connection(server.address) as sock:
        sock.settimeout(5)
        for _ in range(3):
            sock.sendall(HEALTH)
            response, extra = read_response(sock)
            assert status_of(response) == 200 and extra == b""
            time.sleep(0.8)  # the behaviour under test: a client idle between requests
        # Three requests pipelined in one write are each answered, in order.
        sock.sendall(HEALTH * 3)
        extra = b""
        for _ in range(3):
            response, extra = read_response(sock, extra)
            assert status_of(response) == 200


ONE_ENDLESS_LINE = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"a" * (16 << 20) + b"\r\n\r\n"
MANY_LINES = b"".join(b"X-Fill-%d: %s\r\n" % (i, b"b" * 1000) for i in range(90))


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        # One endless header line: the parser buffers it whole before any callback sees it.
        (ONE_ENDLESS_LINE, 431, "head_too_large"),
        # Many ordinary lines adding up past the limit.
        (b"GET /healthz HTTP/1.1\r\n" + MANY_LINES + b"\r\n", 431, "head_too_large"),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431, "too_many_headers"),
        (b"GET /healthz?" + b"q" * (64 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    ],
    ids=["one-16MiB-line", "90-lines-of-1KiB", "101-lines", "64KiB-url"],
)
def test_an_oversized_head_is_refused_before_it_is_read_whole(head: bytes, status: int, code: str) -> None:
    with getgpt_serve() as server:
        before = memory_kib(server.process.pid)
        end = send_head(server.address, head, limit=15)
        after = memory_kib(server.process.pid)
        assert server.healthz() < 1.0
    assert end.status == status, end.received[:200]
    assert f'"code":"{code}"'.encode() in end.received
    assert b"connection: close" in end.received
    # Memory: the peak grew by far less than the head (it used to grow by a multiple of it).
    assert after["VmHWM"] - before["VmHWM"] < 8 << 10, (before, after)


def test_a_request_after_a_refused_one_in_the_same_write_gets_no_answer() -> None:
    flood = b"GET /healthz HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n"
    with getgpt_serve("--head-timeout", "1") as server:
        with socket.create_connection(server.address) as sock:
            sock.sendall(flood + HEALTH + HEALTH)
            sock.settimeout(5)
            received = b""
            while data := sock.recv(65536):  # the answer, then the server's half-close
                received += data
            # Past the head timeout (1 s) and the linger (2 s): the server has closed its end for
            # good, this one still open.
            wait_until(lambda: sockets.released(server.port, sockets.port_of(sock)), 5 + MARGIN)
        assert server.healthz() < 1.0
        log = server.output()
    assert status_of(received) == 431
    assert received.count(b"HTTP/1.1 ") == 1
    assert "Traceback" not in log and "Exception" not in log, log


def test_exactly_the_limits_are_accepted() -> None:
    with getgpt_serve("--max-headers", "20", "--max-head-bytes", "4096") as server:
        twenty = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 19 + b"\r\n"
        assert (
            send_head(server.address, twenty + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n").status
            == 200
        )
        assert send_head(server.address, twenty.replace(b"\r\n\r\n", b"\r\nX-B: 2\r\n\r\n")).status == 431
        filler = b"X-Fill: " + b"f" * 3000 + b"\r\n"
        assert (
            send_head(
                server.address, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n" + filler + b"\r\n"
            ).status
            == 200
        )
        assert (
            send_head(server.address, b"GET /healthz HTTP/1.1\r\n" + filler + filler + b"\r\n").status == 431
        )


def test_idle_connections_past_the_file_descriptor_limit_leave_healthz_answering() -> None:
    # ulimit -n 160 leaves room for 96 connections (160 less the server's reserve of 64). The
    # 250 idle connections below would take every descriptor, after which accept() fails and
    # even /healthz goes unanswered; instead each newcomer closes the longest-idle connection.
    held: list[socket.socket] = []
    with getgpt_serve("--idle-timeout", "60", "--head-timeout", "60", open_files=160) as server:
        try:
            for _ in range(250):
                held.append(socket.create_connection(server.address))
            assert server.healthz(timeout=5) < 2.0
            closed = 0
            # /healthz was answered after every connection above was accepted and every one made
            # way for was closed; a moment more for those closes to show, counted all at once.
            closed = closed_by_peer(held, within=0.2)
            assert 250 - 96 <= closed <= 250 - 90
            assert server.process.poll() is None
        finally:
            for sock in held:
                sock.close()


def test_connections_still_sending_their_heads_when_they_must_make_way_are_told_503() -> None:
    # 96 connections (the cap under ulimit -n 160) each mid-head, then 120 newcomers: each of the
    # 96 is told 503 and closed at once -- not kept lingering, which would hold its descriptor
    # while the newcomers take theirs, past the limit.
    with getgpt_serve("--idle-timeout", "60", "--head-timeout", "60", open_files=160) as server:
        slow = [socket.create_connection(server.address) for _ in range(96)]
        held: list[socket.socket] = []
        try:
            for sock in slow:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            # Each one mid-head for the server too: it has read what they sent.
            wait_until(
                lambda: (
                    sockets.unread(server.port, *map(sockets.port_of, slow)) == 0
                    and sockets.accept_queue(server.port) == 0
                ),
                what="the server read the 96 heads begun",
            )
            held = [socket.create_connection(server.address) for _ in range(120)]
            assert server.healthz(timeout=5) < 1.0
            for sock in slow:
                sock.settimeout(5)
                received = b""
                with contextlib.suppress(ConnectionError):
                    while data := sock.recv(65536):
                        received += data
                assert status_of(received) == 503
                assert b'"code":"too_many_connections"' in received
        finally:
            for sock in slow + held:
                sock.close()


def test_with_every_connection_busy_a_newcomer_gets_503_but_healthz_answers() -> None:
    # ulimit -n 80: 16 connections. Each of 16 slow streams holds one for ~10 s.
    with getgpt_serve("--echo-delay", "0.5", open_files=80) as server:
        busy = [socket.create_connection(server.address) for _ in range(16)]
        try:
            for sock in busy:
                sock.sendall(chat_request("x" * 80))
            wait_until(lambda: server.health()["active_streams"] == 16, 5)
            refused = send_head(server.address, chat_request("one more"))
            assert refused.status == 503
            assert b'"code":"too_many_connections"' in refused.received
            assert b"retry-after: 1" in refused.received.lower()
            assert server.healthz() < 1.0
            assert server.health()["active_streams"] == 16  # nobody busy was cut for the newcomers
        finally:
            for sock in busy:
                sock.close()


def test_a_client_that_stops_reading_is_dropped_at_the_write_timeout_and_its_slot_freed() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 40_000  # 1.8 MB: ~60 MB of events
    with getgpt_serve("--write-timeout", "2", "--max-body-bytes", str(4 << 20)) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(server.address)
        try:
            sent = time.monotonic()  # before the request: the write timeout can only begin later
            sock.sendall(chat_request(text))
            wait_until(lambda: server.health()["active_streams"] == 1, 5)
            started = time.monotonic()
            waited = wait_until(lambda: server.health()["active_streams"] == 0, 2 + 3 * MARGIN)
            assert waited < 2 + MARGIN, waited  # the buffers filled within the first second
            assert time.monotonic() - sent >= 1.9  # not dropped before the write timeout (2 s)
            health = server.health()
            assert health["disconnects_total"] == 1  # the stream ended as a client gone
            assert server.healthz() < 1.0
            # The connection is gone: what was buffered can be read, then it ends.
            sock.settimeout(5)
            received = 0
            try:
                while data := sock.recv(1 << 20):
                    received += len(data)
            except ConnectionError:
                pass
            assert received < len(text) * 10
            assert time.monotonic() - started < 20
        finally:
            sock.close()


def test_with_every_connection_busy_idle_newcomers_do_not_keep_healthz_out() -> None:
    # All 16 connections busy; 70 more that send nothing would take every descriptor left under
    # ulimit -n 80. Those past the cap wait like any connection, so each newcomer closes the
    # longest-waiting one, and /healthz still gets in.
    with getgpt_serve("--echo-delay", "0.5", "--idle-timeout", "60", open_files=80) as server:
        busy = [socket.create_connection(server.address) for _ in range(16)]
        idle_ones: list[socket.socket] = []
        try:
            for sock in busy:
                sock.sendall(chat_request("x" * 80))
            wait_until(lambda: server.health()["active_streams"] == 16, 5)
            idle_ones = [socket.create_connection(server.address) for _ in range(70)]
            assert server.healthz(timeout=5) < 2.0
            assert server.health()["active_streams"] == 16
        finally:
            for sock in busy + idle_ones:
                sock.close()


def test_a_client_pausing_its_reads_for_less_than_the_write_timeout_gets_the_whole_stream() -> None:
    text = "pause and read. " * 20_000
    with getgpt_serve("--write-timeout", "2") as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(server.address)
        with sock:
            sock.sendall(chat_request(text))
            received = bytearray()
            deadline = time.monotonic() + 60
            while not received.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"):
                assert time.monotonic() < deadline
                time.sleep(1.0)  # the behaviour under test: reads nothing for a second, then all there is
                sock.settimeout(0.2)
                with contextlib.suppress(TimeoutError):
                    while data := sock.recv(1 << 16):
                        received += data
        assert server.health()["disconnects_total"] == 0
    pieces = [json.loads(line[6:]) for line in received.split(b"\n") if line.startswith(b"data: {")]
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in pieces) == text


def test_a_connection_cap_the_open_files_limit_cannot_hold_is_a_startup_error() -> None:
    result = run_getgpt("serve", "--max-connections", "500", open_files=160)
    assert result.returncode == 1
    assert "max_connections 500 is more than the open-files limit (ulimit -n 160) allows" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_automatic_connection_cap_leaves_room_for_the_server_and_its_upstream() -> None:
    assert connection_limit(ServerConfig(), 1024) == 1024 - 64
    forwarding = ServerConfig(backend="openai", upstream="http://127.0.0.1:9/v1")
    assert connection_limit(forwarding, 1024) == (1024 - 64 - 100) // 2  # two sockets a reply
    assert connection_limit(ServerConfig(max_connections=100), 1024) == 100
    with pytest.raises(ValueError, match="too low to serve"):
        connection_limit(ServerConfig(), 64)
