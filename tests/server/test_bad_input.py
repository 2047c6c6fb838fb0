"""A catalogue of malformed requests to a real server: each gets a 4xx JSON error, none hurts it.

Every case is sent over real HTTP to uvicorn on loopback. The answer must be the status the case
names (and its ``code`` and ``param``, where the case names them), ``Content-Type:
application/json`` with exactly ``{"error": {"message", "type", "param", "code"}}``, and no
traceback text; the server must log no error (an unexpected exception would be logged as one
before turning into a 500), and must still serve a valid request after the whole catalogue.
An invalid request is a 400 ``invalid_request_error`` on both endpoints, as OpenAI answers.
The other bad-input tests of the server live here too: slow and oversized bodies, the SDK's view.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

import getgpt
from getgpt.protocol.envelope import encrypt, seal
from getgpt.server import ServerConfig, create_app

from ..support.processes import SSL_CONTEXT
from ..support.sdk import openai_sdk
from ..support.servers import serve

LIMIT = 8192
MAX_MESSAGES = 4
HI = [{"role": "user", "content": "hi"}]
JSON = {"content-type": "application/json"}


def sealed(request: object) -> dict[str, str]:
    """An envelope around ``request``: JSON-encoded unless it is already text."""
    text = request if isinstance(request, str) else json.dumps(request, ensure_ascii=False)
    return {"signature": encrypt(text)}


def chat(**fields: Any) -> dict[str, str]:
    """An envelope around a request with ``fields`` over a valid one."""
    return sealed({"messages": HI, **fields})


NOT_SAID = object()


@dataclass
class Case:
    name: str
    status: int
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    path: str = "api/chat/stream"
    method: str = "POST"
    code: str | int | None = None
    param: Any = NOT_SAID

    def send(self, http: httpx.Client, url: str) -> httpx.Response:
        if self.json is not None:
            return http.request(self.method, url + self.path, json=self.json)
        return http.request(self.method, url + self.path, content=self.content, headers=self.headers)


def raw(name: str, status: int, content: bytes, **options: Any) -> Case:
    return Case(name, status, content=content, **options)


V1 = "v1/chat/completions"
SIG = "signature"

CATALOGUE = [
    # The body is not the envelope.
    raw("empty body", 400, b"", code="invalid_json"),
    raw("not JSON", 400, b"{oops", code="invalid_json"),
    raw("truncated JSON", 400, b'{"signature":"ab', code="invalid_json"),
    raw("NUL bytes", 400, b"\x00" * 64),
    raw("bytes that are not UTF-8", 400, b"\xff\xfe\xfd"),
    raw("byte-order mark before JSON", 400, b'\xef\xbb\xbf{"signature":"00"}'),
    raw("JSON array", 400, b'["signature"]', code="bad_signature", param=SIG),
    raw("JSON string", 400, b'"signature"'),
    raw("JSON null", 400, b"null"),
    raw("JSON number", 400, b"42"),
    raw("object without signature", 400, b"{}", code="bad_signature", param=SIG),
    raw("object with another key", 400, b'{"sig":"00"}', code="bad_signature", param=SIG),
    raw("signature null", 400, b'{"signature":null}'),
    raw("signature a number", 400, b'{"signature":1234}', code="bad_signature"),
    raw("signature an object", 400, b'{"signature":{"a":1}}'),
    raw("invalid UTF-8 inside the signature string", 400, b'{"signature":"\xff\xfe"}'),
    raw("deeply nested body", 400, b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}"),
    # The signature is malformed.
    Case("empty signature", 400, json={SIG: ""}, code="bad_signature"),
    Case("short signature", 400, json={SIG: "ab" * 20}, code="bad_signature", param=SIG),
    Case("odd-length signature", 400, json={SIG: "a" * 97}, code="bad_signature"),
    Case("non-hex signature", 400, json={SIG: "zz" * 48}, code="bad_signature"),
    Case("non-ASCII signature", 400, json={SIG: "ф" * 96}),
    Case("signature with spaces", 400, json={SIG: " " + encrypt("{}") + " "}),
    Case("ciphertext not whole blocks", 400, json={SIG: "ab" * 24 + "0123456789abcdef" * 2}),
    Case("huge signature, under the body limit", 400, json={SIG: "ab" * 4000}),
    Case("wrong padding", 400, json={SIG: "00" * 16 + "0123456789abcdef" * 2}, code="bad_signature"),
    Case("key and IV swapped for others", 400, json={SIG: encrypt("{}")[:-32] + "f" * 32}),
    # The envelope decrypts to something that is not a request.
    Case(
        "ciphertext of non-JSON",
        400,
        json={SIG: seal(b"hello", "a" * 16, "b" * 16)},
        code="invalid_json",
        param=SIG,
    ),
    Case("ciphertext of non-UTF-8", 400, json={SIG: seal(b"\xff\xfe{}", "a" * 16, "b" * 16)}),
    Case("ciphertext of an empty string", 400, json=sealed("")),
    Case("ciphertext of a JSON array", 400, json=sealed([1, 2]), code="invalid_request"),
    Case("ciphertext of deeply nested JSON", 400, json=sealed("[" * 1500 + "]" * 1500)),
    # The request is invalid.
    Case("messages missing", 400, json=sealed({"model": "m"}), code="invalid_request"),
    Case("messages not a list", 400, json=sealed({"messages": "hi"}), param="messages"),
    Case("messages empty", 400, json=sealed({"messages": []}), code="invalid_request", param="messages"),
    Case("message not an object", 400, json=sealed({"messages": ["hi"]}), param="messages[0]"),
    Case(
        "wrong role",
        400,
        json=sealed({"messages": [{"role": "robot", "content": "x"}]}),
        code="invalid_request",
        param="messages[0].role",
    ),
    Case("role missing", 400, json=sealed({"messages": [{"content": "x"}]}), param="messages[0]"),
    Case("content a number", 400, json=sealed({"messages": [{"role": "user", "content": 5}]})),
    Case("content null", 400, json=sealed({"messages": [{"role": "user", "content": None}]})),
    Case("content a list of strings", 400, json=sealed({"messages": [{"role": "user", "content": ["x"]}]})),
    Case(
        "tool message without its call id", 400, json=sealed({"messages": [{"role": "tool", "content": "x"}]})
    ),
    Case(
        "assistant message with neither content nor tool calls",
        400,
        json=sealed({"messages": [*HI, {"role": "assistant", "content": None}]}),
        param="messages[1]",
    ),
    Case(
        "unknown field in a message",
        400,
        json=sealed({"messages": [{"role": "user", "content": "x", "mood": "odd"}]}),
        param="messages[0]",
    ),
    Case("temperature above 2", 400, json=chat(temperature=3), code="invalid_request", param="temperature"),
    Case("temperature far out of range", 400, json=chat(temperature=9), param="temperature"),
    Case("temperature a string", 400, json=chat(temperature="hot"), param="temperature"),
    Case("top_p negative", 400, json=chat(top_p=-0.1), param="top_p"),
    Case("max_tokens zero", 400, json=chat(max_tokens=0), param="max_tokens"),
    Case("max_tokens a float", 400, json=chat(max_tokens=1.5), param="max_tokens"),
    Case("frequency_penalty out of range", 400, json=chat(frequency_penalty=2.5), param="frequency_penalty"),
    Case("presence_penalty out of range", 400, json=chat(presence_penalty=-3), param="presence_penalty"),
    Case("stream a string", 400, json=chat(stream="yes"), param="stream"),
    Case("model empty", 400, json=chat(model=""), param="model"),
    Case("model too long", 400, json=chat(model="m" * 1000), param="model"),
    Case("uuid too long", 400, json=chat(uuid="u" * 500), param="uuid"),
    Case(
        "too many messages",
        400,
        json=sealed({"messages": HI * (MAX_MESSAGES + 1)}),
        code="too_many_messages",
        param="messages",
    ),
    # What the echo backend cannot honour, it refuses, naming it.
    Case(
        "logprobs the echo cannot give",
        400,
        json=chat(logprobs=True),
        code="unsupported_parameter",
        param="logprobs",
    ),
    Case("a forced tool call", 400, json=chat(tool_choice="required"), param="tool_choice"),
    Case(
        "a JSON schema reply",
        400,
        json=chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
        param="response_format",
    ),
    Case("a parameter the echo does not know", 400, json=chat(functionz=[]), param="functionz"),
    Case("n zero", 400, json=chat(n=0), param="n"),
    Case("stop a number", 400, json=chat(stop=5), param="stop"),
    # The HTTP around it is wrong.
    raw(
        "wrong content type",
        415,
        b'{"signature":"00"}',
        headers={"content-type": "text/plain"},
        code="unsupported_media_type",
    ),
    raw(
        "form content type",
        415,
        b"signature=00",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    raw("no content type", 415, b'{"signature":"00"}', headers={}, code="unsupported_media_type"),
    raw("oversized body", 413, b'{"signature":"' + b"0" * (LIMIT + 10) + b'"}', code="body_too_large"),
    raw("declared too large", 413, b"x" * (LIMIT + 1), code="body_too_large"),
    Case("GET on the chat endpoint", 405, method="GET", headers={}),
    # The same mistakes on the OpenAI-compatible endpoint.
    raw("v1: not JSON", 400, b"{oops", path=V1, code="invalid_json"),
    raw(
        "v1: invalid UTF-8 in a string",
        400,
        b'{"messages":[{"role":"user","content":"\xff"}]}',
        path=V1,
    ),
    raw("v1: deeply nested body", 400, b'{"x":' + b"[" * 5000 + b"}", path=V1),
    raw("v1: a JSON array", 400, b"[]", path=V1, code="invalid_type", param=None),
    Case(
        "v1: messages missing",
        400,
        json={"model": "m"},
        path=V1,
        code="missing_required_parameter",
        param="messages",
    ),
    Case(
        "v1: messages not a list",
        400,
        json={"messages": "hi"},
        path=V1,
        code="invalid_type",
        param="messages",
    ),
    Case("v1: messages empty", 400, json={"messages": []}, path=V1, param="messages"),
    Case("v1: a message not an object", 400, json={"messages": ["hi"]}, path=V1, param="messages[0]"),
    Case("v1: model a number", 400, json={"messages": HI, "model": 5}, path=V1, param="model"),
    Case("v1: stream a string", 400, json={"messages": HI, "stream": "yes"}, path=V1, param="stream"),
    Case(
        "v1: stream_options a list",
        400,
        json={"messages": HI, "stream_options": []},
        path=V1,
        param="stream_options",
    ),
    Case(
        "v1: too many messages",
        400,
        json={"messages": HI * (MAX_MESSAGES + 1)},
        path=V1,
        code="too_many_messages",
        param="messages",
    ),
    Case(
        "v1: content a number",
        400,
        json={"messages": [{"role": "user", "content": 5}]},
        path=V1,
        code="invalid_request",
        param="messages[0].content",
    ),
    Case(
        "v1: temperature above 2", 400, json={"messages": HI, "temperature": 5}, path=V1, param="temperature"
    ),
    Case("v1: max_tokens 1.5", 400, json={"messages": HI, "max_tokens": 1.5}, path=V1, param="max_tokens"),
    Case(
        "v1: max_tokens invalid beside a valid max_completion_tokens",
        400,
        json={"messages": HI, "max_tokens": 0, "max_completion_tokens": 10},
        path=V1,
        param="max_tokens",
    ),
    Case(
        "v1: max_completion_tokens zero",
        400,
        json={"messages": HI, "max_completion_tokens": 0},
        path=V1,
        param="max_completion_tokens",
    ),
    Case("v1: n above 128", 400, json={"messages": HI, "n": 129}, path=V1, param="n"),
    Case(
        "v1: wrong role",
        400,
        json={"messages": [{"role": "robot", "content": "x"}]},
        path=V1,
        param="messages[0].role",
    ),
    Case(
        "v1: logprobs",
        400,
        json={"messages": HI, "logprobs": True, "top_logprobs": 2},
        path=V1,
        param="logprobs",
    ),
    Case("GET on the v1 chat endpoint", 405, method="GET", headers={}, path=V1),
    # Two "model" keys: this server read the last, an upstream may read the first -- a model
    # the server's --upstream-model or aliases never saw.
    Case(
        "v1: a key given twice",
        400,
        content=b'{"model": "cheap", "messages": [{"role": "user", "content": "hi"}], "model": "dear"}',
        path=V1,
        code="duplicate_key",
        param="model",
    ),
    Case(
        "v1: a key given twice, once escaped",
        400,
        content=b'{"mod\\u0065l": "cheap", "messages": [{"role": "user", "content": "hi"}], "model": "dear"}',
        path=V1,
        code="duplicate_key",
        param="model",
    ),
    Case(
        "v1: a key with a quote given twice",
        400,
        content=b'{"a\\"b": 1, "messages": [{"role": "user", "content": "hi"}], "a\\u0022b": 2}',
        path=V1,
        code="duplicate_key",
        param='a"b',
    ),
]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    config = ServerConfig(max_body_bytes=LIMIT, max_messages=MAX_MESSAGES, body_timeout=0.5)
    with serve(create_app(config)) as base:
        yield base


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, verify=SSL_CONTEXT) as client:
        yield client


def assert_json_error(
    response: httpx.Response, status: int, code: str | int | None = None, param: Any = NOT_SAID
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert list(error) == ["message", "type", "param", "code"]
    assert isinstance(error["message"], str) and error["message"]
    if status == 400:
        assert error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code, error
    if param is not NOT_SAID:
        assert error["param"] == param, error
    for marker in ("Traceback", 'File "', "Error:", "line "):
        assert marker not in response.text, response.text
    return dict(error)


def test_catalogue_is_large() -> None:
    assert len(CATALOGUE) >= 30
    assert len({case.name for case in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("case", CATALOGUE, ids=[case.name for case in CATALOGUE])
def test_malformed_request_gets_a_json_4xx(
    url: str, http: httpx.Client, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = case.send(http, url)
    assert_json_error(response, case.status, case.code, case.param)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_slow_body_gets_408_and_frees_the_connection(url: str) -> None:
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/chat/stream HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b'Content-Length: 200\r\n\r\n{"signature":"'
        )
        started = time.monotonic()
        answer = b""
        while True:  # the server answers, then closes: the rest of the body is never read
            data = sock.recv(4096)
            if not data:
                break
            answer += data
        waited = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"]["code"] == "body_timeout"
    assert waited < 5


def test_server_still_serves_after_the_whole_catalogue(url: str, http: httpx.Client) -> None:
    rejected = http.get(url + "healthz").json()["rejected_total"]
    for case in CATALOGUE:
        assert 400 <= case.send(http, url).status_code < 500
    with getgpt.Client(url, max_retries=0) as client:
        assert client.complete([{"role": "user", "content": "still here, Привет 😀"}]) == (
            "still here, Привет 😀"
        )
    health = http.get(url + "healthz").json()
    assert health["status"] == "ok"
    assert health["active_streams"] == 0
    # Every refusal but the 405s (Starlette's, before the chat endpoint) is counted.
    assert health["rejected_total"] - rejected == sum(case.status != 405 for case in CATALOGUE)


def kernel_buffer_ceiling() -> int:
    """The most a loopback connection's kernel buffers can take, sender's and receiver's together.

    A client can hand this much to the kernel before a server that stopped reading stops it, so a
    test that the server stops early must allow it (CI: a 1 MiB body once fitted whole, with
    tcp_rmem's ceiling at 32 MiB).
    """
    ceilings = []
    for name in ("tcp_rmem", "tcp_wmem"):
        try:
            with open(f"/proc/sys/net/ipv4/{name}") as limits:
                ceilings.append(int(limits.read().split()[2]))
        except OSError:  # not Linux: the Linux defaults' ceilings
            ceilings.append(6 << 20)
    return sum(ceilings)


def test_a_chunked_body_too_large_is_refused_while_reading(url: str, http: httpx.Client) -> None:
    piece = 64 << 10
    ceiling = kernel_buffer_ceiling()
    pieces = 4 * (ceiling // piece) + 64  # four times what the kernel could hold
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(pieces):
            sent += 1
            yield b" " * piece

    # httpcore reads the answer even when a write broke because the server closed.
    response = http.post(url + "api/chat/stream", content=body(), headers=JSON)
    assert_json_error(response, 413, "body_too_large")
    # The server stopped reading after LIMIT bytes: the client was stopped once the kernel's buffers
    # filled, long before the body's end.
    assert sent * piece <= LIMIT + ceiling + piece
    assert sent < pieces


def test_v1_takes_integral_float_counts(url: str, http: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 100.0}
    response = http.post(url + V1, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "x"


def test_the_sdk_sees_a_bad_request_as_its_own_bad_request_error(url: str) -> None:
    with openai_sdk(url + "v1", max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], temperature=5)
        assert caught.value.status_code == 400
        assert caught.value.param == "temperature"  # type: ignore[attr-defined]
        body = caught.value.body
        assert isinstance(body, dict) and "temperature" in body["message"]
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model="m", messages=HI, logprobs=True)
        assert refused.value.code == "unsupported_parameter"
        assert "logprobs" in refused.value.message
