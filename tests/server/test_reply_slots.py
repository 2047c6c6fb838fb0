"""Reply slots: what ``/healthz`` and ``/metrics`` count of them, under their names old and new."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from getgpt.server import ApiError, ServerConfig, create_app
from getgpt.server.admission.slot import Slots
from getgpt.server.chat.pump import Ending
from getgpt.server.operations.counts import Counts
from getgpt.server.operations.prometheus import PrometheusMetrics

from ..support.faults import (
    STREAM_HEAD,
    FaultUpstream,
    Script,
    answer,
    cut_mid_chunk,
    die_after,
    events,
    response,
)
from ..support.processes import SSL_CONTEXT
from ..support.servers import serve, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CHAT = "/v1/chat/completions"


def scrape(url: str) -> Samples:
    answer = httpx.get(url + "metrics", timeout=10, verify=SSL_CONTEXT)
    assert answer.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), -1.0)


def chat(url: str, text: str, *, stream: bool = True) -> httpx.Response:
    return httpx.post(
        url + CHAT.lstrip("/"),
        json={"messages": [{"role": "user", "content": text}], "stream": stream},
        timeout=10,
        verify=SSL_CONTEXT,
    )


def test_the_renamed_counts_keep_their_old_names_beside_the_new_for_one_release() -> None:
    with serve(create_app(ServerConfig(echo_delay=0.2))) as url:
        with httpx.Client(timeout=10, verify=SSL_CONTEXT) as client:
            body = {"messages": [{"role": "user", "content": "held open for a while"}], "stream": True}
            with client.stream("POST", url + "v1/chat/completions", json=body) as held:
                assert held.status_code == 200
                health = httpx.get(url + "healthz", verify=SSL_CONTEXT).json()
                samples = scrape(url)
                assert (health["active_slots"], health["active_streams"]) == (1, 1)
                assert (health["admitted_total"], health["streams_total"]) == (1, 1)
                assert value(samples, "getgpt_active_slots") == value(samples, "getgpt_active_streams") == 1
                held.read()
        assert chat(url, "whole", stream=False).status_code == 200
        health = httpx.get(url + "healthz", verify=SSL_CONTEXT).json()
        samples = scrape(url)
    assert (health["active_slots"], health["active_streams"]) == (0, 0)
    assert (health["admitted_total"], health["streams_total"]) == (2, 2)
    assert value(samples, "getgpt_active_slots") == value(samples, "getgpt_active_streams") == 0
    for name in ("getgpt_reply_duration_seconds_count", "getgpt_stream_duration_seconds_count"):
        assert value(samples, name, route=CHAT, outcome="ok") == 2
    for suffix, labels in (("_bucket", {"le": "+Inf"}), ("_sum", {})):
        new = value(samples, "getgpt_reply_duration_seconds" + suffix, route=CHAT, outcome="ok", **labels)
        old = value(samples, "getgpt_stream_duration_seconds" + suffix, route=CHAT, outcome="ok", **labels)
        assert new == old and new > 0


# --------------------------------------------------------------------------- every way a reply ends

DONE_EVENTS = events("a", "b") + b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
COMPLETION = json.dumps(
    {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ab"}, "finish_reason": "stop"}],
    }
).encode()


class Board:
    """An upstream script chosen by the test, and the hits and closes the upstream saw."""

    def __init__(self) -> None:
        self.script: Script | None = None
        self.upstream: FaultUpstream | None = None

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.script is not None
        await self.script(reader, writer)


def hang(board: Board, *texts: str, head: bool = True) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if head:
            writer.write(STREAM_HEAD + events(*texts))
            await writer.drain()
        assert board.upstream is not None
        await board.upstream.wait_for_peer_to_close(reader)

    return script


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, Board, Any]]:
    board = Board()
    with FaultUpstream(board) as upstream:
        board.upstream = upstream
        app = create_app(ServerConfig(backend="openai", upstream=upstream.url + "v1", upstream_usage=False))
        loops: list[asyncio.AbstractEventLoop] = []

        async def note_loop(scope: Any) -> None:
            loops.append(asyncio.get_running_loop())

        app.state.request_checks.append(note_loop)
        with serve(app) as url:
            yield url, board, (app, loops)


def counted(url: str) -> tuple[dict[str, int], dict[str, float]]:
    """``/healthz``'s counts, and ``/metrics``' slot gauge and replies by how they ended."""
    health = httpx.get(url + "healthz", verify=SSL_CONTEXT).json()
    samples = scrape(url)
    seen = {"active": samples[("getgpt_active_slots", ())], "ok": 0.0, "error": 0.0, "gone": 0.0}
    for (name, labels), number in samples.items():
        if name == "getgpt_reply_duration_seconds_count":
            seen[dict(labels)["outcome"]] += number
    return health, seen


def agree(health: dict[str, int], seen: dict[str, float]) -> bool:
    ended = seen["ok"] + seen["error"] + seen["gone"]
    return (
        health["active_slots"] == seen["active"] == 0
        and health["admitted_total"] == ended
        and health["failed_total"] == seen["error"]
        and health["disconnects_total"] == seen["gone"]
    )


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=10, verify=SSL_CONTEXT)


def leave_after_first_bytes(url: str, path: str, body: dict[str, Any]) -> None:
    with (
        httpx.Client(timeout=10, verify=SSL_CONTEXT) as client,
        client.stream("POST", url + path, json=body) as response,
    ):
        assert response.status_code == 200
        next(response.iter_raw())
    # Leaving the block closed the connection mid-reply.


def leave_before_any_byte(url: str, path: str, body: dict[str, Any], board: Board) -> None:
    assert board.upstream is not None
    hits = board.upstream.hits
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))))
    data = json.dumps(body).encode()
    head = f"POST /{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    sock.sendall(head.encode() + b"Content-Length: %d\r\n\r\n" % len(data) + data)
    wait_until(lambda: board.upstream is not None and board.upstream.hits > hits, 5)
    sock.close()


def cut_by_the_drain(url: str, path: str, body: dict[str, Any], app: Any, loops: list[Any]) -> None:
    with (
        httpx.Client(timeout=10, verify=SSL_CONTEXT) as client,
        client.stream("POST", url + path, json=body) as response,
    ):
        assert response.status_code == 200
        raw = response.iter_raw()
        first = next(raw)
        loops[-1].call_soon_threadsafe(app.state.drain.cut)  # what the drain's timer calls
        rest = b"".join(raw)
    assert b"server_shutting_down" in first + rest


CHAT_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
WHOLE_BODY = {**CHAT_BODY, "stream": False}


@pytest.mark.parametrize(
    "case",
    [
        "chat streamed whole",
        "chat not streamed",
        "chat refused upstream",
        "chat broken mid-stream",
        "chat left mid-stream",
        "chat left before a byte",
        "chat cut by the drain",
        "forwarded whole",
        "forwarded refused upstream",
        "forwarded broken mid-stream",
        "forwarded left mid-stream",
    ],
)
def test_every_ending_releases_the_slot_once_and_both_counts_agree(
    gateway: tuple[str, Board, Any], case: str
) -> None:
    url, board, (app, loops) = gateway
    forwarded = case.startswith("forwarded")
    path = "v1/completions" if forwarded else "v1/chat/completions"
    body = {"model": "m", "prompt": "hi", "stream": True} if forwarded else CHAT_BODY
    before, before_seen = counted(url)
    if case.endswith("streamed whole"):
        board.script = answer(STREAM_HEAD + DONE_EVENTS + b"data: [DONE]\n\n")
        assert b"[DONE]" in post(url, path, body).content
        expected = "ok"
    elif case.endswith("not streamed"):
        board.script = answer(response(200, COMPLETION, "application/json"))
        assert post(url, path, WHOLE_BODY).json()["choices"][0]["message"]["content"] == "ab"
        expected = "ok"
    elif case == "forwarded whole":
        board.script = answer(response(200, b'{"object": "text_completion"}', "application/json"))
        assert post(url, path, {**body, "stream": False}).json() == {"object": "text_completion"}
        expected = "ok"
    elif case.endswith("refused upstream"):
        board.script = answer(response(500, b'{"error": {"message": "no"}}', "application/json"))
        assert post(url, path, body).status_code == 500
        expected = "error"
    elif case.endswith("broken mid-stream"):
        board.script = cut_mid_chunk("a") if forwarded else die_after("a")
        broken = post(url, path, body)
        assert broken.status_code == 200 and b'"error"' in broken.content
        expected = "error"
    elif case.endswith("left mid-stream"):
        board.script = hang(board, "a")
        leave_after_first_bytes(url, path, body)
        expected = "gone"
    elif case.endswith("left before a byte"):
        board.script = hang(board, head=False)
        leave_before_any_byte(url, path, body, board)
        expected = "gone"
    else:
        board.script = hang(board, "a")
        cut_by_the_drain(url, path, body, app, loops)
        expected = "error"

    def settled() -> bool:
        health, seen = counted(url)
        return agree(health, seen) and seen[expected] == before_seen[expected] + 1

    wait_until(settled, 5)
    health, seen = counted(url)
    assert health["admitted_total"] == before["admitted_total"] + 1
    assert sum(seen[ending] - before_seen[ending] for ending in ("ok", "error", "gone")) == 1


def test_a_refused_request_takes_no_slot_and_counts_as_a_rejection(gateway: tuple[str, Board, Any]) -> None:
    url, _, _ = gateway
    before, _ = counted(url)
    assert post(url, "v1/chat/completions", {"messages": []}).status_code == 400
    health, seen = counted(url)
    assert agree(health, seen)
    assert health["admitted_total"] == before["admitted_total"]
    assert health["rejected_total"] == before["rejected_total"] + 1


class Timing:
    """What the app's send saw of a response, as a slot reads it."""

    def __init__(self) -> None:
        self.arrived = time.perf_counter()
        self.status = 200
        self.first_body: float | None = None


