"""A scripted OpenAI-compatible upstream: raw asyncio HTTP/1.1 on loopback, recording what it receives.

The request's ``model`` names the script (``SCRIPTS``): tool calls whose arguments arrive in
fragments split across HTTP chunks, reasoning deltas, logprobs, ``n = 2``, refusals, errors with
``Retry-After``, a stream cut short, an error event inside the stream. Streamed requests get the
script's chunks, one HTTP chunk per event (some events split over two), with the usage chunk
when ``stream_options.include_usage`` asks for it; non-streamed ones get the one
``chat.completion`` those chunks add up to. It also answers ``GET /v1/models``,
``GET /v1/models/{id}``, ``POST /v1/embeddings``, ``/v1/completions`` and ``/v1/responses``, and
the GetGpt protocol's ``POST /api/chat/stream`` with the same scripts (the envelope opened).

Every request is recorded whole -- method, path, headers and the exact body bytes -- in
``received``, so a test can check that the gateway forwarded what the client sent.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from getgpt.protocol import envelope

from .loopback import LoopbackServer, read_head

__all__ = ["SCRIPTS", "Received", "ScriptedUpstream", "completion_of", "script_events"]

CREATED = 1_700_000_000
USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "completion_tokens_details": {"reasoning_tokens": 3},
}
WEATHER_ARGS = ['{"ci', 'ty": "Os', 'lo", "unit', '": "c"}']
TIME_ARGS = ['{"tz":', ' "Europe/Oslo"}']


def _choice(index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def _tool_fragment(index: int, arguments: str, *, first: dict[str, str] | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index}
    if first:
        call.update(id=first["id"], type="function", function={"name": first["name"], "arguments": arguments})
    else:
        call["function"] = {"arguments": arguments}
    return call


def _tool_script() -> list[dict[str, Any]]:
    weather = {"id": "call_weather", "name": "get_weather"}
    clock = {"id": "call_time", "name": "get_time"}
    out = [_choice(role="assistant", content=None)]
    out.append(_choice(tool_calls=[_tool_fragment(0, "", first=weather)]))
    out += [_choice(tool_calls=[_tool_fragment(0, piece)]) for piece in WEATHER_ARGS]
    out.append(_choice(tool_calls=[_tool_fragment(1, TIME_ARGS[0], first=clock)]))
    out.append(_choice(tool_calls=[_tool_fragment(1, TIME_ARGS[1])]))
    out.append(_choice(finish="tool_calls"))
    return out


def _logprob(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.25, "bytes": list(token.encode()), "top_logprobs": []}


SCRIPTS: dict[str, list[dict[str, Any]]] = {
    # Each is the list of choices, one chunk each, before the usage chunk.
    "text": [
        _choice(role="assistant", content=""),
        _choice(content="Hello"),
        _choice(content=", wörld 🙂"),
        _choice(finish="stop"),
    ],
    "tools": _tool_script(),
    "reasoning": [
        _choice(role="assistant", content=""),
        _choice(reasoning_content="Think"),
        _choice(reasoning_content="ing..."),
        _choice(content="42"),
        _choice(finish="stop"),
    ],
    "logprobs": [
        _choice(role="assistant", content=""),
        {**_choice(content="Yes"), "logprobs": {"content": [_logprob("Yes")], "refusal": None}},
        {**_choice(content="!"), "logprobs": {"content": [_logprob("!")], "refusal": None}},
        _choice(finish="stop"),
    ],
    "n2": [
        _choice(0, role="assistant", content=""),
        _choice(1, role="assistant", content=""),
        _choice(0, content="first"),
        _choice(1, content="second"),
        _choice(1, content=" choice"),
        _choice(0, finish="stop"),
        _choice(1, finish="length"),
    ],
    "refusal": [
        _choice(role="assistant", content=None, refusal=""),
        _choice(refusal="I can't help with that."),
        _choice(finish="stop"),
    ],
}
ERRORS = {
    "error-400": (
        400,
        {},
        {"message": "bad 'tools'", "type": "invalid_request_error", "param": "tools", "code": None},
    ),
    "error-401": (
        401,
        {},
        {
            "message": "Incorrect API key",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    ),
    "error-404": (
        404,
        {},
        {
            "message": "The model does not exist",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        },
    ),
    "error-429": (
        429,
        {"Retry-After": "7"},
        {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"},
    ),
    "error-500": (
        500,
        {},
        {"message": "The server had an error", "type": "server_error", "param": None, "code": None},
    ),
    "error-503": (
        503,
        {"Retry-After": "2"},
        {"message": "Overloaded", "type": "server_error", "param": None, "code": None},
    ),
}
MODELS = [
    {"id": "text", "object": "model", "created": CREATED, "owned_by": "scripted"},
    {"id": "tools", "object": "model", "created": CREATED, "owned_by": "scripted"},
    {"id": "llama3:8b", "object": "model", "created": CREATED, "owned_by": "library"},
]


def script_events(name: str, model: str, usage: bool) -> list[dict[str, Any]]:
    """The chunks of a streamed reply to ``name``, with the usage chunk when asked."""
    chunks = [
        {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_scripted",
            "choices": [copy.deepcopy(choice)],
            **({"usage": None} if usage else {}),
        }
        for choice in SCRIPTS[name]
    ]
    if usage:
        chunks.append(
            {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": "fp_scripted",
                "choices": [],
                "usage": USAGE,
            }
        )
    return chunks


def completion_of(name: str, model: str) -> dict[str, Any]:
    """The one ``chat.completion`` object the chunks of ``name`` add up to."""
    choices: dict[int, dict[str, Any]] = {}
    for choice in SCRIPTS[name]:
        whole = choices.setdefault(
            choice["index"],
            {
                "index": choice["index"],
                "message": {"role": "assistant", "content": None},
                "logprobs": None,
                "finish_reason": None,
            },
        )
        message = whole["message"]
        for key, value in choice["delta"].items():
            if key == "tool_calls":
                calls = message.setdefault("tool_calls", [])
                for fragment in value:
                    if fragment["index"] == len(calls):
                        calls.append(
                            {
                                "id": fragment["id"],
                                "type": "function",
                                "function": {"name": fragment["function"]["name"], "arguments": ""},
                            }
                        )
                    calls[fragment["index"]]["function"]["arguments"] += fragment["function"]["arguments"]
            elif key != "role" and value is not None:
                message[key] = (message.get(key) or "") + value
        if choice.get("logprobs"):
            whole["logprobs"] = whole["logprobs"] or {"content": [], "refusal": None}
            whole["logprobs"]["content"] += choice["logprobs"]["content"]
        if choice["finish_reason"]:
            whole["finish_reason"] = choice["finish_reason"]
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_scripted",
        "choices": [choices[i] for i in sorted(choices)],
        "usage": USAGE,
    }


@dataclass
class Received:
    """One request as the upstream read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # For a streamed answer: the HTTP chunks to send, and whether to end the body properly.
    chunks: list[bytes] | None = None
    finish: bool = True


