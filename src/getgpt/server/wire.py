"""Every byte of a response body the server writes: OpenAI ``chat.completion.chunk`` events,
``chat.completion`` objects and error objects (as a body, or as the events that end a stream).

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

from ..reply import Usage
from .api_error import ApiError

__all__ = ["ChunkWriter", "Outcome", "completion_body", "error_body", "error_event", "estimate_tokens"]

_encode = msgspec.json.encode
DONE = b"data: [DONE]\n\n"


@dataclass
class Outcome:
    """What a backend reports besides text: why it stopped and, if it knows, the token counts."""

    finish_reason: str = "stop"
    usage: Usage | None = None


def estimate_tokens(chars: int) -> int:
    """A rough token count of ``chars`` characters, for backends that report none: four a token."""
    return (chars + 3) // 4


def _usage(outcome: Outcome, prompt_chars: int, completion_chars: int) -> bytes:
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
    """The bytes of one streamed reply's events."""

    __slots__ = ("_head", "_prefix", "_suffix", "include_usage")

    def __init__(self, model: str, *, include_usage: bool = False) -> None:
        reply_id, shared = _identity(model)
        self._head = b'data: {"id":"' + reply_id + b'","object":"chat.completion.chunk"' + shared
        self._prefix = self._head + b',"choices":[{"index":0,"delta":{"content":'
        # OpenAI sends "usage":null on every chunk when the client asked for usage.
        self._suffix = b'},"finish_reason":null}]' + (b',"usage":null' if include_usage else b"") + b"}\n\n"
        self.include_usage = include_usage

    def first(self) -> bytes:
        """The opening chunk: the assistant's role and no text."""
        return self._prefix + b'""' + b',"role":"assistant"' + self._suffix

    def pieces(self, texts: Sequence[str]) -> bytes:
        """The content chunks of ``texts``, as one block of bytes."""
        prefix, suffix = self._prefix, self._suffix
        return b"".join([prefix + _encode(text) + suffix for text in texts])

    def last(self, outcome: Outcome, prompt_chars: int, completion_chars: int) -> bytes:
        """The closing chunk with the finish reason, the usage chunk if asked for, and ``[DONE]``."""
        usage_null = b',"usage":null' if self.include_usage else b""
        end = (
            self._head
            + b',"choices":[{"index":0,"delta":{},"finish_reason":'
            + _encode(outcome.finish_reason)
            + b"}]"
            + usage_null
            + b"}\n\n"
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
    """A whole non-streamed reply: one ``chat.completion`` object."""
    reply_id, shared = _identity(model)
    return (
        b'{"id":"'
        + reply_id
        + b'","object":"chat.completion"'
        + shared
        + b',"choices":[{"index":0,"message":{"role":"assistant","content":'
        + _encode(text)
        + b'},"logprobs":null,"finish_reason":'
        + _encode(outcome.finish_reason)
        + b'}],"usage":'
        + _usage(outcome, prompt_chars, len(text))
        + b"}"
    )


def error_body(error: ApiError) -> bytes:
    """The JSON body of an error response."""
    return _encode(error.payload())


def error_event(error: ApiError) -> bytes:
    """The events that end a stream with ``error``."""
    return b"data: " + _encode(error.payload()) + b"\n\n" + DONE
