"""Nothing secret leaves: the upstream's key, the Basic credentials and password of its URL, and its
internal address appear in no answer a client gets and in no log line -- against an upstream that
quotes back the Authorization it received in every error, on every route that relays one."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from getgpt.protocol.envelope import encrypt
from getgpt.protocol.request import build_request, encode
from getgpt.server import ServerConfig, create_app

from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve
from ..support.servers import free_port, serve
from ..support.tattling import Tattler

KEY = "sk-live-7fe3c9d1a2b4e5f6"
USER, PASSWORD = "svc-user", "pa55-W0rd-91c2"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@dataclass
class Seen:
    """Every answer's status, headers and body as the client got them."""

    answers: list[tuple[str, int, str]]

    def text(self) -> str:
        return "\n".join(f"{what} {status} {body}" for what, status, body in self.answers)


@pytest.fixture(scope="module")
def tattler() -> Iterator[Tattler]:
    with Tattler() as upstream:
        yield upstream


def _sealed(model: str) -> dict[str, str]:
    return {
        "signature": encrypt(encode(build_request([{"role": "user", "content": "hi"}], model=model)).decode())
    }


def _exchange(url: str) -> Seen:
    """Every way an upstream's error reaches a client, through the gateway at ``url``."""
    seen: list[tuple[str, int, str]] = []
    with httpx.Client(base_url=url, timeout=10, verify=SSL_CONTEXT) as client:

        def keep(what: str, answer: httpx.Response) -> httpx.Response:
            headers = "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
            seen.append((what, answer.status_code, headers + answer.text))
            return answer

        for status in (400, 403, 429, 401, 500):
            for stream in (False, True):
                body = {
                    "model": f"status-{status}",
                    "stream": stream,
                    "messages": [{"role": "user", "content": "x"}],
                }
                answer = keep(f"chat {status} stream={stream}", client.post("v1/chat/completions", json=body))
                assert answer.status_code == (502 if status == 401 else status), answer.text
            answer = keep(
                f"embeddings {status}",
                client.post("v1/embeddings", json={"model": "e", "input": f"status-{status}"}),
            )
            assert answer.status_code == (502 if status == 401 else status), answer.text
            answer = keep(
                f"getgpt {status}", client.post("api/chat/stream", json=_sealed(f"status-{status}"))
            )
            assert answer.status_code == (502 if status == 401 else status), answer.text
        for script in ("event-error", "not-json"):
            for stream in (False, True):
                body = {"model": script, "stream": stream, "messages": [{"role": "user", "content": "x"}]}
                answer = keep(f"chat {script} stream={stream}", client.post("v1/chat/completions", json=body))
                # 200 and an error event, or (the whole stream in one read) 502 before a byte.
                assert answer.status_code in ((200, 502) if stream else (502,)), answer.text
                assert '"error"' in answer.text
        keep("models", client.get("v1/models"))
    return Seen(seen)


def _assert_clean(text: str, upstream_port: int) -> None:
    for secret in (KEY, PASSWORD, BASIC, f"{USER}:{PASSWORD}"):
        assert secret not in text
    # Nor the internal address: a client is told "the upstream".
    assert f"127.0.0.1:{upstream_port}" not in text
    assert f":{upstream_port}/" not in text


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(lines)


@pytest.mark.parametrize("credentials", ["key", "url"])
def test_the_upstreams_credentials_reach_no_client_and_no_log(
    tattler: Tattler, credentials: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if credentials == "key":
        monkeypatch.setenv("TATTLE_KEY", KEY)
        config = ServerConfig(backend="openai", upstream=tattler.url + "v1", upstream_key_env="TATTLE_KEY")
    else:
        upstream = f"http://{USER}:{PASSWORD}@127.0.0.1:{tattler.port}/v1"
        config = ServerConfig(backend="openai", upstream=upstream)
    before = len(tattler.authorizations)
    with caplog.at_level(logging.DEBUG), serve(create_app(config)) as url:
        seen = _exchange(url)
    # The upstream did receive the credentials and quoted them back: the test has teeth.
    sent = tattler.authorizations[before:]
    assert sent and all((KEY if credentials == "key" else BASIC) in header for header in sent)
    _assert_clean(seen.text(), tattler.port)
    _assert_clean(_log_text(caplog), tattler.port)
    # What the client is told instead: the upstream's name and a stand-in for the secret.
    assert "the upstream" in seen.text() and "[redacted]" in seen.text()


def test_a_password_in_the_upstreams_url_is_in_no_log_line_of_getgpt_serve() -> None:
    # An upstream that is not there: its failure was logged at WARNING with the URL, password and all.
    closed = free_port()
    upstream = f"http://{USER}:{PASSWORD}@127.0.0.1:{closed}/v1"
    with getgpt_serve("--backend", "openai", "--upstream", upstream, "--log-level", "debug") as server:
        answer = httpx.post(
            server.url + "v1/chat/completions",
            json={"messages": [{"role": "user", "content": "x"}]},
            verify=SSL_CONTEXT,
        )
        assert answer.status_code == 502
        _assert_clean(answer.text, closed)
        output = server.wait_for_output("upstream")
    assert f"127.0.0.1:{closed}" in output  # the operator's log names the upstream
    for secret in (PASSWORD, BASIC, f"{USER}:{PASSWORD}"):
        assert secret not in output


def test_getgpt_serve_with_a_tattling_upstream_logs_and_answers_no_secret(tattler: Tattler) -> None:
    upstream = f"http://{USER}:{PASSWORD}@127.0.0.1:{tattler.port}/v1"
    env = {"TATTLE_KEY": KEY}
    args = ("--backend", "openai", "--upstream", upstream, "--upstream-key-env", "TATTLE_KEY")
    with getgpt_serve(*args, "--log-level", "debug", env=env) as server:
        seen = _exchange(server.url)
        output = server.output()
    _assert_clean(seen.text(), tattler.port)
    for secret in (KEY, PASSWORD, BASIC, f"{USER}:{PASSWORD}"):
        assert secret not in output
