"""The checks, run one after another against one server.

Each check sends what it needs and judges what came back: ``pass``, ``fail`` with the evidence,
or ``n/a`` when the server gave it nothing to judge (no 429 to look at, no stream count to
watch). The server is never asked for more than a bounded number of small requests; a 429 or
503 on the way is waited out as its ``Retry-After`` asks, up to a bound, as a polite client would.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .http import Answer, HttpFailure, Open, Target, exchange
from .protocols import GetGptProtocol, Protocol
from .streams import FINISH_REASONS, StreamFacts, broken_unicode

__all__ = ["Battery", "Result", "Settings", "Status"]

Status = Literal["pass", "fail", "n/a"]

PROBE = "Reply with one word: pong"
# Cyrillic, CJK, a four-byte emoji, a family joined by ZWJ, a flag, a combining accent, U+2028,
# right-to-left text: every width of UTF-8 and the characters naive splitting breaks.
UNICODE = "Привет, мир! 你好 😀 👨‍👩‍👧‍👦 🇺🇦 é (e\u0301) \u2028 שלום — ok"
# Long enough that an echo of it is still being sent when the checker stops reading (its
# events outgrow the socket buffers); a model asked for it has a long answer to give.
LONG = "Repeat these numbers back, one per line: " + " ".join(str(n) for n in range(1, 20000))


class Stop(Exception):
    """A check's verdict, raised from deep inside it."""

    def __init__(self, status: Status, evidence: str = "") -> None:
        super().__init__(evidence)
        self.status = status
        self.evidence = evidence


@dataclass(frozen=True)
class Result:
    id: str
    title: str
    required: bool
    status: Status
    evidence: str = ""


@dataclass
class Settings:
    url: str
    protocol: str = "getgpt"
    model: str = "gpt-3.5-turbo"
    api_key: str | None = None
    #: Seconds to wait for any bytes, and for a response's head in all.
    timeout: float = 30.0
    #: Seconds the whole run may take: a server that never ends a reply cannot keep it for hours.
    max_time: float = 300.0
    #: Most requests the rate-limit check sends to meet a 429.
    burst: int = 30
    #: Longest Retry-After the checker waits out before giving up on a request.
    max_wait: float = 10.0
    #: Longest the disconnect check waits for the server to notice.
    disconnect_within: float = 3.0
    verify: bool = True


@dataclass
class _Check:
    id: str
    title: str
    required: bool
    run: Callable[[], Status | tuple[Status, str]]


