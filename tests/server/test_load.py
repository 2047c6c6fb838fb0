"""Load: 1,000 concurrent streams through one server, each reply exactly its own message.

The server (``create_app`` with the echo backend under uvicorn) runs in a subprocess, so its
resident memory can be read from /proc and nothing in the test process pollutes it. Every stream
is held open until all 1,000 have received their first piece, which proves they really are
concurrent; then each is read to its end and must be exactly the message it sent -- no piece
lost, duplicated or taken from another stream. The message of stream ``i`` is built from ``i``
so a crossed chunk is visible.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import getgpt

from ..support.processes import SSL_CONTEXT, process
from ..support.servers import free_port, health, wait_until

STREAMS = 1000
# Long enough that the streams overlap for real, short enough that the test stays well under 60 s.
ECHO_DELAY = 0.02
PIECE_CHARS = 4
ROOT = Path(__file__).resolve().parents[2]


def message(i: int) -> str:
    # Distinct per stream, with multi-byte characters that straddle the 4-character pieces.
    return f"<{i:04d}|" + "".join(f"{(i * 7 + k) % 10}ж😀" for k in range(12)) + f"|{i:04d}>"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# The server, plus one route for the test: the interpreter's live memory blocks after a full
# collection, which unlike RSS does not include what the allocator keeps cached for reuse.
SERVER = """
import gc, sys, uvicorn
from getgpt.server import ServerConfig, create_app

app = create_app(ServerConfig(echo_delay=float(sys.argv[2]), echo_piece_chars=int(sys.argv[3])))

async def probe(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/_test/blocks":
        gc.collect()
        body = str(sys.getallocatedblocks()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    else:
        await app(scope, receive, send)

uvicorn.run(probe, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    command = [sys.executable, "-c", SERVER, str(port), str(ECHO_DELAY), str(PIECE_CHARS)]
    url = f"http://127.0.0.1:{port}/"
    with process(command, url + "healthz") as running:
        yield url, running


def blocks(url: str) -> int:
    return int(httpx.get(url + "_test/blocks", timeout=10, verify=SSL_CONTEXT).text)


async def _one(url: str, context: ssl.SSLContext, i: int, opened: list[int], all_open: asyncio.Event) -> str:
    pieces: list[str] = []
    http = httpx.AsyncClient(timeout=httpx.Timeout(60, connect=30, pool=60), verify=context)
    async with (
        getgpt.AsyncClient(url, http_client=http, max_retries=0) as client,
        client.stream([{"role": "user", "content": message(i)}]) as chat,
    ):
        async for piece in chat:
            pieces.append(piece)
            if len(pieces) == 1:
                opened[0] += 1
                if opened[0] == STREAMS:
                    all_open.set()
                await asyncio.wait_for(all_open.wait(), 45)
        assert chat.finish_reason == "stop"
        assert "".join(pieces) == chat.text
    return "".join(pieces)


async def _storm(url: str) -> list[str]:
    # Each stream has a client of its own. One client with a pool of 1,000 connections cost the
    # test process ~11 s of CPU a run: httpcore's pool scans every connection and queued request
    # whenever a request starts or ends (cProfile: 13 of 22 s in _assign_requests_to_connections),
    # and the storms took ~10 s each. A client a stream: 2 s of CPU and ~2.5 s a storm. They share
    # one SSL context: building one reads the CA bundle (~35 ms).
    context = ssl.create_default_context()
    opened = [0]
    all_open = asyncio.Event()
    return await asyncio.gather(*(_one(url, context, i, opened, all_open) for i in range(STREAMS)))


def _idle(url: str) -> dict[str, int]:
    wait_until(lambda: health(url)["active_streams"] == 0, what="every stream's slot freed")
    return health(url)


def test_thousand_concurrent_streams_each_get_exactly_their_own_message(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = server
    # Warm-up: imports, caches and the allocator's first arenas, so the baseline is the idle server.
    asyncio.run(_small_round(url, 50))
    base_rss, base_blocks = rss_kib(process.pid), blocks(url)

    rounds = []
    for _ in range(2):
        started = time.monotonic()
        replies = asyncio.run(_storm(url))
        elapsed = time.monotonic() - started
        wrong = [i for i, reply in enumerate(replies) if reply != message(i)]
        assert not wrong, f"{len(wrong)} replies differ, first: {wrong[0]}: {replies[wrong[0]]!r}"
        health = _idle(url)
        assert health["active_streams"] == 0
        assert health["failed_total"] == 0 and health["rejected_total"] == 0
        rounds.append((elapsed, rss_kib(process.pid), blocks(url)))

    report = "; ".join(
        f"storm {n}: {elapsed:.1f} s, RSS {rss / 1024:.1f} MiB, {live:,} blocks"
        for n, (elapsed, rss, live) in enumerate(rounds, 1)
    )
    idle = f"Idle: RSS {base_rss / 1024:.1f} MiB, {base_blocks:,} blocks"
    print(f"\n{STREAMS} concurrent streams. {idle}. {report}")
    (_, rss_1, blocks_1), (_, rss_2, blocks_2) = rounds
    # Live objects come back to the idle level: nothing of 2,000 streams stays referenced (a
    # stream's objects alone are hundreds of blocks, so a per-stream leak would be ~10^5).
    assert blocks_2 - base_blocks < 5000, (base_blocks, blocks_1, blocks_2)
    # RSS keeps what the allocator caches after the first storm, but a second storm reuses it
    # rather than growing, and the cache stays bounded.
    assert rss_2 - rss_1 < 4 * 1024, (base_rss, rss_1, rss_2)
    assert rss_2 - base_rss < 40 * 1024, (base_rss, rss_1, rss_2)


async def _small_round(url: str, count: int) -> None:
    async with getgpt.AsyncClient(url, max_retries=0) as client:
        replies = await asyncio.gather(
            *(client.complete([{"role": "user", "content": message(i)}]) for i in range(count))
        )
    assert list(replies) == [message(i) for i in range(count)]
