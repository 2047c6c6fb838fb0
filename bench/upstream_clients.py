"""The gateway's upstream leg alone: one short streamed reply, HTTP client by HTTP client.

Benchmark 5 (bench/gateway.py) measures what the whole gateway adds; most of it is the request
the ``openai`` backend makes upstream. This script times that request by itself, in one event
loop, against the bare emitter, with every contender keeping its connection alive as the
backend does, one request at a time, taking turns request by request:

- ``OpenAIBackend``: the backend itself (``getgpt.server.backends.base``), text pieces as the pump gets them;
- ``httpx``: a plain pooled ``httpx.AsyncClient`` stream read with ``aiter_raw``;
- ``httpcore``: httpcore's connection pool, without httpx's layers on top;
- ``aiohttp``: an ``aiohttp.ClientSession`` read with ``iter_any`` (if installed);
- ``getgpt lean HTTP/1.1 pool``: the clients' own :class:`getgpt._transports.http11.async_pool.AsyncPool`;
- ``raw socket``: asyncio streams, a hand-written request and de-chunking: the *bound*.

Each one feeds the body to getgpt's ``ReplyParser`` and its joined text is checked.
``python -m bench.upstream_clients [--loop uvloop|asyncio] [--repeats N] [--chunks N]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from getgpt.protocol.reply import ReplyParser
from getgpt.server.backends.base import OpenAIBackend
from getgpt.server.chat.wire import Outcome
from getgpt.server.config import ServerConfig

from .common import machine, percentile, table
from .emitter import EmitterProcess
from .loadgen import chat_body
from .stream import expected_text

Fetch = Callable[[], Awaitable[str]]
HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream", "Accept-Encoding": "identity"}


def _parsed(chunks: list[bytes]) -> str:
    parser = ReplyParser()
    out: list[str] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return "".join(out)


async def _backend(url: str, body: bytes) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    backend = OpenAIBackend(ServerConfig(backend="openai", upstream=url.rsplit("/", 1)[0]))
    from getgpt.protocol.request import parse_request

    request = parse_request(body)

    async def fetch() -> str:
        return "".join([piece async for piece in backend.stream(request, Outcome())])

    return fetch, backend.aclose


async def _httpx(url: str, body: bytes) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    client = httpx.AsyncClient(headers=HEADERS)

    async def fetch() -> str:
        async with client.stream("POST", url, content=body) as response:
            return _parsed([chunk async for chunk in response.aiter_raw()])

    return fetch, client.aclose


async def _httpcore(url: str, body: bytes) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    import httpcore

    pool = httpcore.AsyncConnectionPool()
    headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]

    async def fetch() -> str:
        async with pool.stream("POST", url, headers=headers, content=body) as response:
            return _parsed([chunk async for chunk in response.aiter_stream()])

    return fetch, pool.aclose


async def _lean(url: str, body: bytes) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    from getgpt._transports.base import Timeouts
    from getgpt._transports.http11.async_pool import AsyncPool
    from getgpt._transports.http11.origin import endpoint

    pool = AsyncPool(endpoint(url, HEADERS), Timeouts(read=60.0))

    async def fetch() -> str:
        reply = await pool.send(body)
        try:
            return _parsed([chunk async for chunk in reply.reads()])
        finally:
            await reply.aclose()

    return fetch, pool.aclose


async def _aiohttp(url: str, body: bytes) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(headers=HEADERS, auto_decompress=False)

    async def fetch() -> str:
        async with session.post(url, data=body) as response:
            return _parsed([chunk async for chunk in response.content.iter_any()])

    return fetch, session.close


async def _raw(url: str, body: bytes) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    rest = url.split("//", 1)[1]
    hostport, path = rest.split("/", 1)
    host, port = hostport.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def fetch() -> str:
        writer.write(head + body)
        await reader.readuntil(b"\r\n\r\n")  # the emitter always answers 200, chunked
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            if not size:
                await reader.readexactly(2)
                return _parsed(chunks)
            chunks.append((await reader.readexactly(size + 2))[:-2])

    async def close() -> None:
        writer.close()

    return fetch, close


CONTENDERS: dict[str, Callable[[str, bytes], Awaitable[tuple[Fetch, Callable[[], Awaitable[None]]]]]] = {
    "getgpt OpenAIBackend": _backend,
    "httpx AsyncClient": _httpx,
    "httpcore pool": _httpcore,
    "aiohttp ClientSession": _aiohttp,
    "getgpt lean HTTP/1.1 pool": _lean,
    "raw socket (bound)": _raw,
}


async def _measure(url: str, chunks: int, repeats: int) -> dict[str, list[float]]:
    body = chat_body("Hi")
    expected = expected_text(chunks)
    fetches: dict[str, Fetch] = {}
    closers: list[Callable[[], Awaitable[None]]] = []
    for name, make in CONTENDERS.items():
        try:
            fetch, close = await make(url, body)
        except ImportError:
            continue
        fetches[name] = fetch
        closers.append(close)
    names = list(fetches)
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for r in range(repeats + 20):  # the first 20: warm-up (connections, caches)
            if r % 50 == 0:
                gc.collect()
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                started = time.perf_counter()
                text = await fetches[name]()
                spent = time.perf_counter() - started
                if text != expected:
                    raise AssertionError(f"{name} got the wrong text")
                if r >= 20:
                    times[name].append(spent * 1000)
    finally:
        for close in closers:
            await close()
    return times


def run_upstream(chunks: int, repeats: int, loop: str) -> str:
    with EmitterProcess(prebuild=(chunks,)) as emitter:
        url = emitter.base(chunks) + "v1/chat/completions"
        if loop == "uvloop":
            import uvloop

            times = uvloop.run(_measure(url, chunks, repeats))
        else:
            times = asyncio.run(_measure(url, chunks, repeats))
    bound = statistics.median(times["raw socket (bound)"])
    rows = [
        [
            name,
            f"{statistics.median(t):.3f}",
            f"{percentile(t, 99):.3f}",
            f"{statistics.median(t) - bound:+.3f}",
        ]
        for name, t in times.items()
    ]
    return (
        f"upstream leg: {repeats} pooled requests each, {chunks}-chunk replies, taking turns, {loop} loop\n\n"
        + table(["ms per request", "p50", "p99", "p50 over the bound"], rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    print(machine(), "\n")
    print(run_upstream(args.chunks, args.repeats, args.loop))


if __name__ == "__main__":
    main()
