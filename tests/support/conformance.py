"""A scripted chat server for the conformance checker's tests: right in every way the checker
looks at, or wrong in exactly one (``breakage``), so each check can be seen to fail.

It speaks both protocols -- ``POST /api/chat/stream`` (the envelope) and ``POST
/v1/chat/completions`` -- echoing the last user message four characters a piece, answers
``GET /healthz`` with its count of open streams, and refuses chat requests past the twelfth with
429 (the checker's burst meets it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import getgpt

__all__ = ["BREAKAGES", "Conformance"]

#: Each way to be wrong, named after the check it should fail.
BREAKAGES = (
    "envelope",
    "content-type",
    "framing",
    "done",
    "finish-reason",
    "unicode",
    "whole-reply",
    "usage",
    "bad-json",
    "bad-signature",
    "invalid-request",
    "disconnect",
    "error-event",
    "retry-after",
)
ALLOWED = 12
PIECE = 4
# A message this long (the disconnect check's) is answered as a model answers a long question: a
# piece every few milliseconds, for as long as the client reads (at most LONG_REPLY seconds), so
# the reply is still going when the checker leaves it, however slow the machine.
LONG_MESSAGE = 500
PACE = 0.005
LONG_REPLY = 20.0


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "code": status}},
        status_code=status,
        headers=headers,
    )


def _event(value: Any) -> bytes:
    return b"data: " + json.dumps(value).encode() + b"\n\n"


def _chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _pieces(text: str, by_code_unit: bool) -> list[str]:
    if not by_code_unit:
        return [text[i : i + PIECE] for i in range(0, len(text), PIECE)]
    # What a server counting UTF-16 code units does: it cuts surrogate pairs in half.
    units = text.encode("utf-16-le", "surrogatepass")
    size = 2 * PIECE
    return [units[i : i + size].decode("utf-16-le", "surrogatepass") for i in range(0, len(units), size)]


def _split_utf8_events(text: str) -> Iterator[bytes]:
    """An echo of ``text`` with each non-ASCII character's bytes cut across two events: the body
    is not UTF-8 (nor is either event's data), though the bytes put together are."""
    template = json.dumps(_chunk("\x00")).encode()  # the content, "\u0000", replaced by raw bytes
    for char in text:
        data = char.encode()
        halves = [data[:1], data[1:]] if len(data) > 1 else [data]
        for half in halves:
            yield b"data: " + template.replace(b'"\\u0000"', b'"' + half + b'"') + b"\n\n"
    yield _event(_chunk(finish="stop"))
    yield b"data: [DONE]\n\n"


class Conformance:
    """The app and its state; ``breakage`` names the one check it is built to fail."""

    def __init__(
        self, breakage: str | None = None, *, errors: bool = False, split_utf8: str | None = None
    ) -> None:
        assert breakage is None or breakage in BREAKAGES, breakage
        assert split_utf8 in (None, "echo", "model"), split_utf8
        self.breakage = breakage
        #: End every stream with a well-formed error event instead of a finish_reason.
        self.errors = errors
        #: Cut each non-ASCII character's UTF-8 bytes across two events, as a server slicing
        #: bytes rather than characters does: "echo" echoes so; "model" answers the checker's
        #: first message ("pong") in ASCII and every other one in Russian, so cut.
        self.split_utf8 = split_utf8
        #: Every chat request's fields, as received.
        self.requests: list[dict[str, Any]] = []
        self.active = 0
        self.chats = 0
        self.app = Starlette(
            routes=[
                Route("/api/chat/stream", self.envelope, methods=["POST"]),
                Route("/v1/chat/completions", self.openai, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
            ]
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "active_streams": self.active})

    async def envelope(self, request: Request) -> Response:
        refused = self._limited()
        if refused is not None:
            return refused
        if self.breakage == "envelope":
            return _error(400, "this server reads no envelopes")
        body = await request.body()
        try:
            sealed = json.loads(body)
        except ValueError:
            return self._not_json()
        try:
            fields = json.loads(getgpt.decrypt(sealed["signature"]))
        except (getgpt.SignatureError, KeyError, TypeError, ValueError):
            if self.breakage == "bad-signature":
                return Response("<h1>Internal Server Error</h1>", status_code=500, media_type="text/html")
            return _error(400, "signature is not a valid envelope")
        return await self._chat(fields)

    async def openai(self, request: Request) -> Response:
        refused = self._limited()
        if refused is not None:
            return refused
        try:
            fields = json.loads(await request.body())
        except ValueError:
            return self._not_json()
        return await self._chat(fields)

    def _limited(self) -> Response | None:
        self.chats += 1
        if self.chats <= ALLOWED:
            return None
        headers = {} if self.breakage == "retry-after" else {"Retry-After": "1"}
        return _error(429, "slow down", **headers)

    def _not_json(self) -> Response:
        if self.breakage == "bad-json":
            return Response("Internal Server Error", status_code=500, media_type="text/plain")
        return _error(400, "body is not JSON")

    async def _chat(self, fields: Any) -> Response:
        messages = fields.get("messages") if isinstance(fields, dict) else None
        if not isinstance(messages, list) or not messages:
            if self.breakage == "invalid-request":
                return JSONResponse({"detail": "messages: field required"}, status_code=422)
            return _error(422, "messages must be a non-empty list")
        self.requests.append(fields)
        text = str(messages[-1].get("content", ""))
        options = fields.get("stream_options") or {}
        if fields.get("stream", True) is False and self.breakage != "whole-reply":
            return self._whole(text)
        if self.split_utf8 is not None:
            if self.split_utf8 == "model":
                text = "pong" if text.startswith("Reply with one word") else "Привет, мир! Как дела?"
            return StreamingResponse(_split_utf8_events(text), media_type="text/event-stream")
        return StreamingResponse(
            self._events(text, include_usage=options.get("include_usage") is True),
            media_type="text/plain" if self.breakage == "content-type" else "text/event-stream",
        )

    def _whole(self, text: str) -> Response:
        tokens = (len(text) + 3) // 4
        return JSONResponse(
            {
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 1700000000,
                "model": "scripted",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": tokens, "completion_tokens": tokens, "total_tokens": 2 * tokens},
            }
        )

    def _reply(self, text: str) -> Iterator[str]:
        """The pieces of the reply to ``text``: its echo; a long one's again and again, for up to
        LONG_REPLY seconds (until the client leaves)."""
        pieces = _pieces(text, by_code_unit=self.breakage == "unicode")
        yield from pieces
        if len(text) > LONG_MESSAGE:
            until = time.monotonic() + LONG_REPLY
            while time.monotonic() < until:
                yield from pieces

    async def _events(self, text: str, include_usage: bool) -> AsyncIterator[bytes]:
        broken = self.breakage
        self.active += 1
        finished = False
        try:
            yield _event(
                {**_chunk(), "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
            )
            for n, piece in enumerate(self._reply(text)):
                yield _event(_chunk(piece))
                if n == 1 and broken == "framing":
                    yield b"data: keep-alive\n\n"
                if len(text) > LONG_MESSAGE:
                    await asyncio.sleep(PACE)
                elif n % 64 == 0:
                    await asyncio.sleep(0)  # let a disconnect be noticed
            if self.errors or broken == "error-event":
                yield _event({"error": {"message": "the model went away", "type": "server_error"}})
                if broken == "error-event":
                    yield _event(_chunk("and yet more text"))
            elif broken != "finish-reason":
                yield _event(_chunk(finish="stop"))
            if include_usage and broken != "usage" and not self.errors:
                tokens = (len(text) + 3) // 4
                usage = {"prompt_tokens": tokens, "completion_tokens": tokens, "total_tokens": 2 * tokens}
                yield _event({**_chunk(), "choices": [], "usage": usage})
            if broken != "done":
                yield b"data: [DONE]\n\n"
            finished = True
        finally:
            # A server that does not notice its client leave keeps counting the stream.
            if finished or broken != "disconnect":
                self.active -= 1