@dataclass
class Battery:
    settings: Settings
    target: Target = field(init=False)
    protocol: Protocol = field(init=False)
    #: Every answer seen, for the checks that judge all of them (Retry-After, error events).
    answers: list[Answer] = field(default_factory=list)
    streams: list[StreamFacts] = field(default_factory=list)
    _probe: tuple[Answer, StreamFacts] | None = None

    def __post_init__(self) -> None:
        from .protocols import protocol_named

        s = self.settings
        self.target = Target.of(s.url, verify=s.verify, max_time=s.max_time)
        base = s.url if s.url.endswith("/") else s.url + "/"
        self.protocol = protocol_named(s.protocol, base, s.model, s.api_key)

    # --- sending ----------------------------------------------------------------------------------

    def send(
        self, body: bytes, *, path: str | None = None, method: str = "POST", polite: bool = True
    ) -> Answer:
        """One exchange, recorded; a 429/503 is waited out when its Retry-After is short enough."""
        headers = self.protocol.headers() if method == "POST" else {"Accept": "application/json"}
        for _ in range(3):
            answer = exchange(
                self.target,
                method,
                self.protocol.chat_path if path is None else path,
                headers,
                body,
                timeout=self.settings.timeout,
                total=self.settings.timeout * 4,
            )
            self.answers.append(answer)
            wait = retry_after(answer)
            if not polite or answer.status not in (429, 503) or wait is None or wait > self.settings.max_wait:
                return answer
            time.sleep(wait)
        return answer

    def stream(self, body: bytes) -> tuple[Answer, StreamFacts]:
        answer = self.send(body)
        if not 200 <= answer.status < 300:
            raise Stop("fail", f"HTTP {answer.status}: {answer.excerpt()}")
        facts = StreamFacts.read(answer.reads)
        self.streams.append(facts)
        return answer, facts

    def probe(self) -> tuple[Answer, StreamFacts]:
        """The battery's first streamed reply, which several checks judge."""
        if self._probe is None:
            self._probe = self.stream(self.protocol.chat(PROBE))
        return self._probe

    # --- the checks -------------------------------------------------------------------------------

    def checks(self) -> list[_Check]:
        p = self.protocol
        first = "envelope" if isinstance(p, GetGptProtocol) else "request"
        listed = [
            _Check(first, "a valid chat request is answered 2xx", True, self.accepted),
            _Check("content-type", "the stream is text/event-stream", True, self.content_type),
            _Check(
                "framing",
                "every event is a chat.completion.chunk in well-formed SSE, in UTF-8",
                True,
                self.framing,
            ),
            _Check("done", "the stream ends with data: [DONE] and nothing after it", True, self.done),
            _Check(
                "finish-reason", "exactly one known finish_reason, after the last text", True, self.finish
            ),
            _Check("unicode", "text survives intact: no split characters, no U+FFFD", True, self.unicode),
            _Check(
                "whole-reply",
                '"stream": false gives one chat.completion with usage',
                p.whole_reply_required,
                self.whole,
            ),
            _Check(
                "usage",
                "usage arrives when asked (stream_options.include_usage)",
                p.usage_required,
                self.usage,
            ),
            _Check("bad-json", "a body that is not JSON gets 400 and a JSON error", True, self.bad_json),
        ]
        if isinstance(p, GetGptProtocol):
            listed.append(
                _Check(
                    "bad-signature",
                    "a signature that is not one gets 400 and a JSON error",
                    True,
                    self.bad_signature,
                )
            )
        listed += [
            _Check(
                "invalid-request",
                "a request without messages gets 400/422 and a JSON error",
                True,
                self.invalid,
            ),
            _Check(
                "disconnect",
                "a client that leaves mid-stream ends the reply on the server",
                True,
                self.disconnect,
            ),
            _Check(
                "error-event",
                'an error in a stream is {"error": {"message"}} then [DONE]',
                True,
                self.error_events,
            ),
            _Check("retry-after", "every 429 and 503 carries a valid Retry-After", True, self.retry_after),
        ]
        return listed

    def run(self) -> Iterator[Result]:
        for check in self.checks():
            try:
                outcome = check.run()
                status, evidence = outcome if isinstance(outcome, tuple) else (outcome, "")
            except Stop as stop:
                status, evidence = stop.status, stop.evidence
            except HttpFailure as exc:
                status, evidence = "fail", str(exc)
            yield Result(check.id, check.title, check.required, status, evidence)

    def accepted(self) -> Status:
        self.probe()
        return "pass"

    def content_type(self) -> Status | tuple[Status, str]:
        answer, _ = self.probe()
        if answer.media_type != "text/event-stream":
            return "fail", f"Content-Type: {answer.headers.get('content-type', '(none)')}"
        return "pass"

    def framing(self) -> Status | tuple[Status, str]:
        _, facts = self.probe()
        if facts.problems:
            return "fail", "; ".join(facts.problems[:3])
        return "pass"

    def done(self) -> Status | tuple[Status, str]:
        _, facts = self.probe()
        if facts.done_at is None:
            last = facts.payloads[-1][:120] if facts.payloads else b"(no event)"
            return "fail", f"no data: [DONE]; the last event was {last!r}"
        after = len(facts.payloads) - facts.done_at - 1
        if after:
            return (
                "fail",
                f"{after} event(s) after [DONE], the first: {facts.payloads[facts.done_at + 1][:120]!r}",
            )
        return "pass"

    def finish(self) -> Status | tuple[Status, str]:
        _, facts = self.probe()
        return judge_finish(facts)

    def unicode(self) -> Status | tuple[Status, str]:
        _, probe = self.probe()
        _, facts = self.stream(self.protocol.chat(UNICODE))
        for at, piece in facts.pieces:
            fault = broken_unicode(piece)
            if fault:
                return "fail", f"event {at}: {fault}"
        echoes = probe.text.strip() == PROBE
        if echoes and facts.text != UNICODE:
            first = next(
                (i for i, (a, b) in enumerate(zip(facts.text, UNICODE, strict=False)) if a != b), None
            )
            at = min(len(facts.text), len(UNICODE)) if first is None else first
            return (
                "fail",
                f"the echo differs from the message at character {at}: {facts.text[at : at + 12]!r}",
            )
        if not facts.text:
            return "fail", "the reply holds no text"
        return "pass", "compared with the message sent (the server echoes)" if echoes else ""

    def whole(self) -> Status | tuple[Status, str]:
        answer = self.send(self.protocol.chat(PROBE, stream=False))
        if not 200 <= answer.status < 300:
            return "fail", f"HTTP {answer.status}: {answer.excerpt()}"
        if answer.media_type != "application/json":
            return "fail", f"Content-Type: {answer.headers.get('content-type', '(none)')}: {answer.excerpt()}"
        try:
            value = json.loads(answer.body)
            message = value["choices"][0]["message"]
            reason = value["choices"][0]["finish_reason"]
        except (ValueError, KeyError, IndexError, TypeError):
            return "fail", f"not a chat.completion with choices[0].message: {answer.excerpt()}"
        if not isinstance(message.get("content"), str) and not message.get("tool_calls"):
            return "fail", f"choices[0].message has no content: {message!r}"
        if reason not in FINISH_REASONS:
            return "fail", f"finish_reason {reason!r} is not one of {sorted(FINISH_REASONS)}"
        fault = usage_fault(value.get("usage"))
        return ("fail", fault) if fault else "pass"

    def usage(self) -> Status | tuple[Status, str]:
        body = self.protocol.chat(PROBE, stream_options={"include_usage": True})
        answer = self.send(body)
        if isinstance(self.protocol, GetGptProtocol) and 400 <= answer.status < 500:
            return "n/a", f"the server takes only the seed's nine fields (HTTP {answer.status})"
        if not 200 <= answer.status < 300:
            return "fail", f"HTTP {answer.status}: {answer.excerpt()}"
        facts = StreamFacts.read(answer.reads)
        self.streams.append(facts)
        if not facts.usages and facts.errors:
            return "n/a", "the stream ended in an error event (judged by error-event)"
        if not facts.usages:
            return "fail", "asked for usage, the stream carried none"
        if len(facts.usages) > 1:
            return "fail", f"{len(facts.usages)} events carry usage; one should"
        at, usage = facts.usages[0]
        fault = usage_fault(usage)
        if fault:
            return "fail", f"event {at}: {fault}"
        if facts.finishes and at < facts.finishes[-1][0]:
            return (
                "fail",
                f"usage (event {at}) comes before the finish_reason (event {facts.finishes[-1][0]})",
            )
        return "pass"

    def bad_json(self) -> Status | tuple[Status, str]:
        return judge_error(self.send(self.protocol.not_json()), (400,))

    def bad_signature(self) -> Status | tuple[Status, str]:
        assert isinstance(self.protocol, GetGptProtocol)
        return judge_error(self.send(self.protocol.bad_signature()), (400,))

    def invalid(self) -> Status | tuple[Status, str]:
        return judge_error(self.send(self.protocol.invalid()), (400, 422))

    def disconnect(self) -> Status | tuple[Status, str]:
        before = self.active_streams()
        if before is None:
            return "n/a", "the server reports no active_streams at /healthz to watch"
        reply = Open(
            self.target,
            "POST",
            self.protocol.chat_path,
            self.protocol.headers(),
            body=self.protocol.chat(LONG),
            timeout=self.settings.timeout,
        )
        try:
            if not 200 <= reply.answer.status < 300:
                return "n/a", f"the long request was refused: HTTP {reply.answer.status}"
            for data in reply.reads():
                if b'"content"' in data:
                    break
            during = self.active_streams()
        finally:
            reply.close()
        if during is None or during <= before:
            return "n/a", "the reply had ended before the checker could leave it"
        deadline = time.monotonic() + self.settings.disconnect_within
        while True:
            after = self.active_streams()
            if after is not None and after <= before:
                return "pass"
            if time.monotonic() > deadline:
                return "fail", (
                    f"active_streams was {before}, {during} during the reply, still {after} "
                    f"{self.settings.disconnect_within:g} s after the client left"
                )
            time.sleep(0.05)

    def active_streams(self) -> int | None:
        """``active_streams`` from ``/healthz`` (under the base URL, else at the root), or None."""
        for place in dict.fromkeys((self.target, self.target.root())):
            try:
                answer = exchange(
                    place,
                    "GET",
                    "healthz",
                    {"Accept": "application/json"},
                    timeout=self.settings.timeout,
                    total=self.settings.timeout,
                )
                value = json.loads(answer.body) if answer.status == 200 else None
            except (HttpFailure, ValueError):
                continue
            if isinstance(value, dict) and isinstance(value.get("active_streams"), int):
                return int(value["active_streams"])
        return None

    def error_events(self) -> Status | tuple[Status, str]:
        seen = 0
        for facts in self.streams:
            for at, event in facts.errors:
                seen += 1
                error = event.get("error")
                if not isinstance(error, dict) or not isinstance(error.get("message"), str):
                    return (
                        "fail",
                        f'event {at} is not {{"error": {{"message": ...}}}}: {json.dumps(event)[:160]}',
                    )
                later = [p for p in facts.payloads[at + 1 :] if p != b"[DONE]"]
                if later:
                    return "fail", f"event {at} is an error, yet more followed: {later[0][:120]!r}"
                if facts.done_at is None or facts.done_at < at:
                    return "fail", f"event {at} is an error, and no data: [DONE] follows it"
        if not seen:
            return "n/a", "no error event arrived in any stream"
        return "pass", f"{seen} error event(s) seen"

    def retry_after(self) -> Status | tuple[Status, str]:
        for answer in self.answers:
            fault = retry_after_fault(answer)
            if fault:
                return "fail", fault
        chat = self.protocol.chat("ping")
        for sent in range(1, self.settings.burst + 1):
            answer = self.send(chat, polite=False)
            if answer.status in (429, 503):
                fault = retry_after_fault(answer)
                if fault:
                    return "fail", f"after {sent} request(s): {fault}"
                asked = answer.headers["retry-after"]
                return "pass", f"HTTP {answer.status} after {sent} request(s); Retry-After: {asked}"
        return "n/a", f"no 429 within {self.settings.burst} requests"


