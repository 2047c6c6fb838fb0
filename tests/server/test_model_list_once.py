"""``GET /v1/models`` asks the upstream once however many clients wait on a cold cache, and a
failure is answered from memory for a few seconds rather than asked again by every request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from getgpt.server import ServerConfig, create_app

from ..support.loopback import LoopbackServer, read_head
from ..support.processes import SSL_CONTEXT
from ..support.servers import serve, wait_until

MODELS = {"object": "list", "data": [{"id": "m-1", "object": "model", "created": 0, "owned_by": "x"}]}


class SlowModels(LoopbackServer):
    """Answers ``GET /v1/models`` (``status``) only once the test lets it; counts the asks."""

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status
        self.asked = 0
        self.go = asyncio.Event()

    def let_go(self) -> None:
        self._loop.call_soon_threadsafe(self.go.set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            self.asked += 1
            await self.go.wait()
            error = {"error": {"message": "the model registry is down", "type": "server_error"}}
            body = json.dumps(MODELS if self.status == 200 else error).encode()
            head = f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()


@pytest.fixture
def slow() -> Iterator[SlowModels]:
    with SlowModels() as upstream:
        yield upstream


class _Entered:
    """The app, counting the requests that have reached it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.count += 1
        await self.app(scope, receive, send)


def test_clients_waiting_on_a_cold_cache_share_one_upstream_request(slow: SlowModels) -> None:
    config = ServerConfig(backend="openai", upstream=f"http://127.0.0.1:{slow.port}/v1", models_cache_ttl=60)
    app = _Entered(create_app(config))
    with serve(app) as url, ThreadPoolExecutor(20) as pool:
        waiting = [
            pool.submit(httpx.get, url + "v1/models", timeout=20, verify=SSL_CONTEXT) for _ in range(20)
        ]
        # All twenty are in the server, waiting, before the upstream answers anyone.
        wait_until(lambda: app.count == 20 and slow.asked >= 1, 10, "twenty clients waiting")
        slow.let_go()
        answers = [future.result() for future in waiting]
    assert [answer.status_code for answer in answers] == [200] * 20
    assert all(answer.json()["data"] == MODELS["data"] for answer in answers)
    assert slow.asked == 1  # one request for twenty clients (it was one each)


def test_a_failure_to_list_the_models_is_answered_again_without_asking() -> None:
    with SlowModels(status=500) as failing:
        failing.let_go()
        upstream = f"http://127.0.0.1:{failing.port}/v1"
        with serve(create_app(ServerConfig(backend="openai", upstream=upstream, models_cache_ttl=60))) as url:
            answers = [httpx.get(url + "v1/models", timeout=10, verify=SSL_CONTEXT) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [500] * 5
    assert {answer.json()["error"]["message"] for answer in answers} == {"the model registry is down"}
    assert failing.asked == 1  # every request asked the failing upstream again
