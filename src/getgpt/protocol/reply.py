"""The reply: a stream of OpenAI ``chat.completion.chunk`` events, parsed without I/O.

:class:`ReplyParser` takes the bytes of a response body as they arrive and returns the text
pieces they complete; the sync and async clients drive the same parser. It also reads a whole
non-streamed ``chat.completion`` object. Beside the text it assembles what else the reply
carries, as OpenAI streams it: tool calls (fragments ``{index, id?, type?, function: {name?,
arguments?}}`` joined by ``index``, arguments concatenated), reasoning (``reasoning_content`` or
``reasoning`` pieces), the usage, and the choices after the first when ``n`` asked for several.

Speed: a chat stream repeats one JSON shape in which only the content string changes. After a
full, typed decode of a content chunk, the parser learns that chunk's bytes before and after the
content string and proves the template with a probe decode. Later events with the same prefix
and suffix and a plain string in between (no quote, backslash or control character) yield that
string without a JSON decode; any other event takes the full decode, so results are identical.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import msgspec

from .errors import GetGptError, IncompleteStream, ProtocolError, RemoteError
from .sse import DEFAULT_MAX_EVENT_SIZE, SSEDecoder
from .untrusted import decode_json

__all__ = ["Reply", "ReplyParser", "Usage"]


class Usage(msgspec.Struct, frozen=True):
    """Token counts, when the server reports them."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    #: OpenAI's breakdowns (``cached_tokens``, ``reasoning_tokens``, ...), as the server sent them.
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    index: int | None = None  # None in a non-streamed message, whose calls come whole and in order
    id: str | None = None
    type: str | None = None
    function: _Function | None = None


class _Text(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Text | None = None
    message: _Text | None = None  # a non-streamed chat.completion
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: Usage | None = None
    error: Any = None


class Reply(str):
    """The whole text of a reply, with what the server said about it.

    ``tool_calls`` are in OpenAI's message shape, ``[{"id", "type": "function", "function":
    {"name", "arguments": "<json text>"}}]`` (empty when none); ``reasoning`` is "" when none.
    """

    finish_reason: str | None
    usage: Usage | None
    tool_calls: list[dict[str, Any]]
    reasoning: str

    def __new__(
        cls,
        text: str,
        finish_reason: str | None = None,
        usage: Usage | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        reasoning: str = "",
    ) -> Reply:
        self = super().__new__(cls, text)
        self.finish_reason = finish_reason
        self.usage = usage
        self.tool_calls = tool_calls or []
        self.reasoning = reasoning
        return self


class _Assembly:
    """What one choice has said besides the text the parser keeps for the first."""

    __slots__ = ("calls", "finish_reason", "reasoning", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        # index -> [id, type, name, argument pieces]
        self.calls: dict[int, list[Any]] = {}
        self.finish_reason: str | None = None

    def add(self, body: _Text, whole: bool) -> None:
        reasoning = body.reasoning_content if body.reasoning_content is not None else body.reasoning
        if reasoning:
            self.reasoning.append(reasoning)
        if body.tool_calls:
            calls = self.calls
            for position, fragment in enumerate(body.tool_calls):
                index = fragment.index
                if index is None:
                    # A whole message lists its calls in order; a delta without an index (some
                    # servers send them) continues the last call unless it opens one by its id.
                    last = max(calls, default=-1)
                    opens = whole or last < 0 or (fragment.id is not None and fragment.id != calls[last][0])
                    index = (position if whole else last + 1) if opens else last
                call = calls.get(index)
                if call is None:
                    call = calls[index] = [None, None, None, []]
                # id, type and name come once (a repeat is ignored); arguments come in pieces.
                if fragment.id and not call[0]:
                    call[0] = fragment.id
                if fragment.type and not call[1]:
                    call[1] = fragment.type
                function = fragment.function
                if function is not None:
                    if function.name and not call[2]:
                        call[2] = function.name
                    if function.arguments:
                        call[3].append(function.arguments)

    def tool_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": call[0] or "",
                "type": call[1] or "function",
                "function": {"name": call[2] or "", "arguments": "".join(call[3])},
            }
            for _, call in sorted(self.calls.items())
        ]


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
# Two probes: one could match by chance a constant content elsewhere in the template.
_PROBES = ("p", "q")
# A stream whose chunks never share a template stops paying for the attempt after a few tries.
_LESSONS = 8
# Bytes that may not stand bare inside a JSON string, or that would end or escape it.
_UNSAFE = bytes(range(0x20)) + b'"\\'
# The same bytes but LF, which joins the texts of a batch.
_NEEDS_DECODE = re.compile(rb'[\x00-\x09\x0b-\x1f"\\]')
# Measured with bench.memory: 4096-piece blocks left ~3 MB of freed-but-held heap per million
# chunks beside the text; 1024-piece blocks under 1 MB, and smaller ones more again.
_COMPACT_EVERY = 1024


