"""A client that goes away mid-stream stops the backend and closes the upstream within 1 s.

Real sockets only: a raw socket or an httpx stream closed mid-body, against real uvicorn servers,
with the upstream's own ``active_streams`` (or its own record of the disconnect) as the witness.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from getgpt.protocol.envelope import encrypt
from getgpt.protocol.request import build_request, encode
from getgpt.server import ServerConfig, create_app

from ..support.processes import SSL_CONTEXT
from ..support.sdk import openai_sdk
from ..support.servers import health, serve, wait_until

LONG = "медленно 🐢 " * 40  # 480 characters: 24 s at one character every 50 ms


def active(url: str) -> int:
    return health(url)["active_streams"]


def open_raw_stream(url: str, path: str, body: bytes) -> socket.socket:
    """POST ``body`` over a raw socket and read until the first content event arrives."""
    host, port = url.removeprefix("http://").strip("/").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    seen = b""
    while seen.count(b"data: ") < 2:
        data = sock.recv(4096)
        assert data, "the server closed the connection"
        seen += data
    assert seen.startswith(b"HTTP/1.1 200 ")
    return sock


@pytest.fixture(scope="module")
def slow_b() -> Iterator[str]:
    with serve(create_app(ServerConfig(echo_delay=0.05, echo_piece_chars=1))) as base:
        yield base


@pytest.mark.parametrize("backend", ["getgpt", "openai"])
def test_httpx_stream_closed_mid_body_closes_the_upstream(slow_b: str, backend: str) -> None:
    upstream = slow_b + "v1" if backend == "openai" else slow_b
    with serve(create_app(ServerConfig(backend=backend, upstream=upstream))) as a:
        signature = encrypt(encode(build_request([{"role": "user", "content": LONG}])).decode())
        with (
            httpx.Client(timeout=10, verify=SSL_CONTEXT) as http,
            http.stream("POST", a + "api/chat/stream", json={"signature": signature}) as response,
        ):
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert active(a) == 1
            assert active(slow_b) == 1
            response.close()
        upstream_gone = wait_until(lambda: active(slow_b) == 0, 1.0)
        wait_until(lambda: active(a) == 0, 1.0)
        assert health(a)["disconnects_total"] == 1
        print(f"{backend}: upstream closed within {upstream_gone * 1000:.0f} ms of the client")


def test_raw_socket_closed_mid_body_on_v1_closes_the_upstream(slow_b: str) -> None:
    with serve(create_app(ServerConfig(backend="openai", upstream=slow_b + "v1"))) as a:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": LONG}], "stream": True})
        sock = open_raw_stream(a, "v1/chat/completions", body.encode())
        assert active(slow_b) == 1
        sock.close()
        wait_until(lambda: active(slow_b) == 0 and active(a) == 0, 1.0)


def test_openai_sdk_stream_closed_early(slow_b: str) -> None:
    with serve(create_app(ServerConfig(backend="getgpt", upstream=slow_b))) as a:
        with openai_sdk(a + "v1", "x", max_retries=0) as sdk:
            stream = sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": LONG}], stream=True
            )
            first = next(iter(stream))
            assert first.choices[0].delta.role == "assistant"
            stream.close()
        wait_until(lambda: active(slow_b) == 0 and active(a) == 0, 1.0)


def test_echo_stops_when_the_client_leaves(slow_b: str) -> None:
    signature = encrypt(encode(build_request([{"role": "user", "content": LONG}])).decode())
    sock = open_raw_stream(slow_b, "api/chat/stream", json.dumps({"signature": signature}).encode())
    assert active(slow_b) == 1
    sock.close()
    wait_until(lambda: active(slow_b) == 0, 1.0)


class Hanging:
    """An upstream that accepts a request and never answers; it records when the caller hangs up."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.hung_up = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        self.arrived.set()
        while (await receive())["type"] != "http.disconnect":
            pass
        self.hung_up.set()


def test_disconnect_before_the_first_piece_closes_a_hanging_upstream() -> None:
    hanging = Hanging()
    with (
        serve(hanging) as upstream,
        serve(create_app(ServerConfig(backend="openai", upstream=upstream + "v1"))) as a,
    ):
        host, port = a.removeprefix("http://").strip("/").split(":")
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            assert hanging.arrived.wait(5)
            assert active(a) == 1
        start = time.monotonic()
        assert hanging.hung_up.wait(1.0), "the upstream request was not closed within 1 s"
        print(f"hanging upstream closed {(time.monotonic() - start) * 1000:.0f} ms after the client")
        wait_until(lambda: active(a) == 0, 1.0)


def test_many_clients_leaving_at_once_leave_nothing_open(slow_b: str) -> None:
    with serve(create_app(ServerConfig(backend="getgpt", upstream=slow_b))) as a:
        signature = encrypt(encode(build_request([{"role": "user", "content": LONG}])).decode())
        body = json.dumps({"signature": signature}).encode()
        sockets = [open_raw_stream(a, "api/chat/stream", body) for _ in range(20)]
        assert active(slow_b) == 20
        for sock in sockets:
            sock.close()
        wait_until(lambda: active(slow_b) == 0 and active(a) == 0, 2.0)
        assert health(a)["disconnects_total"] == 20
