"""Passing an upstream's chat reply on, event by event, without decoding what need not be.

:class:`EventRelay` is sans-IO: fed the upstream's body as it arrives, it returns the events to
send on, each the upstream's own JSON untouched (as the upstream framed it, or framed anew as
``data: ...`` lines when it had to be looked into), so tool-call deltas, reasoning, logprobs,
refusals, several choices and whatever an upstream adds next reach the client as they were sent.
It looks inside an event only when a cheap byte test says the event may end the reply or report
something: a non-null ``finish_reason``, a ``usage`` object (counted, and dropped when the server
asked for it and the client did not), an ``error``. It holds back the upstream's ``[DONE]`` --
the server writes the end of every stream itself -- and reports a body that ends before
``[DONE]`` or a finish reason as an error, never as complete.

Speed: the whole events of one network read are tested together, as bytes -- an ``"error"``, a
finish reason or usage with a value, a ``[DONE]``: four scans. The events before the first such
(every content event) go on as the upstream framed them, with no event split out at all; that
one and those after it go through the SSE decoder and are looked at one by one. So a short reply
that arrives in one read, its finish and ``[DONE]`` last, is decoded only at its end. CPU time for
200,000 one-event-per-chunk events in 64 KiB reads: the parse-and-re-encode of before 154 ms, the
SSE decoder alone 44 ms, this 75 ms (one machine); ``[DONE]`` is looked for in the whole read
(~30 us a 64 KiB read): looking only at a read's end missed a ``[DONE]`` followed by another line
of its event.

:func:`completion_from_events` and :func:`events_from_completion` reshape a reply when the
upstream streamed it and the client did not ask for a stream, or the other way round.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import msgspec

from ...protocol.errors import ProtocolError
from ...protocol.reply import ReplyParser, Usage
from ...protocol.sse import DEFAULT_MAX_EVENT_SIZE, SSEDecoder
from ...protocol.untrusted import NOT_JSON, decode_json
from ..api_error import ApiError
from ..chat.wire import frame

__all__ = [
    "EventRelay",
    "bad_upstream",
    "completion_from_events",
    "events_from_completion",
    "usage_in",
    "usage_of",
]

# Keys are the only place a quoted name meets a colon: a string value cannot hold a bare quote.
_FINISH = re.compile(rb'"finish_reason"\s*:\s*[^n\s]')
_BOM = b"\xef\xbb\xbf"
_USAGE = re.compile(rb'"usage"\s*:\s*[^n\s]')
_ERROR = re.compile(rb'"error"\s*:')


def _first_that_may_matter(part: bytes) -> int:
    """Where the first bytes that may make an event matter begin in ``part``; -1 for none.

    An ``"error"``, a finish reason or usage with a value, a ``[DONE]`` (looked for in the whole
    read: other lines of its event, an ``id:`` say, may follow it).
    """
    found = [part.find(b'"error"'), part.find(b"[DONE]")]
    for pattern in (_FINISH, _USAGE):
        match = pattern.search(part)
        if match is not None:
            found.append(match.start())
    return min((at for at in found if at >= 0), default=-1)


def bad_upstream(message: str) -> ApiError:
    """The server's 502 for an upstream that broke the protocol (``message`` says how)."""
    return ApiError(
        502, f"upstream broke the protocol: {message}", type="upstream_error", code="bad_upstream"
    )


def usage_of(value: object) -> Usage | None:
    """The ``usage`` of a decoded reply object or chunk, if it has counts of the right types."""
    if not isinstance(value, dict):
        return None
    try:
        return msgspec.convert(value.get("usage"), Usage | None)
    except msgspec.ValidationError:
        return None


class _UsageOnly(msgspec.Struct):
    usage: Any = None


# Decodes a reply's usage alone: the rest of it is scanned but never built (a 16 MiB reply of
# short strings built whole is hundreds of megabytes of objects).
_decode_usage = msgspec.json.Decoder(_UsageOnly).decode
_decode_raw = msgspec.json.Decoder(msgspec.Raw).decode


def usage_in(body: bytes) -> Usage | None:
    """The ``usage`` of a whole reply's JSON ``body``, as :func:`usage_of` reads it; raises
    :class:`msgspec.DecodeError` (or ``UnicodeDecodeError``, ``RecursionError``) only when
    ``body`` is no JSON at all."""
    try:
        found = _decode_usage(body).usage
    except msgspec.ValidationError:  # JSON, but no object
        _decode_raw(body)
        return None
    return usage_of({"usage": found})


def _error_of(data: bytes, error: object) -> ApiError:
    """An upstream's in-stream error, passed on as it came."""
    message = error.get("message") if isinstance(error, dict) else error
    kind = error.get("type") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return ApiError(
        502,
        f"upstream: {message}",
        type=str(kind) if isinstance(kind, str) else "upstream_error",
        code=code if isinstance(code, (str, int)) else None,
        body=data,
    )


