"""Unit tests of the forwarding backend's small parts: redaction, model pinning, the single flight."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from getgpt.server.api_error import ApiError
from getgpt.server.upstreams.pinning import model_in, with_model
from getgpt.server.upstreams.redaction import REDACTED, Redaction
from getgpt.server.upstreams.single_flight import SingleFlight

# --------------------------------------------------------------------------- redaction

PASSWORD = "p@ss/wörd 1"  # needs percent-encoding in a URL, escaping in JSON
URL = "https://svc:p%40ss%2Fw%C3%B6rd%201@llm.internal:8443/v1"


def test_every_way_a_secret_may_be_written_is_taken_out() -> None:
    redaction = Redaction(URL, "sk-abc/def")
    basic = base64.b64encode(f"svc:{PASSWORD}".encode()).decode()
    for written in (
        PASSWORD,
        "p%40ss%2Fw%C3%B6rd%201",  # as the URL writes it
        json.dumps(PASSWORD)[1:-1],  # JSON, non-ASCII escaped
        json.dumps(PASSWORD, ensure_ascii=False)[1:-1].replace("/", "\\/"),
        f"Basic {basic}",
        "Bearer sk-abc/def",
        "sk-abc\\/def",
        f"svc:{PASSWORD}",
    ):
        cleaned = redaction.for_log(f"got <{written}> here")
        assert cleaned.startswith("got <") and cleaned.endswith("> here")
        assert PASSWORD not in cleaned and basic not in cleaned and "sk-abc" not in cleaned, cleaned
        assert REDACTED in cleaned


def test_a_client_is_told_the_upstreams_name_and_a_log_its_url_without_credentials() -> None:
    redaction = Redaction(URL, None, name="the upstream")
    said = "malformed reply from https://llm.internal:8443/v1/chat/completions; llm.internal:8443 reset"
    assert redaction.for_client(said) == "malformed reply from the upstream; the upstream reset"
    assert redaction.shown == "https://llm.internal:8443/v1"
    assert redaction.for_log(said) == said  # the operator may see where it went
    six = Redaction("http://[fd00::1]:8000/v1", None)
    assert six.for_client("to http://[fd00::1]:8000/v1/models: refused") == "to the upstream: refused"


def test_an_error_body_stays_json_with_its_secrets_out() -> None:
    redaction = Redaction("http://127.0.0.1:9/v1", "sk-live-1")
    quoted = {"error": {"message": "bad key Bearer sk-live-1", "seen": "http://127.0.0.1:9/v1/x"}}
    error = ApiError(400, "upstream said: bad key sk-live-1", body=json.dumps(quoted).encode())
    redaction.error(error)
    assert json.loads(error.json()) == {
        "error": {"message": f"bad key Bearer {REDACTED}", "seen": "the upstream"}
    }
    assert str(error) == error.message == f"upstream said: bad key {REDACTED}"


def test_with_no_secrets_text_passes_as_it_is() -> None:
    redaction = Redaction("http://127.0.0.1:9/v1", None)
    assert redaction.for_log("nothing to see") == "nothing to see"
    assert redaction.bytes_for_client(b'{"a": "b"}') == b'{"a": "b"}'


# --------------------------------------------------------------------------- pinning


def test_a_forwarded_body_gets_the_model_its_upstream_knows() -> None:
    assert json.loads(with_model(b'{"model": "dear", "input": "x"}', "cheap")) == {
        "model": "cheap",
        "input": "x",
    }
    assert json.loads(with_model(b'{"input": "x"}', "cheap")) == {"input": "x", "model": "cheap"}
    for body in (b"not json", b"[1, 2]"):
        assert with_model(body, "cheap") is body  # the upstream says what is wrong with it


def test_the_model_a_forwarded_body_names_is_read_only_from_a_json_object() -> None:
    assert model_in(b'{"model": "fast", "input": "x"}') == "fast"
    for body in (b'{"input": "x"}', b"not json", b"[1, 2]", b'{"model": 5}'):
        assert model_in(body) is None


# --------------------------------------------------------------------------- single flight


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_fetch_serves_every_waiter_and_the_value_is_kept_its_ttl() -> None:
    clock = Clock()
    calls = 0

    async def run() -> list[int]:
        gate = asyncio.Event()

        async def fetch() -> int:
            nonlocal calls
            calls += 1
            await gate.wait()
            return calls

        flight = SingleFlight(fetch, ttl=60, failure_ttl=5, clock=clock)
        waiters = [asyncio.ensure_future(flight.get()) for _ in range(10)]
        await asyncio.sleep(0)
        waiters[0].cancel()  # one asker leaves: the others still get the answer
        gate.set()
        got = [await waiter for waiter in waiters[1:]]
        clock.now = 59
        got.append(await flight.get())
        clock.now = 61
        got.append(await flight.get())
        return got

    assert asyncio.run(run()) == [1] * 10 + [2]


def test_a_failure_is_kept_its_own_short_while() -> None:
    clock = Clock()
    calls = 0

    async def run() -> list[str]:
        async def fetch() -> int:
            nonlocal calls
            calls += 1
            raise ApiError(502, f"down #{calls}")

        flight = SingleFlight(fetch, ttl=60, failure_ttl=5, clock=clock)
        seen = []
        for now in (0, 4, 6):
            clock.now = now
            with pytest.raises(ApiError) as caught:
                await flight.get()
            seen.append(caught.value.message)
        return seen

    assert asyncio.run(run()) == ["down #1", "down #1", "down #2"]
