"""An upstream that repeats back the credentials it received, as some proxies and misconfigured
servers do in their errors: raw HTTP/1.1 on loopback, keep-alive, recording what it was sent.

The request's ``model`` (its ``input`` on ``/v1/embeddings``) says what to answer:

- ``status-NNN``: HTTP NNN with an OpenAI-style error whose message, and a field of its own,
  quote the ``Authorization`` header received and name the upstream's own URL;
- ``event-error``: a 200 event stream whose second event is such an error;
- ``not-json``: a 200 event stream whose second event is no JSON but names an error, the
  credentials inside it;
- anything else: a plain successful reply.

``GET /v1/models`` answers ``status-500``'s error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .loopback import LoopbackServer, read_head

__all__ = ["Tattler"]

_CHUNK = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}]}


class Tattler(LoopbackServer):
    """``with Tattler() as up: up.url``; ``up.authorizations``: each request's Authorization."""

    def __init__(self) -> None:
        super().__init__()
        self.authorizations: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _error(self, authorization: str, path: str) -> bytes:
        here = f"http://127.0.0.1:{self.port}{path}"
        return json.dumps(
            {
                "error": {
                    "message": f"invalid credentials {authorization!r} presented to {here}",
                    "type": "invalid_request_error",
                    "code": None,
                    "received": {"authorization": authorization, "url": here},
                }
            }
        ).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_head(reader)
            body = await reader.readexactly(int(head.fields.get("content-length", "0")))
            authorization = head.fields.get("authorization", "")
            self.authorizations.append(authorization)
            path = head.target.split("?", 1)[0]
            request: Any = json.loads(body) if body else {}
            asked = str(request.get("model", "")) if isinstance(request, dict) else ""
            if path.endswith("/embeddings"):
                asked = str(request.get("input", ""))
            if path.endswith("/models"):
                asked = "status-500"
            writer.write(self._answer(asked, authorization, path))
            await writer.drain()

    def _answer(self, asked: str, authorization: str, path: str) -> bytes:
        if asked.startswith("status-"):
            status = int(asked.removeprefix("status-"))
            return _whole(status, self._error(authorization, path))
        if asked == "event-error":
            events = _event(_CHUNK) + b"data: " + self._error(authorization, path) + b"\n\n"
            return _stream(events)
        if asked == "not-json":
            # It names "error": the relay looks into it (and finds no JSON) rather than passing it on.
            return _stream(_event(_CHUNK) + f'data: <p>"error": no {authorization}</p>\n\n'.encode())
        reply = {
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
        }
        return _whole(200, json.dumps(reply).encode())


def _event(value: Any) -> bytes:
    return b"data: " + json.dumps(value).encode() + b"\n\n"


def _whole(status: int, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} Tattle\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _stream(events: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {len(events)}\r\n\r\n"
    return head.encode() + events
