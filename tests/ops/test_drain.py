"""Graceful drain: SIGTERM stops new work at once, lets streams finish, cuts what outlasts the grace."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest

import getgpt

from ..support.faults import hanging
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve


def _stream(url: str, text: str, first: threading.Event, out: list[object]) -> None:
    try:
        with getgpt.Client(url, max_retries=0) as client:
            stream = client.stream([{"role": "user", "content": text}])
            pieces = [next(iter(stream))]
            first.set()
            pieces += list(stream)
            out.append("".join(pieces))
    except getgpt.GetGptError as exc:
        out.append(exc)
        first.set()


def test_sigterm_turns_readyz_503_at_once_and_lets_the_stream_in_flight_finish() -> None:
    text = "drain me gently " * 3  # 12 pieces 0.15 s apart: about 1.7 s
    with (
        getgpt_serve("--echo-delay", "0.15", "--shutdown-grace", "30", "--log-level", "info") as server,
        httpx.Client(
            timeout=5, verify=SSL_CONTEXT
        ) as kept,  # one kept-alive connection, opened before the signal
    ):
        assert kept.get(server.url + "readyz").json() == {"status": "ready", "redis": "off"}
        first, out = threading.Event(), []  # type: ignore[var-annotated]
        reader = threading.Thread(target=_stream, args=(server.url, text, first, out))
        reader.start()
        assert first.wait(10)
        signalled = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        # Its log says the drain has begun: from then on readyz is 503 and the listener is closed.
        server.wait_for_output("draining: 1 stream(s) open, 30 s to finish")
        ready = kept.get(server.url + "readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert ready.headers["connection"] == "close"  # the next request goes elsewhere
        with pytest.raises(httpx.ConnectError):  # no new connection is accepted
            kept.get(server.url + "healthz")
        reader.join(20)
        assert out == [text]
        assert server.process.wait(20) in (0, -signal.SIGTERM)
        # It left as soon as its last stream ended, long before the grace period's end.
        assert time.monotonic() - signalled < 10


def test_a_stream_that_outlasts_the_grace_period_ends_with_an_error_carrying_its_partial_text() -> None:
    text = "this reply is far too long to finish " * 2  # 19 pieces 0.3 s apart: about 5.4 s
    with getgpt_serve("--echo-delay", "0.3", "--shutdown-grace", "1", "--log-level", "info") as server:
        first, out = threading.Event(), []  # type: ignore[var-annotated]
        reader = threading.Thread(target=_stream, args=(server.url, text, first, out))
        reader.start()
        assert first.wait(10)
        # The clock starts before the signal is sent, so the grace period cannot have begun earlier.
        signalled = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        reader.join(20)
        assert server.process.wait(20) in (0, -signal.SIGTERM)
        stopped = time.monotonic() - signalled
        (error,) = out
        assert isinstance(error, getgpt.RemoteError), error
        assert error.code == "server_shutting_down"
        assert error.partial and text.startswith(error.partial) and error.partial != text
        assert 1.0 <= stopped < 5.0  # cut at the grace period's end, not at the reply's
        assert "cutting 1 open stream(s)" in server.output()


def test_a_forwarded_stream_that_outlasts_the_grace_period_ends_with_the_shutting_down_event() -> None:
    # /v1/completions streams were not known to the drain: at grace + 7 s the connection was
    # dropped mid-body, a truncated chunked body rather than an error the client can read.
    with (
        hanging("first ") as upstream,
        getgpt_serve(
            "--backend", "openai", "--upstream", upstream.url + "v1", "--shutdown-grace", "1"
        ) as server,
        httpx.Client(timeout=20, verify=SSL_CONTEXT) as client,
    ):
        body = {"model": "text-1", "prompt": "Hello", "stream": True}
        with client.stream("POST", server.url + "v1/completions", json=body) as answer:
            assert answer.status_code == 200
            reads = answer.iter_bytes()
            received = next(reads)
            assert b"first " in received
            # The clock starts before the signal is sent, so the grace period cannot have begun earlier.
            signalled = time.monotonic()
            os.kill(server.process.pid, signal.SIGTERM)
            received += b"".join(reads)  # a truncated body raises httpx.RemoteProtocolError here
        stopped = time.monotonic() - signalled
        assert server.process.wait(20) in (0, -signal.SIGTERM)
    events = [line.removeprefix(b"data: ") for line in received.split(b"\n\n") if line]
    assert events[-1] == b"[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "server_shutting_down"
    assert 1.0 <= stopped < 5.0  # cut at the grace period's end
    assert upstream.peer_closed  # and the upstream request closed with it
