"""The client's decisions (MockTransport) and its I/O against a real server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import getgpt
from getgpt import (
    AsyncClient,
    Client,
    CloudflareBlocked,
    IncompleteStream,
    ProtocolError,
    RateLimitError,
    StatusError,
    Timeout,
    TransportError,
    ValidationError,
)
from getgpt.protocol.request import parse_request

from ..support.scripted import Live, chunk, stream_of

HI = [{"role": "user", "content": "Hi"}]
SSE = {"content-type": "text/event-stream"}


class ScriptedHandler:
    """A MockTransport handler that answers from a script and keeps the requests."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_for(recorder: ScriptedHandler, **options: object) -> Client:
    return Client("http://test.invalid", transport=httpx.MockTransport(recorder), **options)  # type: ignore[arg-type]


def ok(pieces: list[str]) -> httpx.Response:
    return httpx.Response(200, headers=SSE, content=stream_of(pieces))


def test_request_on_the_wire() -> None:
    recorder = ScriptedHandler(ok(["a"]))
    with client_for(recorder) as client:
        assert client.complete(HI, model="m1", temperature=0.3) == "a"
    sent = recorder.requests[0]
    assert str(sent.url) == "http://test.invalid/api/chat/stream"
    assert sent.method == "POST"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["referer"] == "http://test.invalid/"
    assert sent.headers["user-agent"].startswith("Mozilla/5.0")
    body = json.loads(sent.content)
    assert list(body) == ["signature"]
    request = parse_request(getgpt.decrypt(body["signature"]))
    assert (request.model, request.temperature, request.messages[0].content) == ("m1", 0.3, "Hi")


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GETGPT_BASE_URL", "http://elsewhere.invalid:8080/root")
    assert Client().url == "http://elsewhere.invalid:8080/root/api/chat/stream"
    monkeypatch.delenv("GETGPT_BASE_URL")
    assert Client("http://x.invalid/").url == "http://x.invalid/api/chat/stream"
    # The seed's server is named only when asked for: it is gone.
    assert Client("https://chat.getgpt.world/").url == "https://chat.getgpt.world/api/chat/stream"


