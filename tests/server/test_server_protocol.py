"""The project's client, and a seed-style client, against the project's server on a real uvicorn."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
import requests

import getgpt
from getgpt.protocol.envelope import encrypt
from getgpt.protocol.request import build_request, encode
from getgpt.server import ServerConfig, create_app
from getgpt.server.app import WEB_DIR

from ..support.processes import SSL_CONTEXT
from ..support.servers import serve

TEXTS = [
    "Hi",
    "Привет, как дела? Всё хорошо!",
    "emoji 👋🏽👨‍👩‍👧‍👦 and 中文 and ñ",
    'quotes " backslash \\ newline \n tab \t and data: content [DONE]',
    "x" * 5000,
]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(create_app(ServerConfig(echo_piece_chars=3))) as base:
        yield base


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def seed_style(url: str, messages: list[dict[str, str]]) -> Iterator[str]:
    """The seed's client, as its document describes it: requests + iter_lines + split + json.loads."""
    body = {
        "messages": messages,
        "frequency_penalty": 0,
        "max_tokens": 4000,
        "model": "gpt-3.5-turbo",
        "presence_penalty": 0,
        "temperature": 1,
        "top_p": 1,
        "stream": True,
        "uuid": "2d3d3c4e-1111-4a4a-9b9b-123456789abc",
    }
    headers = {"Content-Type": "application/json", "Referer": url, "user-agent": "Mozilla/5.0"}
    res = requests.post(
        url + "api/chat/stream",
        headers=headers,
        json={"signature": encrypt(json.dumps(body))},
        stream=True,
        timeout=30,
    )
    for line in res.iter_lines():
        if b"content" in line:
            line_json = json.loads(line.decode("utf-8").split("data: ")[1])
            yield line_json["choices"][0]["delta"]["content"]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_client_stream_echoes_exactly(url: str, text: str) -> None:
    with getgpt.Client(url) as client, client.stream(user(text)) as chat:
        pieces = list(chat)
    assert "".join(pieces) == text
    assert len(pieces) == -(-len(text) // 3)  # pieces of 3 characters, as configured
    assert chat.finish_reason == "stop"


def test_client_complete_and_history(url: str) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "второй 🚀"},
    ]
    with getgpt.Client(url) as client:
        reply = client.complete(messages, temperature=0.5, model="any-model", max_tokens=7)
    assert reply == "второй 🚀"
    assert reply.finish_reason == "stop"


def test_stream_false_answers_one_json_completion(url: str) -> None:
    with getgpt.Client(url) as client:
        reply = client.complete(user("Привет 👋"), stream=False)
    assert reply == "Привет 👋"
    assert reply.usage is not None and reply.usage.completion_tokens == 2  # 8 characters, about 4 a token

    signature = encrypt(encode(build_request(user("whole"), stream=False)).decode())
    response = httpx.post(url + "api/chat/stream", json={"signature": signature}, verify=SSL_CONTEXT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "whole"}
    assert body["choices"][0]["finish_reason"] == "stop"


def test_async_client_concurrent_streams(url: str) -> None:
    async def main() -> list[str]:
        async with getgpt.AsyncClient(url) as client:

            async def one(i: int) -> str:
                pieces = [piece async for piece in client.stream(user(f"сообщение {i} 🎉"))]
                return "".join(pieces)

            return await asyncio.gather(*(one(i) for i in range(20)))

    assert asyncio.run(main()) == [f"сообщение {i} 🎉" for i in range(20)]


@pytest.mark.parametrize("text", TEXTS[:4], ids=range(4))
def test_seed_style_client_interoperates(url: str, text: str) -> None:
    if "data: " in text:
        # The seed's `split("data: ")[1]` cuts such text short; that is the seed's bug, not the server's.
        text = text.replace("data: ", "data ")
    assert "".join(seed_style(url, user(text))) == text