class ReplyParser:
    """Sans-IO parser of a chat reply; see the module docstring."""

    __slots__ = (
        "_blocks",
        "_first",
        "_joint",
        "_lessons",
        "_others",
        "_pieces",
        "_prefix",
        "_sse",
        "_suffix",
        "_tail",
        "done",
        "finish_reason",
        "usage",
    )

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._sse = SSEDecoder(max_event_size)
        self._pieces: list[str] = []
        # _pieces joined now and then, kept as UTF-8 so memory stays compact: as a str, a block
        # holding a single emoji costs 4 bytes for every character in it.
        self._blocks: list[bytes] = []
        self._prefix = b"\x00"  # no JSON event starts with NUL: matches nothing until learned
        self._suffix = b""
        self._tail = 0
        self._joint = b""
        self._lessons = _LESSONS
        #: True once ``[DONE]`` has been seen.
        self.done = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        # The first choice's reasoning and tool calls; the other choices, whole. Made when needed.
        self._first: _Assembly | None = None
        self._others: dict[int, _Assembly] | None = None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The first choice's tool calls so far, assembled (empty when none)."""
        return self._first.tool_calls() if self._first is not None else []

    @property
    def reasoning(self) -> str:
        """The first choice's reasoning so far ("" when none)."""
        return "".join(self._first.reasoning) if self._first is not None else ""

    def choices(self) -> list[Reply]:
        """Every choice so far, in index order: the first is :meth:`reply`; more when ``n`` > 1."""
        replies = [self.reply()]
        for _, other in sorted((self._others or {}).items()):
            replies.append(
                Reply(
                    "".join(other.text),
                    other.finish_reason,
                    self.usage,
                    other.tool_calls(),
                    "".join(other.reasoning),
                )
            )
        return replies

    @property
    def text(self) -> str:
        """All the text received so far."""
        return b"".join(self._blocks).decode("utf-8", "surrogatepass") + "".join(self._pieces)

    @property
    def complete(self) -> bool:
        """Whether the server has said the reply is over (``[DONE]`` or a ``finish_reason``)."""
        return self.done or self.finish_reason is not None

    def reply(self) -> Reply:
        return Reply(self.text, self.finish_reason, self.usage, self.tool_calls, self.reasoning)

    def feed(self, read: bytes) -> list[str]:
        """Add bytes of the response body; return the text pieces they complete."""
        try:
            events = self._sse.decode(read)
        except ProtocolError as exc:
            exc.partial = self.text
            raise
        return self._events(events) if events else []

    def close(self) -> list[str]:
        """The body has ended: return any last pieces, or raise if the reply was cut short."""
        try:
            pieces = self._events(self._sse.flush())
        except ProtocolError:
            # Bytes cut off mid-event: what matters is that the reply was cut short.
            pieces = []
        if not self.complete:
            raise IncompleteStream(
                "the server closed the stream before [DONE] or a finish_reason",
                partial=self.text,
            )
        return pieces

    def feed_json(self, body: bytes) -> list[str]:
        """Read a whole non-streamed reply (a ``chat.completion`` JSON object)."""
        pieces = self._events([body])
        if self.finish_reason is None:
            self.finish_reason = "stop"  # a whole JSON reply is complete by construction
        return pieces

    def _events(self, events: list[bytes]) -> list[str]:
        if self.done:
            return []
        out: list[str] = []
        try:
            if not (len(events) > 1 and self._tail and self._batch(events, out)):
                self._each(events, out)
        except GetGptError:
            # The text before the bad event is part of the reply however the reads fell: the
            # error's partial has it, and so must ``text``.
            self._keep(out)
            raise
        self._keep(out)
        return out

    def _keep(self, out: list[str]) -> None:
        if out:
            pieces = self._pieces
            pieces += out
            if len(pieces) > _COMPACT_EVERY:
                # surrogatepass: a JSON string may hold a lone surrogate, and it must come back.
                self._blocks.append("".join(pieces).encode("utf-8", "surrogatepass"))
                pieces.clear()

    def _batch(self, events: list[bytes], out: list[str]) -> bool:
        """Events through the template at once; False, ``out`` untouched, when not all fit it.

        When no event holds an LF (multi-line data can), then joined with LF they hold
        suffix+LF+prefix once per joint exactly when each event but the last ends with the
        suffix and each but the first starts with the prefix; the two ends are checked apart.
        An event whose text the template cannot give as it is (an escape, a quote, an empty
        text) is decoded alone, in its place; the runs between go through at once.
        """
        prefix, suffix, tail = self._prefix, self._suffix, self._tail
        whole = b"\n".join(events)
        if (
            whole.count(b"\n") != len(events) - 1
            or whole.count(self._joint) != len(events) - 1
            or not events[0].startswith(prefix)
            or not events[-1].endswith(suffix)
        ):
            return False
        end = -len(suffix)
        middles = [data[tail:end] for data in events]
        joined = b"\n".join(middles)
        # The joining LFs are the only bytes the translation may drop.
        if len(joined.translate(None, _UNSAFE)) == len(joined) - len(middles) + 1 and b"" not in middles:
            try:
                out += joined.decode().split("\n")
                return True
            except UnicodeDecodeError:
                return False
        odd: list[int] = []
        index = last = 0
        limit = len(events) // 4  # mostly odd events: one by one is cheaper
        for match in _NEEDS_DECODE.finditer(joined):
            index += joined.count(b"\n", last, match.start())
            last = match.start()
            if not odd or odd[-1] != index:
                odd.append(index)
                if len(odd) > limit:
                    return False
        if b"" in middles:
            odd = sorted({*odd, *(i for i, middle in enumerate(middles) if not middle)})
        start = 0
        for i in [*odd, len(events)]:
            if start < i:
                try:
                    out += b"\n".join(middles[start:i]).decode().split("\n")
                except UnicodeDecodeError:
                    self._each(events[start:i], out)  # names the bad event
            if i < len(events):
                self._each(events[i : i + 1], out)
            start = i + 1
        return True

    def _each(self, events: list[bytes], out: list[str]) -> None:
        prefix, suffix, tail = self._prefix, self._suffix, self._tail
        shortest = tail + len(suffix)
        for data in events:
            if data.startswith(prefix) and data.endswith(suffix) and len(data) > shortest:
                middle = data[tail : len(data) - len(suffix)]
                if len(middle.translate(None, _UNSAFE)) == len(middle):
                    try:
                        out.append(middle.decode())
                        continue
                    except UnicodeDecodeError:
                        pass  # the full decode below names the problem
            self._full(data, out)
            if self.done:
                break
            prefix, suffix, tail = self._prefix, self._suffix, self._tail
            shortest = tail + len(suffix)

    def _full(self, data: bytes, out: list[str]) -> None:
        try:
            chunk = _decode_chunk(data)
        except msgspec.ValidationError:
            chunk = self._lenient(data, out)
        except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter for bad UTF-8
            self._not_json(data, out)
            return
        except RecursionError:  # msgspec's answer to JSON nested past ~1000 levels
            raise self._too_deep(data, out) from None
        if chunk.error is not None:
            raise _remote_error(chunk.error, self._text(out))
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not chunk.choices:
            return
        for choice in chunk.choices:
            whole = choice.delta is None
            body = choice.message if whole else choice.delta
            if choice.index:
                self._other(choice.index, body, whole, choice.finish_reason)
                continue
            if body is not None:
                if body.content:
                    out.append(body.content)
                    if (
                        self._lessons
                        and choice.finish_reason is None
                        and chunk.usage is None
                        and len(chunk.choices) == 1
                        and _only_content(body)
                    ):
                        self._learn(data, body.content)
                if not _only_content(body):
                    if self._first is None:
                        self._first = _Assembly()
                    self._first.add(body, whole)
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason

    def _other(self, index: int, body: _Text | None, whole: bool, finish_reason: str | None) -> None:
        """A choice after the first (``n`` > 1): kept whole, outside the fast path."""
        if self._others is None:
            self._others = {}
        other = self._others.get(index)
        if other is None:
            other = self._others[index] = _Assembly()
        if body is not None:
            if body.content:
                other.text.append(body.content)
            other.add(body, whole)
        if finish_reason is not None:
            other.finish_reason = finish_reason

    def _learn(self, data: bytes, content: str) -> None:
        self._lessons -= 1
        raw = content.encode()
        if len(raw.translate(None, _UNSAFE)) != len(raw):
            return
        found = list(re.finditer(rb'"content"\s*:\s*"(' + re.escape(raw) + rb')"', data))
        if len(found) != 1:
            return
        prefix = data[: found[0].start(1)]
        suffix = data[found[0].end(1) :]
        # Prove the template: each probe must come back as the content, and nothing else be set.
        for probe in _PROBES:
            try:
                chunk = _decode_chunk(prefix + probe.encode() + suffix)
            except msgspec.MsgspecError:
                return
            choice = chunk.choices[0] if chunk.choices and len(chunk.choices) == 1 else None
            if (
                chunk.error is not None
                or chunk.usage is not None
                or choice is None
                or choice.index != 0
                or choice.delta is None
                or choice.delta.content != probe
                or not _only_content(choice.delta)
                or choice.finish_reason is not None
            ):
                return
        self._prefix, self._suffix, self._tail = prefix, suffix, len(prefix)
        self._joint = suffix + b"\n" + prefix

    def _not_json(self, data: bytes, out: list[str]) -> None:
        stripped = data.strip()
        if stripped == b"[DONE]":
            self.done = True
        elif stripped:  # an empty data line carries nothing
            raise ProtocolError(f"server-sent event is not JSON: {data[:200]!r}", partial=self._text(out))

    def _lenient(self, data: bytes, out: list[str]) -> _Chunk:
        # The typed decode failed on a field's type: read what we can from the generic value.
        try:
            value = decode_json(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            self._not_json(data, out)
            return _Chunk()
        except RecursionError:
            raise self._too_deep(data, out) from None
        if not isinstance(value, dict):
            raise ProtocolError(
                f"server-sent event is not a JSON object: {data[:200]!r}", partial=self._text(out)
            )
        chunk = _Chunk(error=value.get("error"))
        choices = value.get("choices")
        if isinstance(choices, list):
            chunk.choices = [_salvage(item) for item in choices if isinstance(item, dict)]
        with contextlib.suppress(msgspec.ValidationError):  # counts of the wrong type tell nothing
            chunk.usage = msgspec.convert(value.get("usage"), Usage | None)
        return chunk

    def _too_deep(self, data: bytes, out: list[str]) -> ProtocolError:
        return ProtocolError(
            f"server-sent event nests JSON too deeply: {data[:200]!r}", partial=self._text(out)
        )

    def _text(self, out: list[str]) -> str:
        return self.text + "".join(out)


def _only_content(body: _Text) -> bool:
    return body.reasoning_content is None and body.reasoning is None and not body.tool_calls


def _salvage(item: dict[str, Any]) -> _Choice:
    """A choice whose typed decode failed: what can be read of it, field by field."""
    try:
        return msgspec.convert(item, _Choice)
    except msgspec.ValidationError:
        pass
    index = item.get("index")
    index = index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else 0
    message = item.get("message")
    whole = "delta" not in item and isinstance(message, dict)
    body = message if whole else item.get("delta")
    text = _Text()
    if isinstance(body, dict):
        for name in ("content", "reasoning_content", "reasoning"):
            value = body.get(name)
            if isinstance(value, str):
                setattr(text, name, value)
        with contextlib.suppress(msgspec.ValidationError):  # calls of the wrong shape cannot be assembled
            text.tool_calls = msgspec.convert(body.get("tool_calls"), list[_ToolCall] | None)
    reason = item.get("finish_reason")
    return _Choice(
        index=index,
        message=text if whole else None,
        delta=None if whole else text,
        finish_reason=reason if isinstance(reason, str) else None,
    )


def _remote_error(error: Any, partial: str) -> RemoteError:
    if isinstance(error, dict):
        message = error.get("message")
        kind = error.get("type")
        code = error.get("code")
        return RemoteError(
            str(message) if message is not None else "the server reported an error",
            type=str(kind) if kind is not None else None,
            code=code if isinstance(code, (str, int)) else None,
            partial=partial,
        )
    return RemoteError(str(error), partial=partial)