class EventRelay:
    """See the module docstring. ``strip_usage`` drops the usage-only chunk (the server's own ask)."""

    __slots__ = (
        "_decoder_only",
        "_max",
        "_passed",
        "_sse",
        "_tail",
        "done",
        "error",
        "finished",
        "strip_usage",
        "usage",
    )

    def __init__(self, *, strip_usage: bool = False, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        # Made when first needed: it must know whether the stream began before it (a byte-order
        # mark is dropped only at the very start; found by the relay's fuzz target).
        self._sse: SSEDecoder | None = None
        self._passed = False  # bytes went on as they came, past the decoder
        self._max = max_event_size
        # The bytes after the last whole event, until the rest of it arrives.
        self._tail = b""
        # Once a CR has been seen the lines may end in CRLF or CR: the decoder takes every read.
        self._decoder_only = False
        self.strip_usage = strip_usage
        #: The upstream sent ``[DONE]``.
        self.done = False
        #: The upstream sent a finish reason.
        self.finished = False
        self.usage: Usage | None = None
        #: The upstream's in-stream error, once one came: the events before it are still sent on.
        self.error: ApiError | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The events ``chunk`` completes, framed, to send on (``b""`` for none)."""
        if self.done or self.error is not None:
            return b""
        if self._decoder_only or b"\r" in chunk:
            self._decoder_only = True
            chunk, self._tail = self._tail + chunk, b""
            return self._relay(self._decode(chunk))
        buf = self._tail + chunk if self._tail else chunk
        end = buf.rfind(b"\n\n")
        if end < 0:
            part, self._tail = b"", buf
        else:
            part, self._tail = buf[: end + 2], buf[end + 2 :]
        if len(self._tail) > self._max:
            raise bad_upstream(f"an event is larger than {self._max} bytes")
        if not part:
            return b""
        if part.startswith(_BOM):
            return self._relay(self._decode(part))
        # Whole events: those before the first that may matter (every content event) go on as the
        # upstream framed them; that one and the rest are looked at one by one. A short reply
        # comes in one read with its finish and [DONE] at the end, and most of it still passes.
        first = _first_that_may_matter(part)
        if first < 0:
            self._passed = True
            return part
        boundary = part.rfind(b"\n\n", 0, first)
        if boundary < 0:
            return self._relay(self._decode(part))
        self._passed = True
        passed = part[: boundary + 2]
        return passed + self._relay(self._decode(part[boundary + 2 :]))

    def _decoder(self) -> SSEDecoder:
        if self._sse is None:
            self._sse = SSEDecoder(self._max, mid_stream=self._passed)
        return self._sse

    def _decode(self, data: bytes) -> list[bytes]:
        try:
            return self._decoder().decode(data)
        except ProtocolError as exc:
            raise bad_upstream(str(exc)) from None

    def close(self) -> bytes:
        """The body has ended: the last events, or an :class:`ApiError` if the reply was cut short."""
        out = b""
        if not (self.done or self.error is not None):
            # Bytes cut off mid-event are a ProtocolError: what matters is that the reply was cut short.
            with contextlib.suppress(ProtocolError):
                decoder = self._decoder()
                out = self._relay(decoder.decode(self._tail) + decoder.flush())
        self._tail = b""
        if not (self.done or self.finished or self.error is not None):
            self.error = bad_upstream("the stream ended before [DONE] or a finish_reason")
        return out

    def _relay(self, events: list[bytes]) -> bytes:
        out: list[bytes] = []
        for data in events:
            if self.done or self.error is not None:
                break
            if (
                (b'"finish_reason"' in data and _FINISH.search(data))
                or (b'"usage"' in data and _USAGE.search(data))
                or (b'"error"' in data and _ERROR.search(data))
                or data.startswith(b"[")
            ) and not self._look(data):
                continue
            out.append(frame(data))
        return b"".join(out)

    def _look(self, data: bytes) -> bool:
        """Read an event that may matter; False when it is not to be sent on."""
        if data.strip() == b"[DONE]":
            self.done = True
            return False
        try:
            value = decode_json(data)
        except NOT_JSON:
            raise bad_upstream(f"an event is not JSON: {data[:200]!r}") from None
        if not isinstance(value, dict):
            return True
        if value.get("error") is not None:
            self.error = _error_of(data, value["error"])
            return False
        choices = value.get("choices")
        if isinstance(choices, list) and any(
            isinstance(choice, dict) and choice.get("finish_reason") is not None for choice in choices
        ):
            self.finished = True
        usage = usage_of(value)
        if usage is not None:
            self.usage = usage
            if self.strip_usage and not choices:
                return False
        return True


def _message(reply: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": str(reply) if reply or not reply.tool_calls else None,
    }
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    return message


def completion_from_events(parser: ReplyParser, model: str) -> bytes:
    """One ``chat.completion`` object from a reply the upstream streamed, read by ``parser``."""
    choices = [
        {
            "index": index,
            "message": _message(reply),
            "logprobs": None,
            "finish_reason": reply.finish_reason or "stop",
        }
        for index, reply in enumerate(parser.choices())
    ]
    body: dict[str, Any] = {
        "id": "chatcmpl-relayed",
        "object": "chat.completion",
        "model": model,
        "choices": choices,
    }
    if parser.usage is not None:
        body["usage"] = msgspec.to_builtins(parser.usage)
    return msgspec.json.encode(body)


def _delta(message: object) -> dict[str, Any]:
    """A whole message as one delta: its tool calls numbered, as deltas number them."""
    if not isinstance(message, dict):
        return {}
    delta = dict(message)
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        delta["tool_calls"] = [
            {"index": i, **call} if isinstance(call, dict) else call for i, call in enumerate(calls)
        ]
    return delta


def events_from_completion(body: bytes) -> bytes:
    """The events of a stream carrying the one ``chat.completion`` an upstream sent instead."""
    try:
        value = decode_json(body)
    except NOT_JSON:
        raise bad_upstream("the reply is neither an event stream nor JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("choices"), list):
        raise bad_upstream("the reply is not a chat.completion object")
    chunk = {key: item for key, item in value.items() if key not in ("choices", "object")}
    chunk["object"] = "chat.completion.chunk"
    chunk["choices"] = [
        {
            "index": choice.get("index", 0),
            "delta": _delta(choice.get("message")),
            "logprobs": choice.get("logprobs"),
            "finish_reason": choice.get("finish_reason") or "stop",
        }
        for choice in value["choices"]
        if isinstance(choice, dict)
    ]
    return frame(msgspec.json.encode(chunk))