def test_wire_format_of_the_stream(url: str) -> None:
    signature = encrypt(encode(build_request(user("abcdefg"))).decode())
    response = httpx.post(url + "api/chat/stream", json={"signature": signature}, verify=SSL_CONTEXT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = response.text.split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""]
    events = [json.loads(block.removeprefix("data: ")) for block in blocks[:-2]]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [e["choices"][0]["delta"].get("content") for e in events[1:-1]] == ["abc", "def", "g"]
    assert events[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert len({e["id"] for e in events}) == 1
    assert {e["model"] for e in events} == {"gpt-3.5-turbo"}


def test_healthz_models_and_web_page(url: str) -> None:
    health = httpx.get(url + "healthz", verify=SSL_CONTEXT).json()
    assert health["status"] == "ok"
    assert health["active_streams"] == 0
    assert health["backend"] == "echo"
    models = httpx.get(url + "v1/models", verify=SSL_CONTEXT).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["gpt-3.5-turbo"]
    page = httpx.get(url, verify=SSL_CONTEXT)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    if (WEB_DIR / "index.html").is_file():
        assert page.text == (WEB_DIR / "index.html").read_text(encoding="utf-8")
    else:
        assert "web UI is not installed" in page.text


def test_static_files_come_from_the_web_directory(url: str) -> None:
    files = sorted(p for p in WEB_DIR.iterdir() if p.is_file()) if WEB_DIR.is_dir() else []
    for path in files:
        response = httpx.get(url + "static/" + path.name, verify=SSL_CONTEXT)
        assert response.status_code == 200, path.name
        assert response.content == path.read_bytes()
    assert httpx.get(url + "static/no-such-file.js", verify=SSL_CONTEXT).status_code == 404
    assert httpx.get(url + "static/../server/app.py", verify=SSL_CONTEXT).status_code == 404


def test_echo_delay_spaces_the_pieces() -> None:
    with serve(create_app(ServerConfig(echo_delay=0.05, echo_piece_chars=2))) as base:
        arrivals: list[float] = []
        with getgpt.Client(base) as client:
            start = time.monotonic()
            for _ in client.stream(user("abcdef")):
                arrivals.append(time.monotonic() - start)
    # Three pieces, two pauses of 50 ms between them. The last piece cannot arrive before both
    # pauses have passed; on a loaded machine the client may read all three at once, so the time
    # between arrivals proves nothing, but the time to the last one does.
    assert len(arrivals) == 3
    assert arrivals[2] >= 0.1


def test_chunk_writer_output_is_what_a_json_encoder_gives() -> None:
    from getgpt.server.chat.wire import ChunkWriter, Outcome, completion_body

    writer = ChunkWriter('mo"del', include_usage=True)
    texts = ["a", 'q"\\', "\u2028\x00", "Ж🙂"]
    block = writer.first() + writer.pieces(texts) + writer.last(Outcome(), 10, 6)
    events = [msgspec.json.decode(b[6:]) for b in block.split(b"\n\n") if b and b != b"data: [DONE]"]
    assert [e["choices"][0]["delta"]["content"] for e in events[1:5]] == texts
    assert {e["model"] for e in events} == {'mo"del'}
    assert events[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    whole = msgspec.json.decode(completion_body("m", "Ж🙂\n", Outcome(finish_reason="length"), 4))
    assert whole["choices"][0]["message"]["content"] == "Ж🙂\n"
    assert whole["choices"][0]["finish_reason"] == "length"


def test_openapi_document_describes_every_route(url: str) -> None:
    document = httpx.get(url + "openapi.json", verify=SSL_CONTEXT).json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/chat/stream",
        "/v1/chat/completions",
        "/v1/models",
        "/v1/models/{model}",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/responses",
        "/healthz",
    }
    for path in ("/api/chat/stream", "/v1/chat/completions"):
        responses = document["paths"][path]["post"]["responses"]
        assert {"200", "400", "413", "415", "503"} <= set(responses)
        assert "422" not in responses  # an invalid request is a 400, as OpenAI answers
        assert set(responses["200"]["content"]) == {"text/event-stream", "application/json"}
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["properties"]["error"]["required"] == ["message", "type", "param", "code"]
    # The documented ranges are the ones the server enforces.
    temperature = schemas["OpenAIChatRequest"]["properties"]["temperature"]
    assert (temperature["minimum"], temperature["maximum"]) == (0, 2)
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 2.01}
    assert httpx.post(url + "v1/chat/completions", json=body, verify=SSL_CONTEXT).status_code == 400
    body["temperature"] = 2
    assert httpx.post(url + "v1/chat/completions", json=body, verify=SSL_CONTEXT).status_code == 200


def test_slot_is_free_as_soon_as_the_reply_has_been_read(url: str) -> None:
    # The slot is released before the reply's last bytes go out, so no client can see its own
    # finished request still counted, whatever the scheduling.
    with getgpt.Client(url) as client, httpx.Client(verify=SSL_CONTEXT) as http:
        for i in range(20):
            assert client.complete(user(f"n{i}"), stream=bool(i % 2)) == f"n{i}"
            assert http.get(url + "healthz").json()["active_streams"] == 0
