"""A catalogue of malformed requests to a real server: each gets a 4xx JSON error, none hurts it.

Every case is sent over real HTTP to uvicorn on loopback. The answer must be the status the case
names, ``Content-Type: application/json`` with exactly ``{"error": {"message", "type", "code"}}``,
and no traceback text; the server must log no error (an unexpected exception would be logged as
one before turning into a 500), and must still serve a valid request after the whole catalogue.
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
import pytest

import getgpt
from getgpt.envelope import encrypt, seal
from getgpt.server import ServerConfig, create_app

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


@dataclass
class Case:
    name: str
    status: int
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    path: str = "api/chat/stream"
    method: str = "POST"

    def send(self, http: httpx.Client, url: str) -> httpx.Response:
        if self.json is not None:
            return http.request(self.method, url + self.path, json=self.json)
        return http.request(self.method, url + self.path, content=self.content, headers=self.headers)


def raw(name: str, status: int, content: bytes, **options: Any) -> Case:
    return Case(name, status, content=content, **options)


CATALOGUE = [
    # The body is not the envelope.
    raw("empty body", 400, b""),
    raw("not JSON", 400, b"{oops"),
    raw("truncated JSON", 400, b'{"signature":"ab'),
    raw("NUL bytes", 400, b"\x00" * 64),
    raw("bytes that are not UTF-8", 400, b"\xff\xfe\xfd"),
    raw("byte-order mark before JSON", 400, b'\xef\xbb\xbf{"signature":"00"}'),
    raw("JSON array", 400, b'["signature"]'),
    raw("JSON string", 400, b'"signature"'),
    raw("JSON null", 400, b"null"),
    raw("JSON number", 400, b"42"),
    raw("object without signature", 400, b"{}"),
    raw("signature null", 400, b'{"signature":null}'),
    raw("signature a number", 400, b'{"signature":1234}'),
    raw("signature an object", 400, b'{"signature":{"a":1}}'),
    raw("invalid UTF-8 inside the signature string", 400, b'{"signature":"\xff\xfe"}'),
    raw("deeply nested body", 400, b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}"),
    # The signature is malformed.
    Case("empty signature", 400, json={"signature": ""}),
    Case("short signature", 400, json={"signature": "ab" * 20}),
    Case("odd-length signature", 400, json={"signature": "a" * 97}),
    Case("non-hex signature", 400, json={"signature": "zz" * 48}),
    Case("non-ASCII signature", 400, json={"signature": "ф" * 96}),
    Case("signature with spaces", 400, json={"signature": " " + encrypt("{}") + " "}),
    Case("ciphertext not whole blocks", 400, json={"signature": "ab" * 24 + "0123456789abcdef" * 2}),
    Case("huge signature, under the body limit", 400, json={"signature": "ab" * 4000}),
    Case("wrong padding", 400, json={"signature": "00" * 16 + "0123456789abcdef" * 2}),
    Case("key and IV swapped for others", 400, json={"signature": encrypt("{}")[:-32] + "f" * 32}),
    # The envelope decrypts to something that is not a request.
    Case("ciphertext of non-JSON", 400, json={"signature": seal(b"hello", "a" * 16, "b" * 16)}),
    Case("ciphertext of non-UTF-8", 400, json={"signature": seal(b"\xff\xfe{}", "a" * 16, "b" * 16)}),
    Case("ciphertext of an empty string", 400, json=sealed("")),
    Case("ciphertext of a JSON array", 422, json=sealed([1, 2])),
    Case("ciphertext of deeply nested JSON", 422, json=sealed("[" * 1500 + "]" * 1500)),
    # The request is invalid.
    Case("messages missing", 422, json=sealed({"model": "m"})),
    Case("messages not a list", 422, json=sealed({"messages": "hi"})),
    Case("messages empty", 422, json=sealed({"messages": []})),
    Case("message not an object", 422, json=sealed({"messages": ["hi"]})),
    Case("wrong role", 422, json=sealed({"messages": [{"role": "robot", "content": "x"}]})),
    Case("role missing", 422, json=sealed({"messages": [{"content": "x"}]})),
    Case("content a number", 422, json=sealed({"messages": [{"role": "user", "content": 5}]})),
    Case("content null", 422, json=sealed({"messages": [{"role": "user", "content": None}]})),
    Case("content a list", 422, json=sealed({"messages": [{"role": "user", "content": ["x"]}]})),
    Case(
        "unknown field in a message",
        422,
        json=sealed({"messages": [{"role": "user", "content": "x", "mood": "odd"}]}),
    ),
    Case("unknown field in the request", 422, json=chat(functions=[])),
    Case("temperature above 2", 422, json=chat(temperature=3)),
    Case("temperature a string", 422, json=chat(temperature="hot")),
    Case("top_p negative", 422, json=chat(top_p=-0.1)),
    Case("max_tokens zero", 422, json=chat(max_tokens=0)),
    Case("max_tokens a float", 422, json=chat(max_tokens=1.5)),
    Case("frequency_penalty out of range", 422, json=chat(frequency_penalty=2.5)),
    Case("presence_penalty out of range", 422, json=chat(presence_penalty=-3)),
    Case("stream a string", 422, json=chat(stream="yes")),
    Case("model empty", 422, json=chat(model="")),
    Case("model too long", 422, json=chat(model="m" * 1000)),
    Case("uuid too long", 422, json=chat(uuid="u" * 500)),
    Case("too many messages", 422, json=sealed({"messages": HI * (MAX_MESSAGES + 1)})),
    # The HTTP around it is wrong.
    raw("wrong content type", 415, b'{"signature":"00"}', headers={"content-type": "text/plain"}),
    raw(
        "form content type",
        415,
        b"signature=00",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    raw("no content type", 415, b'{"signature":"00"}', headers={}),
    raw("oversized body", 413, b'{"signature":"' + b"0" * (LIMIT + 10) + b'"}'),
    Case("GET on the chat endpoint", 405, method="GET", headers={}),
    # The same mistakes on the OpenAI-compatible endpoint.
    raw("v1: not JSON", 400, b"{oops", path="v1/chat/completions"),
    raw(
        "v1: invalid UTF-8 in a string",
        400,
        b'{"messages":[{"role":"user","content":"\xff"}]}',
        path="v1/chat/completions",
    ),
    raw("v1: deeply nested body", 400, b'{"x":' + b"[" * 5000 + b"}", path="v1/chat/completions"),
    Case("v1: messages not a list", 422, json={"messages": "hi"}, path="v1/chat/completions"),
    Case("v1: n above 1", 422, json={"messages": HI, "n": 2}, path="v1/chat/completions"),
    Case(
        "v1: image content",
        422,
        json={"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        path="v1/chat/completions",
    ),
    Case(
        "v1: wrong role",
        422,
        json={"messages": [{"role": "robot", "content": "x"}]},
        path="v1/chat/completions",
    ),
]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    config = ServerConfig(max_body_bytes=LIMIT, max_messages=MAX_MESSAGES, body_timeout=0.5)
    with serve(create_app(config)) as base:
        yield base


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def assert_json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "code"}
    assert isinstance(error["message"], str) and error["message"]
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
    assert_json_error(response, case.status)
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
    for case in CATALOGUE:
        assert 400 <= case.send(http, url).status_code < 500
    with getgpt.Client(url, max_retries=0) as client:
        assert client.complete([{"role": "user", "content": "still here, Привет 😀"}]) == (
            "still here, Привет 😀"
        )
    health = http.get(url + "healthz").json()
    assert health["status"] == "ok"
    assert health["active_streams"] == 0
