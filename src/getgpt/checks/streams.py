"""What the bytes of a streamed chat reply say, read strictly, for the checks to judge.

The body is split into events by the project's SSE decoder; the checker adds what a lenient
client forgives: the bytes must be UTF-8, the last event must be closed by a blank line (a
browser's EventSource drops one that is not), and every event's data must be ``[DONE]`` or a JSON
object. A choice's text is collected per event, so a piece that is not whole Unicode by itself
(half a surrogate pair, written as a JSON escape) is seen even when the pieces join up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import ProtocolError
from ..protocol.sse import SSEDecoder
from .words import Words

__all__ = ["FINISH_REASONS", "StreamFacts", "broken_unicode"]

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def broken_unicode(text: str, words: Words | None = None) -> str | None:
    """Why ``text`` is not whole Unicode text (a lone surrogate, U+FFFD), or None."""
    say = words or Words()
    for at, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            return say("stream.surrogate", code=f"{ord(char):04X}", at=at, text=repr(text))
        if char == "\ufffd":
            return say("stream.replacement", at=at, text=repr(text))
    return None


@dataclass
class StreamFacts:
    """The events of one streamed reply and what is wrong with their framing."""

    #: Each event's data, in order.
    payloads: list[bytes] = field(default_factory=list)
    #: The decoded JSON objects of the events that are not [DONE] (None where undecodable).
    objects: list[dict[str, Any] | None] = field(default_factory=list)
    #: Framing faults, each with its evidence.
    problems: list[str] = field(default_factory=list)
    #: Index in ``payloads`` of the first [DONE], if any.
    done_at: int | None = None
    #: (event index, text) of each content piece of choice 0.
    pieces: list[tuple[int, str]] = field(default_factory=list)
    #: (event index, reason) of each non-null finish_reason of choice 0.
    finishes: list[tuple[int, str]] = field(default_factory=list)
    #: (event index, the event) of each ``{"error": ...}`` event.
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: (event index, usage object) of each event carrying a non-null usage.
    usages: list[tuple[int, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.pieces)

    #: The words the problems are told in.
    words: Words = field(default_factory=Words)

    @classmethod
    def read(cls, reads: list[bytes], words: Words | None = None) -> StreamFacts:
        facts = cls(words=words or Words())
        say = facts.words
        body = b"".join(reads)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            around = body[max(exc.start - 20, 0) : exc.end + 20]
            facts.problems.append(
                say("stream.not_utf8", reason=exc.reason, at=exc.start, around=repr(around))
            )
        decoder = SSEDecoder(max_event_size=len(body) + 1)
        try:
            for data in reads:
                facts.payloads.extend(decoder.decode(data))
            tail = decoder.flush()
        except ProtocolError as exc:  # pragma: no cover - the size limit is above the body's size
            facts.problems.append(str(exc))
            return facts
        if tail:
            facts.problems.append(say("stream.unclosed", tail=repr(tail[-1][:120])))
            facts.payloads.extend(tail)
        for at, data in enumerate(facts.payloads):
            facts._event(at, data)
        if not facts.payloads:
            facts.problems.append(say("stream.no_event"))
        return facts

    def _event(self, at: int, data: bytes) -> None:
        if data == b"[DONE]":
            if self.done_at is None:
                self.done_at = at
            self.objects.append(None)
            return
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            self.problems.append(self.words("stream.not_json", at=at, error=exc, data=repr(data[:120])))
            self.objects.append(None)
            return
        if not isinstance(value, dict):
            self.problems.append(self.words("stream.not_object", at=at, data=repr(data[:120])))
            self.objects.append(None)
            return
        self.objects.append(value)
        if "error" in value:
            self.errors.append((at, value))
            return
        self._chunk(at, value, data)

    def _chunk(self, at: int, value: dict[str, Any], data: bytes) -> None:
        kind = value.get("object")
        if kind is not None and kind != "chat.completion.chunk":
            self.problems.append(self.words("stream.wrong_object", at=at, kind=repr(kind)))
        if value.get("usage") is not None:
            self.usages.append((at, value["usage"]))
        choices = value.get("choices")
        if not isinstance(choices, list):
            self.problems.append(self.words("stream.no_choices", at=at, data=repr(data[:120])))
            return
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("delta", {}), dict):
                self.problems.append(self.words("stream.no_delta", at=at, data=repr(data[:120])))
                continue
            if choice.get("index", 0) != 0:
                continue
            content = choice.get("delta", {}).get("content")
            if content is not None and not isinstance(content, str):
                self.problems.append(self.words("stream.content_not_text", at=at, content=repr(content)))
            elif content:
                self.pieces.append((at, content))
            reason = choice.get("finish_reason")
            if reason is not None:
                self.finishes.append((at, reason))