def test_a_slot_is_released_once_however_often_it_is_told() -> None:
    counts = Counts()
    slots = Slots(2, counts, PrometheusMetrics())
    with slots.take("/v1/chat/completions", Timing(), model="m") as slot:
        assert counts.active_slots == 1
        slot.release(Ending.GONE)
        slot.release(Ending.ERROR)
        assert (counts.active_slots, counts.disconnects_total, counts.failed_total) == (0, 1, 0)
    assert slot.ending is Ending.GONE and counts.active_slots == 0
    with pytest.raises(RuntimeError), slots.take("/v1/embeddings", Timing()):
        raise RuntimeError("a bug after admission")
    assert (counts.active_slots, counts.admitted_total, counts.failed_total) == (0, 2, 1)


def test_past_the_limit_a_request_gets_503_with_retry_after_and_no_slot() -> None:
    counts = Counts()
    slots = Slots(1, counts, PrometheusMetrics())
    with slots.take("/v1/chat/completions", Timing()):
        with pytest.raises(ApiError) as refused:
            slots.take("/v1/chat/completions", Timing())
        assert (refused.value.status, refused.value.code) == (503, "too_many_streams")
        assert refused.value.headers == {"Retry-After": "1"}
        assert counts.active_slots == 1
    assert (counts.active_slots, counts.admitted_total) == (0, 1)
