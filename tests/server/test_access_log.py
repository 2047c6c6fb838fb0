"""What uvicorn's access log keeps of a request: never a value from its query string."""

from __future__ import annotations

import httpx

from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve
from ..support.servers import wait_until


def test_keys_sent_in_a_query_string_stay_out_of_the_access_log() -> None:
    with getgpt_serve("--log-level", "info") as server:
        httpx.get(server.url + "healthz?api_key=sk-SECRET-ONE&mode=plain", verify=SSL_CONTEXT)
        httpx.post(
            server.url + "v1/chat/completions?key=sk-SECRET-TWO",
            json={"messages": [{"role": "user", "content": "hi"}]},
            verify=SSL_CONTEXT,
        )
        httpx.get(server.url + "?sk-SECRET-THREE", verify=SSL_CONTEXT)
        wait_until(lambda: server.output().count('" 200') >= 4, 5)  # the start-up probe, and these
        log = server.output()
    assert "SECRET" not in log
    assert "GET /healthz?api_key=[redacted]&mode=[redacted] HTTP/1.1" in log
    assert "POST /v1/chat/completions?key=[redacted] HTTP/1.1" in log
    assert "GET /?[redacted] HTTP/1.1" in log
