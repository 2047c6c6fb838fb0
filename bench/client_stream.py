"""Benchmark 1: client stream throughput, and the JSON library on the stream path.

Every contender reads the same pre-built stream of ``--chunks`` content chunks from the bare
emitter (bench/emitter.py, its own process) and must return exactly the expected joined text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import httpx_sse
import msgspec
import openai
import orjson
import requests

import getgpt
from getgpt.protocol import envelope
from getgpt.protocol.reply import ReplyParser

from .common import compare, machine, table
from .emitter import EmitterProcess
from .stream import events, expected_text

MESSAGES = [{"role": "user", "content": "Hi"}]
SEED_HEADERS = {
    "Content-Type": "application/json",
    "Referer": "https://chat.getgpt.world/",
    "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
}


def getgpt_client(base: str) -> str:
    with getgpt.Client(base) as client:
        return "".join(client.stream(MESSAGES))


def getgpt_async_client(base: str) -> str:
    async def main() -> str:
        async with getgpt.AsyncClient(base) as client:
            return "".join([piece async for piece in client.stream(MESSAGES)])

    return asyncio.run(main())


def getgpt_client_via_httpx(base: str) -> str:
    # The way a request goes with an httpx client or transport of the caller's, a SOCKS proxy or trio.
    with getgpt.Client(base, http_client=httpx.Client()) as client:
        return "".join(client.stream(MESSAGES))


def seed_style(base: str) -> str:
    """What the seed does: requests, iter_lines, split on 'data: ', json.loads every line."""
    body = {"signature": envelope.encrypt(json.dumps({"messages": MESSAGES, "stream": True}))}
    response = requests.post(base + "api/chat/stream", headers=SEED_HEADERS, json=body, stream=True)
    out = []
    for line in response.iter_lines():
        if b"content" in line:
            line_json = json.loads(line.decode("utf-8").split("data: ")[1])
            out.append(line_json["choices"][0]["delta"]["content"])
    return "".join(out)


def httpx_sse_client(base: str) -> str:
    out = []
    with (
        httpx.Client() as client,
        httpx_sse.connect_sse(client, "POST", base + "api/chat/stream", json={"signature": "x"}) as source,
    ):
        for event in source.iter_sse():
            if event.data == "[DONE]":
                break
            content = event.json()["choices"][0]["delta"].get("content")
            if content:
                out.append(content)
    return "".join(out)


def openai_sdk(base: str) -> str:
    with openai.OpenAI(base_url=base + "v1", api_key="bench", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-3.5-turbo",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
        )
        out = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                out.append(chunk.choices[0].delta.content)
    return "".join(out)


def _raw_body(base: str) -> Iterator[bytes]:
    """The de-chunked body, one piece per socket read: no HTTP library, as naive as it gets."""
    parts = urlsplit(base)
    body = b'{"signature":"x"}'
    request = (
        f"POST {parts.path}api/chat/stream HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        buf = buf.partition(b"\r\n\r\n")[2]
        while True:
            pos, data = 0, []
            while True:  # take every whole HTTP chunk in buf
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol], 16)
                if size == 0:
                    yield b"".join(data)
                    return
                if eol + 4 + size > len(buf):
                    break
                data.append(buf[eol + 2 : eol + 2 + size])
                pos = eol + 4 + size
            buf = buf[pos:]
            yield b"".join(data)
            more = sock.recv(65536)
            if not more:
                return
            buf += more


def raw_socket(base: str) -> str:
    """The naive bound: a socket, a de-chunker, a split on blank lines, orjson for every event."""
    out: list[str] = []
    sse = b""
    for data in _raw_body(base):
        blocks = (sse + data).split(b"\n\n")
        sse = blocks.pop()
        for block in blocks:
            if not block.startswith(b"data: ") or block == b"data: [DONE]":
                continue
            content = orjson.loads(block[6:])["choices"][0]["delta"].get("content")
            if content:
                out.append(content)
    return "".join(out)


def raw_socket_reply_parser(base: str) -> str:
    """The same naive socket and de-chunker, feeding getgpt's sans-IO ReplyParser instead."""
    parser = ReplyParser()
    out: list[str] = []
    for data in _raw_body(base):
        out += parser.feed(data)
    out += parser.close()
    return "".join(out)


CONTENDERS: dict[str, Callable[[str], str]] = {
    "getgpt.Client": getgpt_client,
    "getgpt.AsyncClient": getgpt_async_client,
    "getgpt.Client through httpx (http_client=)": getgpt_client_via_httpx,
    "raw socket + orjson (bound)": raw_socket,
    "raw socket + getgpt ReplyParser": raw_socket_reply_parser,
    "seed-style (requests.iter_lines + json)": seed_style,
    "httpx-sse + json": httpx_sse_client,
    "openai SDK": openai_sdk,
}
BOUND = "raw socket + orjson (bound)"
SEED = "seed-style (requests.iter_lines + json)"


