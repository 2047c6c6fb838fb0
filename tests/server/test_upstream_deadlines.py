"""``--upstream-head-timeout`` and ``--upstream-max-duration`` through ``getgpt serve``'s forwarding
backends, against an upstream that never stops sending just enough to beat a per-read timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import AbstractContextManager

import httpx
import pytest

from ..support.faults import PATIENCE, STREAM_HEAD, FaultUpstream, Script, events
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import ServeProcess, getgpt_serve
from ..support.servers import wait_until

MARGIN = 2.5
#: The deadlines configured, in seconds: short, as a deadline that holds proves as much at 0.6 s
#: as at 3 s, while the upstream's pace (a byte or a comment each 0.1 s) stays far inside the
#: 30 s per-read timeout that it must beat.
HEAD_TIMEOUT = 0.6
MAX_DURATION = 1.0
PACE = 0.1
HI = {"messages": [{"role": "user", "content": "hi"}]}


def trickled_head(every: float) -> Script:
    """The reply's head one byte each ``every`` seconds: each read is quick, the head never whole."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        deadline = time.monotonic() + PATIENCE
        with contextlib.suppress(ConnectionError):
            for byte in STREAM_HEAD * 10:
                if time.monotonic() > deadline:
                    return
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(every)  # the behaviour under test: a slow upstream's pace

    return script


def text_then_comments(text: str, every: float) -> Script:
    """Some text, then an SSE comment each ``every`` seconds, never the end."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + events(text))
        deadline = time.monotonic() + PATIENCE
        with contextlib.suppress(ConnectionError):
            while time.monotonic() < deadline:
                await writer.drain()
                await asyncio.sleep(every)  # the behaviour under test: a slow upstream's pace
                writer.write(b": still thinking\n\n")

    return script


def forwarding_to(
    upstream: FaultUpstream, backend: str, *options: str
) -> AbstractContextManager[ServeProcess]:
    """``getgpt serve`` with the ``backend`` forwarding backend in front of ``upstream``."""
    url = upstream.url + "v1" if backend == "openai" else upstream.url
    return getgpt_serve("--backend", backend, "--upstream", url, *options)


@pytest.mark.parametrize("backend", ["openai", "getgpt"])
def test_an_upstream_trickling_its_head_is_cut_off_at_the_head_timeout(backend: str) -> None:
    with FaultUpstream(trickled_head(PACE)) as upstream:
        options = ("--upstream-head-timeout", str(HEAD_TIMEOUT), "--upstream-timeout", "30")
        with forwarding_to(upstream, backend, *options) as server:
            started = time.monotonic()
            response = httpx.post(
                server.url + "v1/chat/completions",
                json={**HI, "stream": True},
                timeout=30,
                verify=SSL_CONTEXT,
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 504, response.text
            assert response.json()["error"]["code"] == "upstream_timeout"
            assert HEAD_TIMEOUT - 0.1 <= elapsed < HEAD_TIMEOUT + MARGIN
            assert server.health()["active_streams"] == 0
            assert upstream.hits == 1  # not retried: the deadline is the whole wait


@pytest.mark.parametrize("backend", ["openai", "getgpt"])
def test_an_upstream_reply_that_never_ends_is_cut_off_at_the_max_duration(backend: str) -> None:
    with FaultUpstream(text_then_comments("partial", PACE)) as upstream:
        options = ("--upstream-max-duration", str(MAX_DURATION), "--upstream-timeout", "30")
        with forwarding_to(upstream, backend, *options) as server:
            started = time.monotonic()
            with httpx.stream(
                "POST",
                server.url + "v1/chat/completions",
                json={**HI, "stream": True},
                timeout=30,
                verify=SSL_CONTEXT,
            ) as response:
                assert response.status_code == 200
                body = response.read()
            elapsed = time.monotonic() - started
            assert b"partial" in body  # what arrived is kept
            assert b'"error"' in body and body.rstrip().endswith(b"data: [DONE]")
            assert MAX_DURATION - 0.1 <= elapsed < MAX_DURATION + MARGIN
            wait_until(lambda: server.health()["active_streams"] == 0, 2)
            # Not streamed: nothing was sent before the deadline, so it is the whole answer.
            started = time.monotonic()
            whole = httpx.post(server.url + "v1/chat/completions", json=HI, timeout=30, verify=SSL_CONTEXT)
            assert whole.status_code == 504, whole.text
            assert MAX_DURATION - 0.1 <= time.monotonic() - started < MAX_DURATION + MARGIN


def test_the_head_timeout_bounds_the_other_forwarded_routes_too() -> None:
    with FaultUpstream(trickled_head(PACE)) as upstream:
        options = ("--upstream-head-timeout", str(HEAD_TIMEOUT), "--upstream-timeout", "30")
        with forwarding_to(upstream, "openai", *options) as server:
            started = time.monotonic()
            response = httpx.post(
                server.url + "v1/embeddings",
                json={"model": "m", "input": "hi"},
                timeout=30,
                verify=SSL_CONTEXT,
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 504, response.text
            assert response.json()["error"]["code"] == "upstream_timeout"
            assert HEAD_TIMEOUT - 0.1 <= elapsed < HEAD_TIMEOUT + MARGIN
