"""A lean load generator: raw asyncio sockets, no HTTP library, so the server is what is measured.

Each stream is one ``Connection: close`` POST whose response is kept as raw bytes while it
arrives; only the time of the first content byte is noted on the way. Status, framing and the
text are checked after the run (:func:`text_of`), so checking costs the run nothing.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
from dataclasses import dataclass, field

from getgpt import GetGptError
from getgpt.protocol.reply import ReplyParser

__all__ = ["Stream", "chat_body", "open_streams", "text_of"]

# A content delta with at least one character: the role chunk's "content":"" does not count.
_FIRST_TEXT = re.compile(rb'"content":"[^"]')
_END = b"\r\n0\r\n\r\n"


def chat_body(text: str, model: str = "gpt-3.5-turbo") -> bytes:
    """An OpenAI chat request whose last user message is ``text`` (the echo backend's reply)."""
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}], "stream": True}
    ).encode()


@dataclass
class Stream:
    """One request's timings and raw response."""

    started: float = 0.0
    first: float | None = None  # when the first text arrived
    ended: float | None = None
    error: str | None = None
    parts: list[bytes] = field(default_factory=list)

    @property
    def ttfc(self) -> float | None:
        return None if self.first is None else self.first - self.started


class _Protocol(asyncio.Protocol):
    def __init__(self, stream: Stream, request: bytes, done: asyncio.Future[None]) -> None:
        self.stream, self.request, self.done = stream, request, done
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        stream = self.stream
        stream.parts.append(data)
        if stream.first is None and _FIRST_TEXT.search(b"".join(stream.parts[-2:])):
            stream.first = time.perf_counter()
        if data.endswith(_END) or (len(data) < len(_END) and b"".join(stream.parts[-2:]).endswith(_END)):
            stream.ended = time.perf_counter()
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.stream.error is None:
            self.stream.error = f"{type(exc).__name__}: {exc}"
        if not self.done.done():
            self.done.set_result(None)


def request_bytes(port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def one_stream(port: int, request: bytes, stream: Stream, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    stream.started = time.perf_counter()
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(stream, request, done), "127.0.0.1", port), timeout
        )
    except (OSError, asyncio.TimeoutError) as exc:
        stream.error = f"connect: {type(exc).__name__}: {exc}"
        return
    try:
        await asyncio.wait_for(done, timeout)
    except asyncio.TimeoutError:
        stream.error = "timed out"
        transport.abort()


async def open_streams(
    port: int, path: str, bodies: list[bytes], spread: float, timeout: float = 120.0
) -> list[Stream]:
    """Open one stream per body, their starts spread evenly over ``spread`` seconds; await all.

    The collector's youngest generation waits for 200,000 allocations, as in the server
    (getgpt.server.running.serving.tune_garbage_collector): with the default 700, this process's own
    collections over 10,000 streams' objects were counted as the server's time to first chunk
    (p50 at 10,000 streams opened over 2 s, --workers 2: 0.83 s with them, 0.40 s without).
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(200_000, *thresholds[1:])
    try:
        return await _open_streams(port, path, bodies, spread, timeout)
    finally:
        gc.set_threshold(*thresholds)


async def _open_streams(
    port: int, path: str, bodies: list[bytes], spread: float, timeout: float
) -> list[Stream]:
    streams = [Stream() for _ in bodies]
    start = time.perf_counter()
    step = spread / len(bodies) if bodies else 0.0

    async def launch(i: int) -> None:
        delay = start + i * step - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await one_stream(port, request_bytes(port, path, bodies[i]), streams[i], timeout)

    await asyncio.gather(*(launch(i) for i in range(len(bodies))))
    return streams


def text_of(stream: Stream) -> str:
    """The reply's text, or raise ValueError saying what is wrong with the response."""
    raw = b"".join(stream.parts)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"no response head ({len(raw)} bytes)")
    status = head.split(b" ", 2)[1] if head.startswith(b"HTTP/1.1 ") else b"?"
    if status != b"200":
        raise ValueError(f"HTTP {status.decode()}: {body[:200]!r}")
    if b"transfer-encoding: chunked" not in head.lower():
        raise ValueError("response is not chunked")
    parser = ReplyParser()
    pieces: list[str] = []
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise ValueError("response cut off inside the chunked framing")
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            break
        pieces += parser.feed(body[eol + 2 : eol + 2 + size])
        pos = eol + 4 + size
    try:
        pieces += parser.close()
    except GetGptError as exc:
        raise ValueError(str(exc)) from None
    return "".join(pieces)


async def keepalive_load(
    port: int, path: str, body: bytes, concurrency: int, total: int, *, timeout: float = 60.0
) -> tuple[float, list[float], int]:
    """``total`` requests by ``concurrency`` workers, each on its own kept-alive connection, as
    ``hey`` sends them: seconds in all, each request's seconds, and how many did not end in a
    whole chunked 200 response. The fallback when ``hey`` is not installed."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    failed = 0
    left = total

    async def worker() -> None:
        nonlocal left, failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left > 0:
                left -= 1
                started = time.perf_counter()
                writer.write(request)
                data = b""
                while not data.endswith(_END):
                    more = await asyncio.wait_for(reader.read(65536), timeout)
                    if not more:
                        raise ConnectionError("closed mid-response")
                    data += more
                latencies.append(time.perf_counter() - started)
                if not data.startswith(b"HTTP/1.1 200 "):
                    failed += 1
        finally:
            writer.close()

    started = time.perf_counter()
    results = await asyncio.gather(*(worker() for _ in range(concurrency)), return_exceptions=True)
    failed += sum(isinstance(result, BaseException) for result in results)
    return time.perf_counter() - started, latencies, failed