def stream_throughput(chunks: int, rounds: int, group: int = 1, skip: tuple[str, ...] = ()) -> str:
    expected = expected_text(chunks)
    with EmitterProcess(prebuild=(chunks,)) as emitter:
        base = emitter.base(chunks, group)
        contenders = {name: (lambda fn=fn: fn(base)) for name, fn in CONTENDERS.items() if name not in skip}

        def check(name: str, text: object) -> None:
            if text != expected:
                raise AssertionError(f"{name} returned the wrong text ({len(str(text))} characters)")

        medians = compare(contenders, rounds, check)
    bound, seed = medians[BOUND], medians.get(SEED)
    rows = []
    for name, seconds in medians.items():
        rows.append(
            [
                name,
                f"{seconds * 1000:.0f}",
                f"{chunks / seconds / 1000:.0f}k",
                f"{seconds / bound:.2f}",
                f"{seed / seconds:.2f}x" if seed else "-",
            ]
        )
    header = ["contender", "ms (median)", "chunks/s", "time / bound", "speed-up vs seed-style"]
    framing = "one HTTP chunk per SSE event" if group == 1 else f"{group} SSE events per HTTP chunk"
    return (
        f"{chunks:,} chunks, {framing}, {rounds} rounds, alternating; every contender's text checked\n\n"
        + table(header, rows)
    )


# --- the JSON library on the stream path --------------------------------------------------------


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta


class _Chunk(msgspec.Struct):
    choices: list[_Choice]


_typed = msgspec.json.Decoder(_Chunk).decode
_generic = msgspec.json.Decoder().decode


def _with_json(datas: list[bytes]) -> str:
    return "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in datas)


def _with_orjson(datas: list[bytes]) -> str:
    return "".join(orjson.loads(d)["choices"][0]["delta"].get("content") or "" for d in datas)


def _with_msgspec_generic(datas: list[bytes]) -> str:
    return "".join(_generic(d)["choices"][0]["delta"].get("content") or "" for d in datas)


def _with_msgspec_struct(datas: list[bytes]) -> str:
    return "".join(_typed(d).choices[0].delta.content or "" for d in datas)


def _with_reply_parser(datas: list[bytes]) -> str:
    # The parser's own event stage (template fast path, typed msgspec fallback), without SSE,
    # given the events as a 64 KB read holds them: about 340 at a time.
    parser = ReplyParser()
    out = []
    for start in range(0, len(datas), 340):
        out += parser._events(datas[start : start + 340])
    return "".join(out)


def json_choice(chunks: int, rounds: int) -> str:
    datas = [e[6:-2] for e in events(chunks)[:-1]]  # every data payload but [DONE]
    expected = expected_text(chunks)
    contenders = {
        "json.loads": lambda: _with_json(datas),
        "orjson.loads": lambda: _with_orjson(datas),
        "msgspec generic": lambda: _with_msgspec_generic(datas),
        "msgspec typed Struct": lambda: _with_msgspec_struct(datas),
        "getgpt ReplyParser (340 events a call)": lambda: _with_reply_parser(datas),
    }

    def check(name: str, text: object) -> None:
        if text != expected:
            raise AssertionError(f"{name} decoded the wrong text")

    medians = compare(contenders, rounds, check)
    base = medians["json.loads"]
    rows = [[name, f"{s / len(datas) * 1e9:.0f}", f"{base / s:.2f}x"] for name, s in medians.items()]
    return f"{len(datas):,} events decoded in memory, {rounds} rounds\n\n" + table(
        ["per-event decode", "ns/event (median)", "vs json.loads"], rows
    )


def run(quick: bool = False) -> str:
    chunks, rounds = (20_000, 3) if quick else (200_000, 5)
    out = ["## 1. Client stream throughput", "", stream_throughput(chunks, rounds), ""]
    out += ["### JSON on the stream path", "", json_choice(chunks, rounds), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--group", type=int, default=1, help="SSE events per HTTP chunk")
    parser.add_argument("--skip", action="append", default=[], help="a contender to leave out")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    print(machine(), "\n")
    if not args.json_only:
        print(stream_throughput(args.chunks, args.rounds, args.group, tuple(args.skip)), "\n")
    print(json_choice(args.chunks, args.rounds))


if __name__ == "__main__":
    main()
