"""The chat stream every benchmark sends: realistic OpenAI ``chat.completion.chunk`` events.

One module builds the events so every emitter (the bare asyncio one, the minimal Starlette app,
the getgpt server's comparison runs) and every contender sees exactly the same bytes.
"""

from __future__ import annotations

import json
import random

__all__ = ["done_event", "event_bytes", "events", "expected_text", "pieces", "sse_body"]

# Mostly short plain pieces, as a tokenizer yields them; now and then a piece that JSON must
# escape (newline, quote, backslash) or that is not ASCII, so no contender gets to skip the
# general path entirely.
_PLAIN = (
    " the", " of", " and", " to", " in", " is", " that", " for", " it", " as", " was", " with",
    " be", " by", " on", " not", " he", " this", " are", " or", " his", " from", " at", " which",
    "ing", "ed", "s", ",", ".", " model", " stream", " chunk", " token", " reply", " fast",
)  # fmt: skip
_ODD = ("\n", "\n\n", ' "q"', " a\\b", " café", " 東京", " \u2013", " 🙂")
_ID = "chatcmpl-8YqXbG0nRkq1Zl5tW3vH7cJ2dE4fA9"
_CREATED = 1_700_000_000
_MODEL = "gpt-3.5-turbo-0613"


def pieces(n: int, seed: int = 6) -> list[str]:
    """``n`` text pieces of a few characters each, reproducible from ``seed``."""
    rng = random.Random(seed)
    return [rng.choice(_ODD) if rng.random() < 0.02 else rng.choice(_PLAIN) for _ in range(n)]


def expected_text(n: int, seed: int = 6) -> str:
    return "".join(pieces(n, seed))


def _chunk(delta: dict[str, str], finish: str | None) -> bytes:
    body = {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": _MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    # Compact separators and escaped non-ASCII, as the OpenAI API writes them.
    return json.dumps(body, separators=(",", ":")).encode()


def event_bytes(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def done_event() -> bytes:
    return b"data: [DONE]\n\n"


def events(n: int, seed: int = 6) -> list[bytes]:
    """The whole stream as SSE events: role chunk, ``n`` content chunks, finish chunk, [DONE]."""
    out = [event_bytes(_chunk({"role": "assistant", "content": ""}, None))]
    out += [event_bytes(_chunk({"content": piece}, None)) for piece in pieces(n, seed)]
    out.append(event_bytes(_chunk({}, "stop")))
    out.append(done_event())
    return out


def sse_body(n: int, seed: int = 6) -> bytes:
    return b"".join(events(n, seed))
