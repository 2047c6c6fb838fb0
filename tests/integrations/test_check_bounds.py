"""getgpt check against hostile servers: a head trickled a byte at a time, a stream kept alive
for ever, an endless body. Each fetch's head has a deadline, the whole run has one
(``--max-time``), and an answer is kept only up to a bounded excerpt."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time

from getgpt.checks import Settings
from getgpt.checks.battery import Battery
from getgpt.checks.http import MAX_BODY, HttpFailure, Target, fetch

from ..support.faults import PATIENCE, FaultUpstream
from ..support.hostile_upstreams import comments_forever, trickled_head
from ..support.processes import SRC


def test_a_trickled_head_fails_the_fetch_at_its_head_deadline() -> None:
    # A byte every 0.2 s never leaves a read waiting 1 s: without a deadline on the head in all,
    # the fetch waited for the server to give up (PATIENCE) and then some.
    with FaultUpstream(trickled_head(0.2)) as server:
        started = time.monotonic()
        try:
            fetch(Target.of(server.url), "GET", "", {}, timeout=1, total=60)
        except HttpFailure as failure:
            message = str(failure)
        else:
            raise AssertionError("the trickled head was taken for an answer")
        took = time.monotonic() - started
    assert "head" in message and "1 s" in message, message
    assert took < PATIENCE / 2  # the head's deadline, not the server's patience, ended it


def test_the_whole_run_ends_at_max_time_against_a_stream_kept_alive_for_ever() -> None:
    # An SSE comment every 0.2 s: each fetch read on to its own bound (4 x --timeout), so a run
    # of some forty fetches took hours at the default timeout.
    with FaultUpstream(comments_forever("alive", every=0.2)) as server:
        started = time.monotonic()
        battery = Battery(Settings(server.url, timeout=5, max_time=2, burst=3))
        results = list(battery.run())
        took = time.monotonic() - started
    assert took < 15, f"the run took {took:.1f} s past a --max-time of 2 s"
    failed = [result for result in results if result.status == "fail"]
    assert failed and any("--max-time" in result.evidence for result in failed), results


def _endless_body() -> FaultUpstream:
    """200, an event stream of comments written as fast as the peer reads, until it leaves."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        block = b": " + b"x" * 65_000 + b"\n\n"
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            while time.monotonic() - started < PATIENCE:
                writer.write(block)
                await writer.drain()

    return FaultUpstream(script)


def test_each_response_is_kept_only_up_to_a_bounded_excerpt() -> None:
    # Every response was kept whole up to 16 MiB: some forty of them held up to ~1 GB.
    with _endless_body() as server:
        battery = Battery(Settings(server.url, timeout=5, max_time=20, burst=2))
        list(battery.run())
    kept = [len(response.body) for response in battery.responses]
    # A mebibyte, and the read that crossed it at most.
    assert kept and max(kept) <= MAX_BODY + 65_536 <= (1 << 20) + 65_536
    assert any(not response.complete for response in battery.responses)


def test_the_command_takes_max_time() -> None:
    with FaultUpstream(comments_forever("alive", every=0.2)) as server:
        done = subprocess.run(
            [sys.executable, "-m", "getgpt", "check", server.url, "--max-time", "1", "--burst", "2"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PYTHONPATH": str(SRC)},
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "--max-time" in done.stdout, done.stdout
