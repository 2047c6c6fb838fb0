"""A scripted upstream for the routing tests, run as its own process so it can be killed.

``python tests/support/fleet_upstream.py --port N --name NAME`` serves, on 127.0.0.1:N, both
kinds a gateway routes to: OpenAI's ``POST /v1/chat/completions`` (and ``/v1/embeddings``,
``GET /v1/models``) and the GetGpt protocol's ``POST /api/chat/stream``, plus ``GET /healthz``.
A chat reply says who answered: ``"<NAME> says <the last message>"``, one word an event, its
``model`` the one the request named. A last message ``pieces N every S`` streams N pieces S
seconds apart instead; ``hold`` streams its first piece, then waits for ``{"release": true}``.

How it answers is set while it runs, by ``POST /_control`` with a JSON object:
``{"status": 503, "retry_after": "5"}`` answers every chat (and embeddings) request with that
status; ``{"hang": true}`` reads requests and never answers them; ``{"probe_status": 500}``
answers the probes (``/v1/models``, ``/healthz``) so; ``{}`` restores the defaults.
``GET /_control`` returns what it received: ``{"chat": n, "embeddings": n, "models": n,
"healthz": n, "sent_models": [...]}``.

Standalone on purpose (only ``getgpt.protocol`` for the envelope): the tests start it by path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import Any

from getgpt.protocol import envelope

_PIECES = re.compile(r"pieces (\d+) every ([\d.]+)")


class Upstream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.control: dict[str, Any] = {}
        self.counts = {"chat": 0, "embeddings": 0, "models": 0, "healthz": 0}
        self.sent_models: list[str] = []
        self.released = asyncio.Event()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                headers = {}
                for field in fields:
                    if field:
                        name, _, value = field.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self.answer(method, target.split("?", 1)[0], body, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def answer(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        if path == "/_control":
            if method == "POST":
                self.control = json.loads(body or b"{}")
                if self.control.get("release"):
                    self.released.set()
                else:
                    self.released.clear()
            return await _json(writer, 200, {**self.counts, "sent_models": self.sent_models})
        if method == "GET" and path in ("/v1/models", "/healthz"):
            self.counts["models" if path == "/v1/models" else "healthz"] += 1
            status = int(self.control.get("probe_status") or 200)
            if path == "/healthz":
                return await _json(writer, status, {"status": "ok" if status == 200 else "failing"})
            models = [{"id": f"{self.name}-model", "object": "model", "created": 1, "owned_by": self.name}]
            return await _json(writer, status, {"object": "list", "data": models})
        if method == "POST" and path in ("/v1/chat/completions", "/api/chat/stream", "/v1/embeddings"):
            kind = "embeddings" if path.endswith("embeddings") else "chat"
            self.counts[kind] += 1
            if self.control.get("hang"):
                await asyncio.Event().wait()  # until the connection (or the process) goes
            status = self.control.get("status")
            if status:
                extra = (
                    {"Retry-After": str(self.control["retry_after"])}
                    if self.control.get("retry_after")
                    else {}
                )
                error = {
                    "message": f"{self.name} is failing",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
                return await _json(writer, int(status), {"error": error}, extra)
            request = json.loads(body)
            if path == "/api/chat/stream":
                request = json.loads(envelope.decrypt(request["signature"]))
            model = str(request.get("model"))
            self.sent_models.append(model)
            if kind == "embeddings":
                data = [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]
                return await _json(
                    writer, 200, {"object": "list", "data": data, "model": model, "upstream": self.name}
                )
            return await self.chat(request, model, writer)
        return await _json(
            writer, 404, {"error": {"message": f"no route {method} {path}", "type": "invalid_request_error"}}
        )

    async def chat(self, request: dict[str, Any], model: str, writer: asyncio.StreamWriter) -> None:
        text = str(request["messages"][-1]["content"])
        paced = _PIECES.fullmatch(text)
        pieces = [f"{i} " for i in range(int(paced[1]))] if paced else f"{self.name} says {text}".split(" ")
        if paced:
            pieces[0] = f"{self.name} says " + pieces[0]
        gap = float(paced[2]) if paced else 0.0
        base = {"id": "chatcmpl-fleet", "object": "chat.completion.chunk", "created": 1, "model": model}
        if not request.get("stream"):
            whole = " ".join(piece.strip() for piece in pieces) if not paced else "".join(pieces)
            message = {"role": "assistant", "content": whole}
            return await _json(
                writer,
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {
                        "prompt_tokens": 3,
                        "completion_tokens": len(pieces),
                        "total_tokens": 3 + len(pieces),
                    },
                },
            )
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for index, piece in enumerate(pieces):
            content = piece if paced else (piece if index == len(pieces) - 1 else piece + " ")
            event = {**base, "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
            _chunk(writer, b"data: " + json.dumps(event).encode() + b"\n\n")
            await writer.drain()
            if gap:
                await asyncio.sleep(gap)
            if text == "hold" and index == 0:
                await self.released.wait()
        end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        _chunk(writer, b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


async def _json(
    writer: asyncio.StreamWriter, status: int, value: object, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(value).encode()
    lines = [f"HTTP/1.1 {status} Fleet", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {text}" for name, text in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    upstream = Upstream(args.name)
    server = await asyncio.start_server(upstream.connection, "127.0.0.1", args.port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