# --- judgements shared by the checks ---------------------------------------------------------------


def retry_after(answer: Answer) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), or None.

    Strict, as RFC 9110 writes it -- whole seconds or a date -- where the client reads it leniently.
    """
    value = answer.headers.get("retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def retry_after_fault(answer: Answer) -> str | None:
    if answer.status not in (429, 503):
        return None
    if "retry-after" not in answer.headers:
        return f"HTTP {answer.status} without Retry-After"
    if retry_after(answer) is None:
        value = answer.headers["retry-after"]
        return f"HTTP {answer.status} with a Retry-After that is neither seconds nor a date: {value!r}"
    return None


def judge_error(answer: Answer, statuses: tuple[int, ...]) -> Status | tuple[Status, str]:
    """An error answer: one of ``statuses``, JSON, ``{"error": {"message": ...}}``."""
    if answer.status not in statuses:
        return "fail", f"HTTP {answer.status}, expected {' or '.join(map(str, statuses))}: {answer.excerpt()}"
    if answer.media_type != "application/json":
        return "fail", f"Content-Type: {answer.headers.get('content-type', '(none)')}: {answer.excerpt()}"
    try:
        value = json.loads(answer.body)
    except ValueError:
        return "fail", f"the body is not JSON: {answer.excerpt()}"
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str) or not error["message"]:
        return "fail", f'the body is not {{"error": {{"message": ...}}}}: {answer.excerpt()}'
    return "pass"


def judge_finish(facts: StreamFacts) -> Status | tuple[Status, str]:
    if facts.errors and not facts.finishes:
        return "pass", "the stream ended in an error event (judged by error-event)"
    if not facts.finishes:
        return "fail", "no event carries a finish_reason"
    if len(facts.finishes) > 1:
        return "fail", f"{len(facts.finishes)} finish_reasons: {[reason for _, reason in facts.finishes]}"
    at, reason = facts.finishes[0]
    if reason not in FINISH_REASONS:
        return "fail", f"finish_reason {reason!r} is not one of {sorted(FINISH_REASONS)}"
    later = [piece for where, piece in facts.pieces if where > at]
    if later:
        return "fail", f"text after the finish_reason (event {at}): {later[0]!r}"
    return "pass"


def usage_fault(usage: Any) -> str | None:
    if not isinstance(usage, dict):
        return f"no usage object: {usage!r}"
    counts = {name: usage.get(name) for name in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        return f"usage counts are not whole numbers: {counts}"
    if counts["total_tokens"] != counts["prompt_tokens"] + counts["completion_tokens"]:  # type: ignore[operator]
        return f"total_tokens is not prompt_tokens + completion_tokens: {counts}"
    return None
