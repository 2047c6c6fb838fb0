"""Every byte of a response body the server writes: OpenAI ``chat.completion.chunk`` events,
``chat.completion`` objects and error objects (as a body, or as the events that end a stream).

Two kinds of reply: a backend that makes its reply (the echo) hands over text pieces, which
:class:`ChunkWriter` turns into events; a backend that forwards one (``openai``, ``getgpt``) hands
over the upstream's events already framed, which go out as they came (:func:`events`).

Speed: within one reply every chunk is the same JSON but for its content string, so
:class:`ChunkWriter` builds the bytes before and after that string once, and each piece costs one
JSON encode of the string alone and a join -- no model object, no validation, no re-serialising
of the constant fields.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from ...protocol.reply import Usage
from ..api_error import ApiError

__all__ = [
    "CHARS_PER_TOKEN",
    "DONE",
    "ChunkWriter",
    "Outcome",
    "completion_body",
    "error_event",
    "estimate_tokens",
    "frame",
]

_encode = msgspec.json.encode
DONE = b"data: [DONE]\n\n"


@dataclass
class Outcome:
    """What a backend reports besides its reply: why it stopped, the token counts if it knows them,
    how many choices its text pieces stand for (each choice gets the same text), and the name of
    the upstream that answered (the last one tried, when none did; None for the echo)."""

    finish_reason: str = "stop"
    usage: Usage | None = None
    choices: int = 1
    upstream: str | None = None


def frame(data: bytes) -> bytes:
    """One server-sent event carrying ``data`` (a JSON object's bytes, or ``[DONE]``).

    Data holding line ends (an upstream's pretty-printed JSON) takes one ``data:`` line each, as
    the event-stream format joins them again with LF (found by the relay's fuzz target).
    """
    if b"\n" in data:
        data = data.replace(b"\n", b"\ndata: ")
    return b"data: " + data + b"\n\n"


#: The rough size of a token, for counts no model gave.
CHARS_PER_TOKEN = 4


def estimate_tokens(chars: int) -> int:
    """A rough token count of ``chars`` characters, for backends that report none: four a token."""
    return -(-chars // CHARS_PER_TOKEN)


def _usage(outcome: Outcome, prompt_chars: int, completion_chars: int) -> bytes:
    """The usage object: the backend's counts, or estimates of those it did not give."""
    usage = outcome.usage
    prompt_tokens = usage.prompt_tokens if usage and usage.prompt_tokens is not None else None
    completion_tokens = usage.completion_tokens if usage and usage.completion_tokens is not None else None
    if prompt_tokens is None:
        prompt_tokens = estimate_tokens(prompt_chars)
    if completion_tokens is None:
        completion_tokens = estimate_tokens(completion_chars)
    return _encode(
        {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    )


def _identity(model: str) -> tuple[bytes, bytes]:
    """The id and the fields every object of one reply shares: ``"id":...,"object":"`` omitted."""
    reply_id = b"chatcmpl-" + secrets.token_hex(12).encode()
    tail = b',"created":' + str(int(time.time())).encode() + b',"model":' + _encode(model)
    return reply_id, tail


class ChunkWriter:
    """The bytes of one streamed reply's events, for ``choices`` choices of the same text."""

    __slots__ = ("_head", "_prefixes", "_suffix", "include_usage")

    def __init__(self, model: str, *, include_usage: bool = False, choices: int = 1) -> None:
        reply_id, shared = _identity(model)
        self._head = b'data: {"id":"' + reply_id + b'","object":"chat.completion.chunk"' + shared
        self._prefixes = [
            self._head + b',"choices":[{"index":' + str(index).encode() + b',"delta":{"content":'
            for index in range(choices)
        ]
        # OpenAI sends "usage":null on every chunk when the client asked for usage.
        self._suffix = b'},"finish_reason":null}]' + (b',"usage":null' if include_usage else b"") + b"}\n\n"
        self.include_usage = include_usage

    def first(self) -> bytes:
        """The opening chunks: the assistant's role and no text, one for each choice."""
        return b"".join(prefix + b'""' + b',"role":"assistant"' + self._suffix for prefix in self._prefixes)

    def pieces(self, texts: Sequence[str]) -> bytes:
        """The content chunks of ``texts``, as one block of bytes."""
        suffix = self._suffix
        if len(self._prefixes) == 1:
            prefix = self._prefixes[0]
            return b"".join([prefix + _encode(text) + suffix for text in texts])
        return b"".join([prefix + _encode(text) + suffix for text in texts for prefix in self._prefixes])

    def last(self, outcome: Outcome, prompt_chars: int, completion_chars: int) -> bytes:
        """The closing chunks with the finish reason, the usage chunk if asked for, and ``[DONE]``."""
        usage_null = b',"usage":null' if self.include_usage else b""
        reason = _encode(outcome.finish_reason)
        end = b"".join(
            self._head
            + b',"choices":[{"index":'
            + str(index).encode()
            + b',"delta":{},"finish_reason":'
            + reason
            + b"}]"
            + usage_null
            + b"}\n\n"
            for index in range(len(self._prefixes))
        )
        if self.include_usage:
            end += (
                self._head
                + b',"choices":[],"usage":'
                + _usage(outcome, prompt_chars, completion_chars)
                + b"}\n\n"
            )
        return end + DONE


def completion_body(model: str, text: str, outcome: Outcome, prompt_chars: int) -> bytes:
    """A whole non-streamed reply: one ``chat.completion`` object, the text in each choice."""
    reply_id, shared = _identity(model)
    message = (
        b'"message":{"role":"assistant","content":' + _encode(text) + b'},"logprobs":null,"finish_reason":'
    )
    reason = _encode(outcome.finish_reason)
    choices = b",".join(
        b'{"index":' + str(index).encode() + b"," + message + reason + b"}"
        for index in range(outcome.choices)
    )
    return (
        b'{"id":"'
        + reply_id
        + b'","object":"chat.completion"'
        + shared
        + b',"choices":['
        + choices
        + b'],"usage":'
        + _usage(outcome, prompt_chars, len(text) * outcome.choices)
        + b"}"
    )


def error_event(error: ApiError) -> bytes:
    """The events that end a stream with ``error``."""
    return frame(error.json()) + DONE
