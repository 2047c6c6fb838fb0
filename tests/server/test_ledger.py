"""The usage ledger against a known mix of requests, token for token, on SQLite and PostgreSQL:
streamed and whole replies with the upstream's usage, a stream cut mid-way (the server's estimate,
said as such), requests refused at admission and by the upstream."""

from __future__ import annotations

import asyncio
import json
import time
import types
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from getgpt.server import ServerConfig, create_app
from getgpt.server.chat.wire import estimate_tokens

from ..support.keystore import make_key, records, records_of
from ..support.openai_upstream import USAGE, ScriptedUpstream
from ..support.processes import SSL_CONTEXT
from ..support.servers import serve
from ..support.waiting import wait_until


@pytest.fixture
def gateway_with_store(upstream: ScriptedUpstream, db_target: str) -> Iterator[tuple[str, str]]:
    config = ServerConfig(backend="openai", upstream=upstream.url + "v1", db=db_target)
    make_key(db_target, "warm-up")
    with serve(create_app(config)) as url:
        yield url, db_target


def _post(url: str, key: str | None, body: bytes, route: str = "v1/chat/completions") -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(url + route, content=body, headers=headers, timeout=10, verify=SSL_CONTEXT)


def _chat(model: str, stream: bool) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "count me"}], "stream": stream}
    ).encode()


def test_the_ledger_matches_a_known_mix_of_requests_token_for_token(
    gateway_with_store: tuple[str, str], upstream: ScriptedUpstream
) -> None:
    url, target = gateway_with_store
    record, key = make_key(target, models=["text", "cut", "error-500"])
    cut_body = _chat("cut", True)
    sent = [
        (_chat("text", True), 200),  # streamed: the upstream's usage
        (_chat("text", False), 200),  # whole: the upstream's usage
        (cut_body, 200),  # cut mid-way: two events went out, then an error event
        (_chat("tools", True), 403),  # a model the key may not use
        (_chat("error-500", True), 500),  # the upstream refused: nothing reached the client
    ]
    answers = [_post(url, key, body) for body, _ in sent]
    assert [answer.status_code for answer in answers] == [status for _, status in sent]
    answers.append(_post(url, None, _chat("text", True)))
    assert answers[-1].status_code == 401
    answers.append(_post(url, key, json.dumps({"model": "text", "input": "hi"}).encode(), "v1/embeddings"))
    assert answers[-1].status_code == 200
    wait_until(lambda: len(records(target)) == 7, 10)
    rows = records_of(target, answers)  # the 401, refused at once, was written ahead of the 500
    found = [
        (
            r.key_id,
            r.route,
            r.model,
            r.status,
            r.prompt_tokens,
            r.completion_tokens,
            r.reasoning_tokens,
            r.estimated,
        )
        for r in rows
    ]
    chat, kid = "/v1/chat/completions", record.id
    prompt, completion, reasoning = USAGE["prompt_tokens"], USAGE["completion_tokens"], 3
    assert found == [
        (kid, chat, "text", 200, prompt, completion, reasoning, False),
        (kid, chat, "text", 200, prompt, completion, reasoning, False),
        (kid, chat, "cut", 200, estimate_tokens(len(cut_body)), 2, 0, True),
        (kid, chat, "tools", 403, 0, 0, 0, False),
        (kid, chat, "error-500", 500, 0, 0, 0, False),
        (None, chat, "", 401, 0, 0, 0, False),
        (kid, "/v1/embeddings", "text", 200, 3, 0, 0, False),
    ]
    assert {r.upstream for r in rows} == {"upstream"}  # as metrics, /healthz and the header name it
    assert all(r.duration_ms >= 0 and r.request_id for r in rows)
    assert rows[0].first_byte_ms is not None and rows[3].first_byte_ms is not None
    spent = sum(r.prompt_tokens + r.completion_tokens for r in rows if r.key_id == kid)
    usage = httpx.get(
        url + "v1/usage", headers={"Authorization": f"Bearer {key}"}, verify=SSL_CONTEXT
    ).json()["data"]
    assert [(u["requests"], u["total_tokens"], u["estimated"], u["errors"]) for u in usage] == [
        (6, spent, 1, 2)
    ]


def test_the_ledger_names_the_upstream_the_backend_says_answered(tmp_path: Path) -> None:
    from getgpt.server.admission.keys import Keyring
    from getgpt.server.admission.slot import TIMING, Slot, Slots
    from getgpt.server.operations.counts import Counts
    from getgpt.server.operations.prometheus import PrometheusMetrics

    keyring = Keyring(ServerConfig(db=str(tmp_path / "g.db")), upstream="configured:1")
    slots = Slots(10, Counts(), PrometheusMetrics())

    def timing() -> types.SimpleNamespace:  # what the app's send saw, as a slot reads it
        return types.SimpleNamespace(arrived=time.perf_counter(), status=200, first_body=None)

    async def run() -> list[str]:
        named = Slot(slots, "/v1/chat/completions", timing(), "m", None)
        named.outcome.upstream = "second-upstream"  # type: ignore[attr-defined]  # set by routing's backend
        plain = Slot(slots, "/v1/chat/completions", timing(), "m", None)
        for slot in (named, plain):
            await keyring.settle({TIMING: slot.timing}, "/v1/chat/completions", slot)
        return [row.upstream for row in keyring.ledger.waiting()]

    assert asyncio.run(run()) == ["second-upstream", "configured:1"]


@pytest.mark.parametrize("stream", [True, False])
def test_a_key_is_charged_before_the_replys_last_bytes_go_out(tmp_path: Path, stream: bool) -> None:
    # A client that sends its next request on reading the end (to another replica, say) must find
    # the spend counted already: it is checked at the moment the last body message is sent.
    target = str(tmp_path / "g.db")
    record, key = make_key(target, budget_tokens=10**6, budget_period="day")
    app = create_app(ServerConfig(db=target))
    keyring = app.state.keyring
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "charge me"}], "stream": stream}
    )
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
        "headers": [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())],
    }  # fmt: skip
    spent_at_end: list[int] = []

    async def run() -> None:
        await keyring.start()
        gone = asyncio.Event()
        sent = False

        async def receive() -> dict[str, object]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body.encode(), "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                spent_at_end.append(keyring.cache.spent(record))

        try:
            await app(scope, receive, send)
        finally:
            gone.set()
            await keyring.aclose()

    asyncio.run(run())
    [row] = records(target)
    assert row.status == 200 and row.prompt_tokens + row.completion_tokens > 0
    assert spent_at_end == [row.prompt_tokens + row.completion_tokens]
