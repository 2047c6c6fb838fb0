"""``--log-format json``: one JSON object a line, each request's id on its lines, no message text."""

from __future__ import annotations

import json
import re

import httpx

from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve

SECRET = "текст-который-не-пишут-в-лог 7f3a"


def _lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_json_logs_carry_the_request_id_taken_or_made_and_never_the_message_text() -> None:
    with getgpt_serve("--log-format", "json", "--log-level", "info") as server:
        given = httpx.post(
            server.url + "v1/chat/completions?api_key=hidden",
            json={"messages": [{"role": "user", "content": SECRET}], "stream": True},
            headers={"X-Request-Id": "req-42.abc"},
            verify=SSL_CONTEXT,
        )
        assert given.status_code == 200 and f'"content":"{SECRET[:4]}"' in given.text
        assert given.headers["x-request-id"] == "req-42.abc"
        made = httpx.post(
            server.url + "api/chat/stream",
            json={"signature": "not hex"},
            headers={"X-Request-Id": "x" * 129},
            verify=SSL_CONTEXT,
        )
        assert made.status_code == 400
        made_id = made.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made_id)  # an unusable id is replaced, not echoed
        other = httpx.get(server.url + "healthz", verify=SSL_CONTEXT).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", other) and other != made_id
        output = server.output()
    lines = _lines(output)  # every line is JSON
    access = {line["request_id"]: line for line in lines if line.get("logger") == "uvicorn.access"}
    assert access["req-42.abc"]["path"] == "/v1/chat/completions"  # no query string, so no key
    assert access["req-42.abc"]["status"] == 200 and access["req-42.abc"]["method"] == "POST"
    assert access[made_id]["status"] == 400
    assert access[other]["path"] == "/healthz"
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert SECRET not in output and "hidden" not in output


def test_text_logs_stay_uvicorns_format() -> None:
    with getgpt_serve("--log-level", "info") as server:
        httpx.get(server.url + "healthz", verify=SSL_CONTEXT)
        output = server.output()
    assert "INFO:     127.0.0.1:" in output and '"GET /healthz HTTP/1.1" 200' in output
