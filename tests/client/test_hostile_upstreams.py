"""Hostile upstreams against the clients, sync and async: every attack ends in a typed error, within
the bound configured for it, with the client's peak memory growing well under 100 MiB.

Each request runs in a process of its own (tests/support/client_probe.py) so that its peak
resident memory can be read from the kernel; the upstreams are raw sockets on loopback
(tests/support/hostile_upstreams.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import getgpt
from getgpt._transports.http11.reader import ResponseReader

from ..support.client_probe import probe
from ..support.faults import FaultUpstream, answer, events, response
from ..support.hostile_upstreams import (
    bomb,
    comments_forever,
    endless_interim,
    header_flood,
    huge_json,
    repeated_header_flood,
    trickled_head,
)

KINDS = ["sync", "async"]
CODINGS = ["gzip", "x-gzip", "deflate"]
#: Peak memory a request may add, in MiB: an attack that got through costs hundreds.
MEMORY = 100
#: Seconds a bounded wait may overrun its bound on this shared machine.
SLACK = 1.5
#: The bounds the tests configure, in seconds, and the hostile upstreams' pace: a bound that holds
#: at 0.6 s proves what one of 1.5 s did, and a byte or a comment each 0.1 s stays six times inside
#: it -- each read quick, the whole never done in time.
BOUND = 0.6
PACE = 0.1
ASK_FOR_ALL = {"Accept-Encoding": "gzip, x-gzip, deflate"}
HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("coding", CODINGS)
def test_a_compressed_body_not_asked_for_is_refused_unread(kind: str, coding: str) -> None:
    with FaultUpstream(bomb(coding, "sse")) as upstream:
        out = probe(kind, upstream.url, max_retries=0)
    assert out["error"] == "ProtocolError", out
    assert "not asked for" in out["message"] and coding in out["message"]
    assert out["seconds"] < SLACK and out["growth_mib"] < MEMORY
    assert upstream.hits == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("coding", CODINGS)
def test_a_json_bomb_asked_for_stops_at_the_reply_size_cap(kind: str, coding: str) -> None:
    with FaultUpstream(bomb(coding, "json")) as upstream:
        out = probe(kind, upstream.url, headers=ASK_FOR_ALL, max_reply_bytes=8 << 20, max_retries=0)
    assert out["error"] == "LimitExceeded", out
    assert "8 MiB" in out["message"]
    assert out["seconds"] < 2 * SLACK and out["growth_mib"] < MEMORY


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("coding", CODINGS)
def test_an_event_stream_bomb_asked_for_is_decoded_a_piece_at_a_time(kind: str, coding: str) -> None:
    # 512 MiB of blank lines: the parser takes them a piece at a time until the deadline. A client
    # that decoded what one read brings whole would hold hundreds of MiB at its first read; the
    # probe decodes ~20 MiB a second, so a longer deadline (it was 2 s) adds only more of the same.
    with FaultUpstream(bomb(coding, "sse")) as upstream:
        out = probe(kind, upstream.url, headers=ASK_FOR_ALL, deadline=0.75, max_retries=0)
    assert out["error"] in ("Timeout", "IncompleteStream"), out
    assert out["seconds"] < 0.75 + SLACK and out["growth_mib"] < MEMORY


@pytest.mark.parametrize("kind", KINDS)
def test_a_plain_json_reply_larger_than_the_cap_is_refused_as_it_arrives(kind: str) -> None:
    with FaultUpstream(huge_json(300 << 20)) as upstream:
        out = probe(kind, upstream.url, max_reply_bytes=16 << 20, max_retries=0)
    assert out["error"] == "LimitExceeded", out
    assert out["seconds"] < 2 * SLACK and out["growth_mib"] < MEMORY


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "script, what",
    [(header_flood(), "headers"), (repeated_header_flood(), "headers"), (endless_interim(), "interim")],
    ids=["header-flood", "repeated-header-flood", "1xx-flood"],
)
def test_a_flooded_head_is_refused_quickly(kind: str, script: Any, what: str) -> None:
    with FaultUpstream(script) as upstream:
        out = probe(kind, upstream.url, timeout=5, max_retries=2)
    assert out["error"] == "LimitExceeded", out
    assert what in out["message"]
    assert out["seconds"] < SLACK and out["growth_mib"] < MEMORY
    assert upstream.hits == 1  # a reply that broke a bound is not asked for again


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "options, bound",
    [({"timeout": 5, "head_timeout": BOUND}, BOUND), ({"timeout": BOUND}, BOUND)],
    ids=["head-timeout", "head-bound-is-the-read-timeout"],
)
def test_a_head_trickled_a_byte_at_a_time_times_out_at_the_head_bound(
    kind: str, options: dict[str, float], bound: float
) -> None:
    # A byte every PACE: each read is well within the read timeout, the head never ends in time.
    with FaultUpstream(trickled_head(every=PACE)) as upstream:
        out = probe(kind, upstream.url, max_retries=0, **options)
    assert out["error"] == "Timeout", out
    assert "head" in out["message"]
    assert bound - 0.1 < out["seconds"] < bound + SLACK and out["growth_mib"] < MEMORY


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_kept_alive_by_comments_ends_at_the_deadline_with_its_text(kind: str) -> None:
    with FaultUpstream(comments_forever("par", "tial", every=PACE)) as upstream:
        out = probe(kind, upstream.url, timeout=5, deadline=BOUND, max_retries=0)
    assert out["error"] == "Timeout", out
    assert "deadline" in out["message"] and out["partial"] == "partial"
    assert BOUND - 0.1 < out["seconds"] < BOUND + SLACK


@pytest.mark.parametrize("kind", KINDS)
def test_the_deadline_covers_retries_too(kind: str) -> None:
    # 503 with Retry-After: 0.25, again and again: the deadline ends the waiting, not the retry
    # count (at most three tries fit in BOUND, of the eleven allowed).
    refusal = response(503, b"busy", "text/plain", Retry_After="0.25")
    with FaultUpstream(answer(refusal)) as upstream:
        out = probe(kind, upstream.url, deadline=BOUND, max_retries=10)
    assert out["error"] in ("Timeout", "StatusError"), out
    assert out["seconds"] < BOUND + SLACK
    assert upstream.hits <= 3


# --- the same bounds through httpx (a SOCKS proxy, http_client=, transport=, trio) ---------------


@pytest.mark.parametrize("kind", KINDS)
def test_through_httpx_a_body_is_decoded_the_same_bounded_way(kind: str) -> None:
    with FaultUpstream(bomb("gzip", "json")) as upstream:
        unasked = probe(kind, upstream.url, via_httpx=True, max_retries=0)
        capped = probe(kind, upstream.url, via_httpx=True, headers=ASK_FOR_ALL, max_reply_bytes=8 << 20)
    assert unasked["error"] == "ProtocolError" and "not asked for" in unasked["message"], unasked
    assert capped["error"] == "LimitExceeded", capped
    for out in (unasked, capped):
        assert out["seconds"] < 2 * SLACK and out["growth_mib"] < MEMORY


@pytest.mark.parametrize("kind", KINDS)
def test_through_httpx_the_deadline_holds(kind: str) -> None:
    # Synchronously the deadline is checked between reads, each read cut to the time left when
    # the request was sent: here a comment comes every PACE, so it ends within one of them.
    with FaultUpstream(comments_forever("par", "tial", every=PACE)) as upstream:
        out = probe(kind, upstream.url, via_httpx=True, timeout=5, deadline=BOUND, max_retries=0)
    assert out["error"] == "Timeout" and out["partial"] == "partial", out
    assert BOUND - 0.1 < out["seconds"] < BOUND + SLACK


def test_through_httpx_asynchronously_the_head_bound_holds() -> None:
    with FaultUpstream(trickled_head(every=PACE)) as upstream:
        out = probe("async", upstream.url, via_httpx=True, timeout=5, head_timeout=BOUND, max_retries=0)
    assert out["error"] == "Timeout" and "head" in out["message"], out
    assert BOUND - 0.1 < out["seconds"] < BOUND + SLACK


def test_under_trio_the_head_bound_and_the_deadline_hold() -> None:
    import trio

    async def main(url: str, **options: Any) -> getgpt.Timeout:
        async with getgpt.AsyncClient(url, max_retries=0, **options) as client:
            with pytest.raises(getgpt.Timeout) as caught:
                await client.complete(HI)
        return caught.value

    for script, options in (
        (trickled_head(every=PACE), {"timeout": 5, "head_timeout": BOUND}),
        (comments_forever("par", "tial", every=PACE), {"timeout": 5, "deadline": BOUND}),
    ):
        with FaultUpstream(script) as upstream:
            started = time.monotonic()
            error = trio.run(lambda: main(upstream.url, **options))  # noqa: B023
            assert BOUND - 0.1 < time.monotonic() - started < BOUND + SLACK, error


# --- exceptions raised inside the parser's callbacks ---------------------------------------------


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit, MemoryError])
@pytest.mark.parametrize("kind", KINDS)
def test_an_exception_inside_a_parser_callback_is_raised_as_itself_and_never_retried(
    kind: str, raised: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    # httptools wraps what a callback raises into its own parser error: a Ctrl-C that arrived
    # while a header was being read must not become a transport error that is retried.
    def on_header(self: ResponseReader, name: bytes, value: bytes) -> None:
        raise raised()

    monkeypatch.setattr(ResponseReader, "on_header", on_header)
    reply = response(200, events("x") + b"data: [DONE]\n\n", "text/event-stream")
    with FaultUpstream(answer(reply)) as upstream:
        with pytest.raises(raised):
            if kind == "sync":
                with getgpt.Client(upstream.url, max_retries=3) as client:
                    client.complete(HI)
            else:

                async def main() -> None:
                    async with getgpt.AsyncClient(upstream.url, max_retries=3) as client:
                        await client.complete(HI)

                asyncio.run(main())
        assert upstream.hits == 1
