"""A small scripted GetGpt server for the client's tests: the last message says what to do."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

import getgpt
from getgpt.protocol.request import parse_request


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> bytes:
    """One OpenAI-style ``chat.completion.chunk`` event."""
    delta = {"role": "assistant"} if content is None and finish is None else {}
    if content is not None:
        delta["content"] = content
    return delta_chunk(delta, finish, **extra)


def stream_of(pieces: list[str], done: bool = True) -> bytes:
    """A whole reply: role chunk, content chunks, finish chunk and (unless told) ``[DONE]``."""
    body = chunk() + b"".join(chunk(p) for p in pieces) + chunk(finish="stop")
    return body + (b"data: [DONE]\n\n" if done else b"")


class Live:
    """Words are echoed back one chunk each; "wait" holds the stream; "endless" runs until cut off."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.release = threading.Event()
        self.disconnected = threading.Event()

    async def chat(self, request: Request) -> Response:
        self.peers.append(request.scope["client"])
        body = await request.json()
        text = parse_request(getgpt.decrypt(body["signature"])).messages[-1].content

        async def events() -> AsyncIterator[bytes]:
            yield chunk()
            if text == "wait":
                yield chunk("first")
                # Hold the stream until the test has seen the first piece (and says so).
                assert await asyncio.to_thread(self.release.wait, 10), "the test never released the stream"
                yield chunk("second")
            elif text == "endless":
                try:
                    for i in range(10_000):
                        yield chunk(f"{i} ")
                        await asyncio.sleep(0.01)  # the behaviour: a stream paced like a model's
                finally:
                    self.disconnected.set()
            else:
                for piece in text.split(" "):
                    yield chunk(piece + " ")
            yield chunk(finish="stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), status_code=201, media_type="text/event-stream")


# What the scripted server streams for "tools": two calls whose arguments arrive in fragments split
# mid-JSON (and mid-word), the second call's first fragment before the first call's last; the
# first call's name is repeated in a later fragment, as some servers do, and counts once.
TOOL_FRAGMENTS = [
    [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}],
    [{"index": 0, "function": {"arguments": '{"city": "Пар'}}],
    [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{"}}],
    [{"index": 0, "function": {"name": "get_weather", "arguments": 'иж", "unit": "C"}'}}],
    [{"index": 1, "function": {"arguments": '"zone": "CET"}'}}],
]
TOOL_CALLS = [
    {
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Париж", "unit": "C"}'},
    },
    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"zone": "CET"}'}},
]
REASONING = ["The user wants ", "the weather; ", "call the tool."]


def delta_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    """A ``chat.completion.chunk`` event with this exact delta (and ``extra`` top-level fields)."""
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-3.5-turbo",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def reasoning_stream() -> bytes:
    """A reply whose reasoning (``reasoning_content``) comes before its text: "It is sunny."."""
    reasoning = b"".join(delta_chunk({"reasoning_content": piece}) for piece in REASONING)
    return (
        chunk() + reasoning + chunk("It is ") + chunk("sunny.") + chunk(finish="stop") + b"data: [DONE]\n\n"
    )


def tool_call_stream() -> bytes:
    """A reply of reasoning (as ``reasoning``) and then the two tool calls of TOOL_CALLS, in fragments."""
    return (
        chunk()
        + delta_chunk({"reasoning": "Two tools, "})
        + delta_chunk({"reasoning": "then answer."})
        + b"".join(delta_chunk({"content": None, "tool_calls": f}) for f in TOOL_FRAGMENTS)
        + chunk(finish="tool_calls")
        + b"data: [DONE]\n\n"
    )
