"""Whole replies held for non-streamed requests draw on one budget for the whole server.

Each was held up to 16 MiB with nothing bounding them together: 50 at once from an upstream
sending endless JSON took the gateway to +797 MiB. Past ``--whole-reply-budget`` a request is
refused at once with 503 ``server_busy``; ``/metrics`` shows the budget and what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from getgpt.server import ServerConfig, create_app
from getgpt.server.api_error import ApiError
from getgpt.server.upstreams.budget import ReplyBudget

from ..support.faults import FaultUpstream
from ..support.hostile_upstreams import huge_json
from ..support.memory import MIB, growth, rss_of
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve
from ..support.servers import serve, wait_until

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
KIB = 1 << 10


def test_a_holding_takes_from_the_budget_and_gives_it_all_back() -> None:
    budget = ReplyBudget(100)
    first, second = budget.holding(), budget.holding()
    first.take(60)
    second.take(40)
    assert budget.held == 100
    with pytest.raises(ApiError) as refused:
        second.take(1)
    assert (refused.value.status, refused.value.code) == (503, "server_busy")
    assert refused.value.headers == {"Retry-After": "1"}
    assert budget.held == 100 and second.size == 40  # a refused take holds nothing more
    first.release()
    with second:
        second.take(60)
    assert budget.held == 0
    with pytest.raises(ValueError):
        ReplyBudget(0)


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "metrics", timeout=5, verify=SSL_CONTEXT).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("budget") == "whole_replies":
                return float(sample.value)
    return -1.0


def _json_of(size: int) -> bytes:
    """A chat.completion of exactly ``size`` bytes."""
    head, tail = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"', b'"}}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


class _Held:
    """The first request's reply is held back after ``first`` bytes until ``go`` is set; the
    others' replies (``size`` bytes) come at once."""

    def __init__(self, size: int, first: int) -> None:
        self.body = _json_of(size)
        self.first = first
        self.go: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.upstream: FaultUpstream | None = None

    async def script(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.upstream is not None
        body = self.body
        if self.upstream.hits == 1:
            self.go, self.loop = asyncio.Event(), asyncio.get_running_loop()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            writer.write(body[: self.first])
            await writer.drain()
            await self.go.wait()
            writer.write(body[self.first :])
        else:
            big = _json_of(1536 * KIB)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(big)
            )
            writer.write(big)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


def upstream_hits(script: _Held) -> int:
    return script.upstream.hits if script.upstream else 0


@pytest.fixture
def held() -> Iterator[tuple[_Held, str]]:
    script = _Held(800 * KIB, 700 * KIB)
    with FaultUpstream(script.script) as upstream:
        script.upstream = upstream
        config = ServerConfig(backend="openai", upstream=upstream.url + "v1", whole_reply_budget=2 * MIB)
        with serve(create_app(config)) as url:
            yield script, url


def test_a_reply_that_would_overdraw_the_budget_is_refused_with_503_server_busy(
    held: tuple[_Held, str],
) -> None:
    script, url = held
    assert _metric(url, "getgpt_budget_limit_bytes") == 2 * MIB
    out: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: out.append(
            httpx.post(url + "v1/chat/completions", json=CHAT, timeout=20, verify=SSL_CONTEXT)
        )
    )
    first.start()
    used: list[float] = []

    def held_in_part() -> bool:
        used.append(_metric(url, "getgpt_budget_used_bytes"))
        return used[-1] >= 700 * KIB or not first.is_alive()

    # Once, in a whole run in random order (not reproduced), the held part was not seen within
    # 10 s: should it happen again, this says what the first request and the upstream came to.
    try:
        wait_until(held_in_part, 10, "the first reply held in part")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {used[-5:]} held, upstream hits: {upstream_hits(script)}") from None
    assert first.is_alive(), f"the first request ended: {out}, upstream hits: {upstream_hits(script)}"
    # 700 KiB held, 1.5 MiB more would pass the 2 MiB: refused as it arrives, not queued.
    refused = httpx.post(url + "v1/chat/completions", json=CHAT, timeout=20, verify=SSL_CONTEXT)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "server_busy"
    assert refused.headers["retry-after"] == "1"
    assert _metric(url, "getgpt_budget_refusals_total") == 1
    assert script.loop is not None and script.go is not None
    script.loop.call_soon_threadsafe(script.go.set)
    first.join(20)
    assert out and out[0].status_code == 200 and out[0].content == script.body
    assert _metric(url, "getgpt_budget_used_bytes") == 0  # all given back


def test_fifty_endless_json_replies_grow_the_server_within_its_budget_and_the_rest_get_503() -> None:
    # An upstream sending a 300 MiB JSON reply as fast as it is read, to 50 requests at once.
    budget = 64 * MIB
    with (
        FaultUpstream(huge_json()) as upstream,
        getgpt_serve(
            "--backend", "openai", "--upstream", upstream.url + "v1", "--whole-reply-budget", str(budget)
        ) as server,
    ):
        pid = server.process.pid

        def attack() -> list[httpx.Response]:
            with ThreadPoolExecutor(50) as pool:
                return list(
                    pool.map(
                        lambda _: httpx.post(
                            server.url + "v1/chat/completions", json=CHAT, timeout=60, verify=SSL_CONTEXT
                        ),
                        range(50),
                    )
                )

        before = rss_of(pid)
        with growth(pid) as measured:
            answers = attack()
        grown = measured.peak
        statuses = sorted(answer.status_code for answer in answers)
        codes = {answer.json()["error"]["code"] for answer in answers}
        assert set(statuses) <= {502, 503} and 503 in statuses, statuses
        assert codes <= {"bad_upstream", "server_busy"}, codes
        assert all(a.headers.get("retry-after") == "1" for a in answers if a.status_code == 503)
        # The budget, and what fifty upstream connections read ahead of the backend (1 MiB each,
        # the transports' pause): not 50 x 16 MiB (+862 MiB a round before).
        assert grown < budget + 50 * MIB, f"the server grew {grown / MIB:.0f} MiB"
        # Nor does what it keeps add up: after a second round it is still within the same bound
        # (each round's 862 MiB was kept before, in reference cycles of the refused replies' errors).
        attack()
        kept = rss_of(pid) - before
        assert kept < budget + 50 * MIB, f"the server keeps {kept / MIB:.0f} MiB after two rounds"
        assert server.healthz() >= 0  # and it still answers
