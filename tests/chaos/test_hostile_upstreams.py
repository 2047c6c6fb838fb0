"""Hostile upstreams behind a real ``getgpt serve`` (a subprocess), through both forwarding
backends: every attack ends in a 502/504 error within the configured bound, with the server's
peak memory growing well under 100 MiB and ``/healthz`` answering afterwards.

The upstream is one raw-socket server on loopback whose behaviour each test chooses
(tests/support/hostile_upstreams.py); the server's peak resident memory over each request is read
from the kernel (tests/support/memory.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..support.faults import FaultUpstream, Script
from ..support.hostile_upstreams import (
    bomb,
    endless_interim,
    header_flood,
    huge_json,
    repeated_header_flood,
    trickled_head,
)
from ..support.memory import MIB, growth
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import ServeProcess, getgpt_serve

#: The server's --upstream-timeout: each read (the upstream here answers at once, but its thread
#: shares a loaded machine).
BOUND = 1.5
#: The server's --upstream-head-timeout, the head in all: short (it was BOUND), as a head trickled
#: a byte each 0.1 s is cut at 0.6 s by the same deadline as at 1.5 s.
HEAD_TIMEOUT = 0.6
MEMORY = 100
#: Seconds past a bound an answer may take on a loaded machine; an attack that got through
#: runs to the client's 60 s.
SLACK = 5.0
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class Switchboard:
    """A script that runs whichever script the test chose last."""

    def __init__(self) -> None:
        self.current: Script | None = None

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.current is not None
        await self.current(reader, writer)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FaultUpstream, Switchboard]]:
    board = Switchboard()
    with FaultUpstream(board) as server:
        yield server, board


@pytest.fixture(scope="module", params=["openai", "getgpt"])
def gateway(
    request: pytest.FixtureRequest, upstream: tuple[FaultUpstream, Switchboard]
) -> Iterator[ServeProcess]:
    backend = str(request.param)
    server, _ = upstream
    target = server.url + "v1" if backend == "openai" else server.url
    options = ["--backend", backend, "--upstream", target, "--upstream-timeout", str(BOUND)]
    options += ["--upstream-head-timeout", str(HEAD_TIMEOUT)]
    with getgpt_serve(*options, "--upstream-connect-timeout", "1") as serve:
        yield serve


def through(
    gateway: ServeProcess, upstream: tuple[FaultUpstream, Switchboard], script: Script
) -> dict[str, Any]:
    """One chat request through the gateway to the upstream running ``script``: what came back."""
    server, board = upstream
    board.current = script
    hits = server.hits
    with growth(gateway.process.pid) as grown:
        started = time.monotonic()
        response = httpx.post(gateway.url + "v1/chat/completions", json=BODY, timeout=60, verify=SSL_CONTEXT)
        seconds = time.monotonic() - started
    gateway.healthz()
    return {
        "status": response.status_code,
        "error": response.json().get("error", {}),
        "seconds": seconds,
        "growth_mib": grown.peak / MIB,
        "hits": server.hits - hits,
    }


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate"])
@pytest.mark.parametrize("kind", ["sse", "json"])
def test_a_compressed_body_the_backend_did_not_ask_for_is_refused_unread(
    gateway: ServeProcess, upstream: tuple[FaultUpstream, Switchboard], coding: str, kind: str
) -> None:
    out = through(gateway, upstream, bomb(coding, kind))
    assert out["status"] == 502, out
    assert "not asked for" in out["error"]["message"]
    assert out["seconds"] < SLACK and out["growth_mib"] < MEMORY
    assert out["hits"] == 1


@pytest.mark.parametrize(
    "script, what",
    [(header_flood(), "headers"), (repeated_header_flood(), "headers"), (endless_interim(), "interim")],
    ids=["header-flood", "repeated-header-flood", "1xx-flood"],
)
def test_a_flooded_head_is_a_502_at_once(
    gateway: ServeProcess, upstream: tuple[FaultUpstream, Switchboard], script: Script, what: str
) -> None:
    out = through(gateway, upstream, script)
    assert out["status"] == 502, out
    assert what in out["error"]["message"]
    assert out["seconds"] < SLACK and out["growth_mib"] < MEMORY
    assert out["hits"] == 1  # a bound broken is not retried


def test_a_head_trickled_a_byte_at_a_time_is_cut_at_the_upstream_head_timeout(
    gateway: ServeProcess, upstream: tuple[FaultUpstream, Switchboard]
) -> None:
    out = through(gateway, upstream, trickled_head(every=0.1))
    assert out["status"] == 504, out
    assert out["error"]["code"] == "upstream_timeout"
    assert HEAD_TIMEOUT - 0.1 < out["seconds"] < HEAD_TIMEOUT + SLACK
    assert out["growth_mib"] < MEMORY and out["hits"] == 1


def test_a_huge_reply_is_refused_as_it_arrives(
    gateway: ServeProcess, upstream: tuple[FaultUpstream, Switchboard]
) -> None:
    # 300 MiB of JSON, held whole to pass on: refused past the reply cap as it arrives.
    out = through(gateway, upstream, huge_json(300 << 20))
    assert out["status"] == 502, out
    assert out["seconds"] < 2 * SLACK and out["growth_mib"] < MEMORY