@pytest.mark.parametrize("make", [Client, getgpt.AsyncClient])
def test_no_server_given_is_one_error_that_says_how_to_give_one(
    make: type[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    # It used to send to the seed's dead domain and end in "Name or service not known".
    monkeypatch.delenv("GETGPT_BASE_URL", raising=False)
    with pytest.raises(ValueError) as raised:
        make()
    said = str(raised.value)
    assert said.startswith("no GetGpt server given: the original one (https://chat.getgpt.world/) is gone.")
    for remedy in ("GETGPT_BASE_URL", "base_url=", "getgpt serve"):
        assert remedy in said


def test_invalid_request_is_refused_before_sending() -> None:
    recorder = ScriptedHandler()
    with pytest.raises(ValidationError):
        client_for(recorder).complete(HI, temperature=9)
    assert recorder.requests == []


def test_any_2xx_is_accepted_and_finish_reason_reachable() -> None:
    recorder = ScriptedHandler(httpx.Response(201, headers=SSE, content=stream_of(["x", "y"])))
    stream = client_for(recorder).stream(HI)
    assert list(stream) == ["x", "y"]
    assert stream.finish_reason == "stop" and stream.text == "xy"


def test_json_reply_when_not_streaming() -> None:
    body = {"choices": [{"message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}]}
    recorder = ScriptedHandler(httpx.Response(200, json=body))
    reply = client_for(recorder).complete(HI, stream=False)
    assert reply == "whole" and reply.finish_reason == "stop"


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retries_retryable_statuses_then_succeeds(status: int) -> None:
    recorder = ScriptedHandler(httpx.Response(status, headers={"retry-after": "0"}), ok(["fine"]))
    assert client_for(recorder).complete(HI) == "fine"
    assert len(recorder.requests) == 2


def test_retries_connect_errors_with_backoff_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("getgpt.client.clients.time.sleep", waits.append)
    refused = httpx.ConnectError("refused")
    recorder = ScriptedHandler(refused, refused, refused)
    with pytest.raises(TransportError, match="refused"):
        client_for(recorder, max_retries=2).complete(HI)
    assert len(recorder.requests) == 3
    assert len(waits) == 2 and 0.3 <= waits[0] <= 0.5 and 0.7 <= waits[1] <= 1.0


def test_retry_after_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("getgpt.client.clients.time.sleep", waits.append)
    recorder = ScriptedHandler(httpx.Response(429, headers={"retry-after": "3"}), ok(["x"]))
    client_for(recorder).complete(HI)
    assert waits == [3.0]


def test_too_long_a_retry_after_raises_rate_limit_at_once() -> None:
    recorder = ScriptedHandler(
        httpx.Response(429, headers={"retry-after": "120"}, json={"error": {"message": "slow down"}})
    )
    with pytest.raises(RateLimitError, match="slow down") as caught:
        client_for(recorder).complete(HI)
    assert caught.value.retry_after == 120.0 and caught.value.status_code == 429
    assert len(recorder.requests) == 1


def test_no_retry_for_client_errors_and_body_excerpt_kept() -> None:
    recorder = ScriptedHandler(
        httpx.Response(422, json={"error": {"message": "bad temperature", "type": "invalid"}})
    )
    with pytest.raises(StatusError, match=r"HTTP 422.*bad temperature") as caught:
        client_for(recorder).complete(HI)
    assert caught.value.status_code == 422 and "bad temperature" in caught.value.body
    assert len(recorder.requests) == 1


def test_cloudflare_block_page_is_recognised() -> None:
    page = b"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head></html>"
    recorder = ScriptedHandler(httpx.Response(403, headers={"content-type": "text/html"}, content=page))
    with pytest.raises(CloudflareBlocked, match="Cloudflare"):
        client_for(recorder).complete(HI)


def test_api_error_behind_cloudflare_is_not_a_block() -> None:
    recorder = ScriptedHandler(
        httpx.Response(403, headers={"cf-ray": "1-AMS"}, json={"error": {"message": "no key"}})
    )
    with pytest.raises(StatusError, match="no key") as caught:
        client_for(recorder).complete(HI)
    assert type(caught.value) is StatusError


def test_html_page_with_200_is_a_protocol_error() -> None:
    recorder = ScriptedHandler(
        httpx.Response(200, headers={"content-type": "text/html"}, content=b"<html></html>")
    )
    with pytest.raises(ProtocolError, match="HTML"):
        client_for(recorder).complete(HI)


class Breaking(httpx.SyncByteStream):
    def __init__(self, parts: list[bytes], error: Exception) -> None:
        self.parts, self.error, self.closed = parts, error, False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.parts
        raise self.error

    def close(self) -> None:
        self.closed = True


def test_no_retry_after_the_first_byte_and_partial_kept() -> None:
    body = Breaking([chunk("Hel"), chunk("lo")], httpx.ReadError("connection reset"))
    recorder = ScriptedHandler(httpx.Response(200, headers=SSE, stream=body), ok(["never"]))
    with pytest.raises(TransportError, match="reset") as caught:
        client_for(recorder).complete(HI)
    assert caught.value.partial == "Hello"
    assert len(recorder.requests) == 1 and body.closed


def test_read_timeout_mid_stream_is_a_timeout_with_partial() -> None:
    body = Breaking([chunk("par")], httpx.ReadTimeout("slow"))
    recorder = ScriptedHandler(httpx.Response(200, headers=SSE, stream=body))
    with pytest.raises(Timeout) as caught:
        client_for(recorder).complete(HI)
    assert caught.value.partial == "par" and isinstance(caught.value, TimeoutError)


def test_incomplete_stream_carries_text() -> None:
    recorder = ScriptedHandler(httpx.Response(200, headers=SSE, content=chunk("only") + chunk(" part")))
    with pytest.raises(IncompleteStream) as caught:
        client_for(recorder).complete(HI)
    assert caught.value.partial == "only part"


def test_breaking_out_closes_the_response() -> None:
    body = Breaking([chunk("a"), chunk("b"), chunk("c")], httpx.ReadError("never reached"))
    recorder = ScriptedHandler(httpx.Response(200, headers=SSE, stream=body))
    with client_for(recorder).stream(HI) as stream:
        for piece in stream:
            assert piece == "a"
            break
    assert body.closed


def test_async_client_decisions() -> None:
    async def main() -> None:
        recorder = ScriptedHandler(httpx.Response(503), ok(["as", "ync"]))
        transport = httpx.MockTransport(recorder)
        async with AsyncClient("http://test.invalid", transport=transport) as client:
            stream = client.stream(HI)
            assert [p async for p in stream] == ["as", "ync"]
            assert stream.finish_reason == "stop"
        assert len(recorder.requests) == 2

    asyncio.run(main())


# --- against a real server ---------------------------------------------------------------------


def test_pieces_arrive_as_they_are_sent(live: tuple[Live, str], via: Any) -> None:
    script, url = live
    with via(Client, url) as client, client.stream([{"role": "user", "content": "wait"}]) as stream:
        assert next(stream) == "first"  # arrives while the server still holds the rest back
        script.release.set()
        assert list(stream) == ["second"]


def test_connections_are_reused(live: tuple[Live, str], via: Any) -> None:
    script, url = live
    with via(Client, url) as client:
        for word in ("Привет мир 🙂", "one two", "x"):
            assert client.complete([{"role": "user", "content": word}]) == word + " "
    assert len(set(script.peers)) == 1


def test_breaking_out_disconnects_from_the_server(live: tuple[Live, str], via: Any) -> None:
    script, url = live
    with via(Client, url) as client:
        for i, _ in enumerate(client.stream([{"role": "user", "content": "endless"}])):
            if i == 3:
                break
    assert script.disconnected.wait(5)


def test_async_against_live_server(live: tuple[Live, str], via: Any) -> None:
    _, url = live

    async def main() -> list[str]:
        async with via(AsyncClient, url) as client:
            return await asyncio.gather(
                *(client.complete([{"role": "user", "content": f"n{i}"}]) for i in range(20))
            )

    assert asyncio.run(main()) == [f"n{i} " for i in range(20)]


def test_connection_refused_is_a_transport_error() -> None:
    from ..support.servers import free_port

    with Client(f"http://127.0.0.1:{free_port()}/", max_retries=0) as client, pytest.raises(TransportError):
        client.complete(HI)


def test_cancelling_an_async_stream_disconnects_from_the_server(live: tuple[Live, str], via: Any) -> None:
    script, url = live

    async def main() -> None:
        async with via(AsyncClient, url) as client:
            started = asyncio.Event()

            async def read() -> None:
                async for _ in client.stream([{"role": "user", "content": "endless"}]):
                    started.set()

            task = asyncio.create_task(read())
            await asyncio.wait_for(started.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Closed by the cancellation itself, while the client is still open.
            assert await asyncio.to_thread(script.disconnected.wait, 5)

    asyncio.run(main())


HUGE = [{"role": "user", "content": "x" * 5_000_000}]


@pytest.fixture
def refusing() -> Iterator[str]:
    """A getgpt server that answers 413 from Content-Length and closes before reading 10 MB."""
    from getgpt.server import ServerConfig, create_app

    from ..support.servers import serve

    with serve(create_app(ServerConfig(max_body_bytes=100_000))) as url:
        yield url


def test_a_request_refused_before_it_was_read_is_the_status_not_a_broken_write(
    refusing: str, via: Any
) -> None:
    # The write fails midway; the answer that did arrive is what the caller must see.
    with via(Client, refusing, max_retries=0) as client, pytest.raises(StatusError) as caught:
        client.complete(HUGE)
    assert caught.value.status_code == 413


def test_async_too_on_the_lean_path(refusing: str) -> None:
    # Through httpx the async client cannot do this: httpcore's read after the failed write
    # raises ReadError, so it reports the broken connection instead of the 413.
    async def main() -> None:
        async with AsyncClient(refusing, max_retries=0) as client:
            await client.complete(HUGE)

    with pytest.raises(StatusError) as caught:
        asyncio.run(main())
    assert caught.value.status_code == 413