def _json(status: int, value: Any, **headers: str) -> _Answer:
    return _Answer(status, {"Content-Type": "application/json", **headers}, json.dumps(value).encode())


def _sse(events: list[bytes], finish: bool = True) -> _Answer:
    return _Answer(200, {"Content-Type": "text/event-stream"}, chunks=events, finish=finish)


def _data(value: Any) -> bytes:
    return b"data: " + (value if isinstance(value, bytes) else json.dumps(value).encode()) + b"\n\n"


class ScriptedUpstream(LoopbackServer):
    """The upstream, in its own thread and event loop; ``with ScriptedUpstream() as up: up.url``."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Received] = []
        #: Connections accepted so far (a pooling client reuses them).
        self.connections = 0

    @property
    def url(self) -> str:
        """The base URL, ending in ``/``; OpenAI's API is under ``v1/``."""
        return f"http://127.0.0.1:{self.port}/"

    def chat_requests(self) -> list[Received]:
        return [r for r in self.received if r.path.endswith("/chat/completions")]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:  # keep-alive: one request after another on the connection
            head = await read_head(reader)
            body = await reader.readexactly(int(head.fields.get("content-length", "0")))
            received = Received(head.method, head.target, head.fields, body)
            self.received.append(received)
            answer = self._answer(received)
            if not await self._send(writer, answer):
                return

    async def _send(self, writer: asyncio.StreamWriter, answer: _Answer) -> bool:
        """Write ``answer``; False when the connection must close after it."""
        head = [f"HTTP/1.1 {answer.status} Scripted"] + [f"{k}: {v}" for k, v in answer.headers.items()]
        if answer.chunks is None:
            head.append(f"Content-Length: {len(answer.body)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + answer.body)
            await writer.drain()
            return True
        head.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for piece in answer.chunks:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0)  # each chunk its own write, so reads fall between them
        if not answer.finish:
            return False  # cut: no terminating chunk, the connection just closes
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    def _answer(self, received: Received) -> _Answer:
        path = received.path.split("?", 1)[0]
        routes: dict[tuple[str, str], Callable[[Received], _Answer]] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/api/chat/stream"): self._getgpt,
            ("GET", "/v1/models"): lambda r: _json(200, {"object": "list", "data": MODELS}),
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/responses"): self._responses,
        }
        route = routes.get((received.method, path))
        if route is not None:
            return route(received)
        if received.method == "GET" and path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            for model in MODELS:
                if model["id"] == name:
                    return _json(200, model)
            return _json(
                404,
                {
                    "error": {
                        "message": f"The model '{name}' does not exist",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "model_not_found",
                    }
                },
            )
        return _json(
            404,
            {
                "error": {
                    "message": f"no route {received.method} {path}",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        )

    def _chat(self, received: Received) -> _Answer:
        return self._reply(received.json())

    def _getgpt(self, received: Received) -> _Answer:
        request = json.loads(envelope.decrypt(json.loads(received.body)["signature"]))
        return self._reply(request)

    def _reply(self, request: dict[str, Any]) -> _Answer:
        model = str(request.get("model", ""))
        if model in ERRORS:
            status, headers, error = ERRORS[model]
            return _json(status, {"error": error}, **headers)
        stream = bool(request.get("stream"))
        if model in ("cut", "error-event"):
            events = [_data(chunk) for chunk in script_events("text", model, False)[:2]]
            if model == "error-event":
                events.append(
                    _data(
                        {
                            "error": {
                                "message": "the model crashed",
                                "type": "server_error",
                                "param": None,
                                "code": "model_crashed",
                            }
                        }
                    )
                )
            return _sse(events, finish=model == "error-event")
        name = model if model in SCRIPTS else "text"
        if not stream:
            return _json(200, completion_of(name, model))
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        events = [_data(chunk) for chunk in script_events(name, model, usage)] + [_data(b"[DONE]")]
        if name == "tools":
            # One event split over two HTTP chunks: the reader must join them.
            split = events.pop(3)
            events[3:3] = [split[:17], split[17:]]
        return _sse(events)

    def _embeddings(self, received: Received) -> _Answer:
        request = received.json()
        inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.5, -0.25, float(len(text))]}
            for i, text in enumerate(inputs)
        ]
        return _json(
            200,
            {
                "object": "list",
                "data": data,
                "model": request["model"],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            },
        )

    def _completions(self, received: Received) -> _Answer:
        request = received.json()
        base = {
            "id": "cmpl-scripted",
            "object": "text_completion",
            "created": CREATED,
            "model": request["model"],
        }
        if not request.get("stream"):
            choice = {"text": " world", "index": 0, "logprobs": None, "finish_reason": "stop"}
            return _json(
                200,
                {
                    **base,
                    "choices": [choice],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )
        events = [
            _data(
                {**base, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}]}
            )
            for text, reason in ((" wor", None), ("ld", None), ("", "stop"))
        ]
        return _sse([*events, _data(b"[DONE]")])

    def _responses(self, received: Received) -> _Answer:
        request = received.json()
        response = {
            "id": "resp_scripted",
            "object": "response",
            "created_at": CREATED,
            "status": "completed",
            "model": request["model"],
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hi there", "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }
        if not request.get("stream"):
            return _json(200, response)
        events = []
        for number, (kind, data) in enumerate(
            (
                (
                    "response.output_text.delta",
                    {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hi "},
                ),
                (
                    "response.output_text.delta",
                    {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "there"},
                ),
                ("response.completed", {"response": response}),
            )
        ):
            payload = {"type": kind, "sequence_number": number, **data}
            events.append(f"event: {kind}\n".encode() + _data(payload))
        return _sse(events)
