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

from ..protocol import DEFAULT_MODEL
from .http import HttpFailure, Open, Response, Target, Unreachable, fetch
from .protocols import GetGptProtocol, Protocol
from .streams import FINISH_REASONS, StreamFacts, broken_unicode
from .words import Words

__all__ = ["Battery", "Result", "Settings", "Status"]

Status = Literal["pass", "fail", "n/a"]

SAMPLE = "Reply with one word: pong"
# Cyrillic, CJK, a four-byte emoji, a family joined by ZWJ, a flag, a combining accent, U+2028,
# right-to-left text: every width of UTF-8 and the characters naive splitting breaks.
UNICODE = "Привет, мир! 你好 😀 👨‍👩‍👧‍👦 🇺🇦 é (e\u0301) \u2028 שלום — ok"
# A request whose reply takes a while: the disconnect check leaves it after its first text. 1.1 kB
# (it was 110 kB, for an echo to outgrow the socket buffers; a model, or an echo that takes its
# time as a model does, needs no such bulk, and a paid API bills the prompt).
LONG = "Count from 1 to 300, one number per line: " + " ".join(str(n) for n in range(1, 301))
# The most tokens each request asks for: enough for what the check reads, little on a paid API.
# getgpt serve's echo counts 4 characters a token: 16 covers SAMPLE, 64 UNICODE, 512 LONG whole.
SAMPLE_TOKENS = 16
UNICODE_TOKENS = 64
LONG_TOKENS = 512
BURST_TOKENS = 4
# Statuses that say every chat request will fail the same way: no key, no such path, not a chat
# server. The checks after the one that met it are not run; they fail with its evidence.
BLOCKING = frozenset({401, 403, 404, 405, 501})


class Stop(Exception):
    """A check's verdict, raised from deep inside it; ``blocks`` when every later check would meet
    the same failure (no server there, no key, the wrong path)."""

    def __init__(self, status: Status, evidence: str = "", hint: str = "", *, blocks: bool = False) -> None:
        super().__init__(evidence)
        self.status = status
        self.evidence = evidence
        self.hint = hint
        self.blocks = blocks


@dataclass(frozen=True)
class Result:
    id: str
    title: str
    required: bool
    status: Status
    evidence: str = ""
    #: What to do about the failure, when its cause is a usual mistake.
    hint: str = ""


@dataclass
class Settings:
    url: str
    protocol: str = "getgpt"
    model: str = DEFAULT_MODEL
    api_key: str | None = None
    #: The variable the key came from (or would): named by the hint when the server wants a key.
    api_key_env: str = "GETGPT_API_KEY"
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
    #: The language of titles, evidence and hints: "en" or "ru".
    language: str = "en"
    #: Run only these checks (their ids), or all but ``skip``.
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()


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
    words: Words = field(init=False)
    #: Every response seen, for the checks that judge all of them (Retry-After, error events).
    responses: list[Response] = field(default_factory=list)
    streams: list[StreamFacts] = field(default_factory=list)
    _sample: tuple[Response, StreamFacts] | Stop | None = None

    def __post_init__(self) -> None:
        from .protocols import protocol_named

        s = self.settings
        self.words = Words(s.language)
        try:
            self.target = Target.of(s.url, verify=s.verify, max_time=s.max_time)
        except ValueError:
            raise ValueError(self.words("settings.not_http", url=s.url)) from None
        base = s.url if s.url.endswith("/") else s.url + "/"
        self.protocol = protocol_named(s.protocol, base, s.model, s.api_key)
        known = [check.id for check in self.checks()]
        unknown = [name for name in (*s.only, *s.skip) if name not in known]
        if unknown:
            raise ValueError(
                self.words("settings.unknown_checks", names=", ".join(unknown), known=", ".join(known))
            )

    # --- sending ----------------------------------------------------------------------------------

    def send(
        self, body: bytes, *, path: str | None = None, method: str = "POST", polite: bool = True
    ) -> Response:
        """One request and its whole response, recorded; a 429/503 is waited out when its
        Retry-After is short enough.

        A chat request answered with a :data:`BLOCKING` status stops the check, and the battery.
        """
        headers = self.protocol.headers() if method == "POST" else {"Accept": "application/json"}
        for _ in range(3):
            response = fetch(
                self.target,
                method,
                self.protocol.chat_path if path is None else path,
                headers,
                body,
                timeout=self.settings.timeout,
                total=self.settings.timeout * 4,
            )
            self.responses.append(response)
            if path is None and response.status in BLOCKING:
                raise self._blocked(response)
            wait = retry_after(response)
            if (
                not polite
                or response.status not in (429, 503)
                or wait is None
                or wait > self.settings.max_wait
            ):
                return response
            time.sleep(wait)
        return response

    def _blocked(self, response: Response) -> Stop:
        """The verdict on a chat request every later one would meet too, with what to do about it."""
        say, status = self.words, response.status
        if status in (401, 403):
            hint = say(
                "hint.bad_key" if self.settings.api_key else "hint.need_key", env=self.settings.api_key_env
            )
        elif status == 404:
            hint = self._path_hint()
        else:
            hint = say("hint.not_chat", url=self.settings.url)
        return Stop(
            "fail", say("evidence.status", status=status, excerpt=response.excerpt()), hint, blocks=True
        )

    def _path_hint(self) -> str:
        say, url, path = self.words, self.settings.url, self.target.base_path.rstrip("/")
        if isinstance(self.protocol, GetGptProtocol) and path.endswith("/v1"):
            fixed = self.target.origin + path[: -len("v1")]
            return say("hint.v1_getgpt", fixed=fixed)
        if not isinstance(self.protocol, GetGptProtocol) and not path.endswith("/v1"):
            return say("hint.v1_openai", fixed=f"{self.target.origin}{path}/v1")
        return say("hint.not_found", url=url)

    def stream(self, body: bytes, *, strict: bool = False) -> tuple[Response, StreamFacts]:
        """A streamed reply and what its bytes say; ``strict``: a stream that is not well-formed
        (not UTF-8, events that do not decode) fails the check that reads it, with that as the
        evidence -- a client reading it would have failed (openai-python, getgpt.Client)."""
        response = self.send(body)
        if not 200 <= response.status < 300:
            raise Stop(
                "fail", self.words("evidence.status", status=response.status, excerpt=response.excerpt())
            )
        facts = StreamFacts.read(response.reads, self.words)
        self.streams.append(facts)
        if strict and facts.problems:
            raise Stop("fail", self.words("evidence.stream_faulty", problems="; ".join(facts.problems[:3])))
        return response, facts

    def sample(self) -> tuple[Response, StreamFacts]:
        """The battery's first streamed reply, which several checks judge (its failure too)."""
        if self._sample is None:
            try:
                self._sample = self.stream(self.protocol.chat(SAMPLE, max_tokens=SAMPLE_TOKENS))
            except Stop as stop:
                self._sample = stop
        if isinstance(self._sample, Stop):
            raise self._sample
        return self._sample

    # --- the checks -------------------------------------------------------------------------------

    def checks(self) -> list[_Check]:
        p, say = self.protocol, self.words
        first = "envelope" if isinstance(p, GetGptProtocol) else "request"
        listed = [
            (first, True, self.accepted),
            ("content-type", True, self.content_type),
            ("framing", True, self.framing),
            ("done", True, self.done),
            ("finish-reason", True, self.finish),
            ("unicode", True, self.unicode),
            ("whole-reply", p.whole_reply_required, self.whole),
            ("usage", p.usage_required, self.usage),
            ("bad-json", True, self.bad_json),
        ]
        if isinstance(p, GetGptProtocol):
            listed.append(("bad-signature", True, self.bad_signature))
        listed += [
            ("invalid-request", True, self.invalid),
            ("disconnect", True, self.disconnect),
            ("error-event", True, self.error_events),
            ("retry-after", True, self.retry_after),
        ]
        return [_Check(id, say(f"title.{id}"), required, run) for id, required, run in listed]

    def planned(self) -> list[tuple[str, str]]:
        """The checks :meth:`run` runs, in order: (id, title) each."""
        return [(check.id, check.title) for check in self._selected()]

    def _selected(self) -> list[_Check]:
        s = self.settings
        return [c for c in self.checks() if (not s.only or c.id in s.only) and c.id not in s.skip]

    def run(self) -> Iterator[Result]:
        """The results, one a check, as each is judged. Once a check has met a failure every later
        one would meet (see :data:`BLOCKING`, or no connection at all), those are not run: they
        fail with the same evidence and hint."""
        blocker: Stop | None = None
        for check in self._selected():
            if blocker is not None:
                yield Result(check.id, check.title, check.required, "fail", blocker.evidence, blocker.hint)
                continue
            hint = ""
            try:
                outcome = check.run()
                status, evidence = outcome if isinstance(outcome, tuple) else (outcome, "")
            except Stop as stop:
                status, evidence, hint = stop.status, stop.evidence, stop.hint
                blocker = stop if stop.blocks else None
            except Unreachable as exc:
                status, evidence = (
                    "fail",
                    self.words("evidence.unreachable", origin=exc.origin, reason=exc.reason),
                )
                hint = self.words("hint.refused" if exc.refused else "hint.connect")
                blocker = Stop(status, evidence, hint, blocks=True)
            except HttpFailure as exc:
                status, evidence = "fail", str(exc)
            yield Result(check.id, check.title, check.required, status, evidence, hint)

    def accepted(self) -> Status:
        self.sample()
        return "pass"

    def content_type(self) -> Status | tuple[Status, str]:
        response, _ = self.sample()
        if response.media_type != "text/event-stream":
            return "fail", self.words(
                "evidence.content_type", value=response.headers.get("content-type", "(none)")
            )
        return "pass"

    def framing(self) -> Status | tuple[Status, str]:
        _, facts = self.sample()
        if facts.problems:
            return "fail", "; ".join(facts.problems[:3])
        return "pass"

    def done(self) -> Status | tuple[Status, str]:
        _, facts = self.sample()
        if facts.done_at is None:
            last = facts.payloads[-1][:120] if facts.payloads else b"(no event)"
            return "fail", self.words("evidence.no_done", last=repr(last))
        after = len(facts.payloads) - facts.done_at - 1
        if after:
            first = repr(facts.payloads[facts.done_at + 1][:120])
            return "fail", self.words("evidence.after_done", count=after, first=first)
        return "pass"

    def finish(self) -> Status | tuple[Status, str]:
        _, facts = self.sample()
        return judge_finish(facts, self.words)

    def unicode(self) -> Status | tuple[Status, str]:
        _, sample = self.sample()
        _, facts = self.stream(self.protocol.chat(UNICODE, max_tokens=UNICODE_TOKENS), strict=True)
        for at, piece in facts.pieces:
            fault = broken_unicode(piece, self.words)
            if fault:
                return "fail", self.words("evidence.event", at=at, fault=fault)
        echoes = sample.text.strip() == SAMPLE
        if echoes and facts.text != UNICODE:
            return "fail", self._echo_fault(facts.text)
        if not facts.text:
            return "fail", self.words("evidence.no_text")
        return "pass", self.words("evidence.echo_compared") if echoes else ""

    def _echo_fault(self, received: str) -> str:
        """Where an echo parts from the message sent, and how: cut short, or different there."""
        at = next((i for i, (a, b) in enumerate(zip(received, UNICODE, strict=False)) if a != b), None)
        if at is None and len(received) < len(UNICODE):
            at = len(received)
            return self.words(
                "evidence.echo_short", at=at, length=len(UNICODE), received=repr(received[max(at - 12, 0) :])
            )
        at = min(len(received), len(UNICODE)) if at is None else at
        return self.words(
            "evidence.echo_differs",
            at=at,
            sent=repr(UNICODE[at : at + 12]),
            received=repr(received[at : at + 12]),
        )

    def whole(self) -> Status | tuple[Status, str]:
        say = self.words
        response = self.send(self.protocol.chat(SAMPLE, max_tokens=SAMPLE_TOKENS, stream=False))
        if not 200 <= response.status < 300:
            return "fail", say("evidence.status", status=response.status, excerpt=response.excerpt())
        if response.media_type != "application/json":
            kind = response.headers.get("content-type", "(none)")
            return "fail", say("evidence.content_type_body", value=kind, excerpt=response.excerpt())
        try:
            value = json.loads(response.body)
            message = value["choices"][0]["message"]
            reason = value["choices"][0]["finish_reason"]
        except (ValueError, KeyError, IndexError, TypeError):
            return "fail", say("evidence.not_completion", excerpt=response.excerpt())
        if not isinstance(message.get("content"), str) and not message.get("tool_calls"):
            return "fail", say("evidence.no_content", message=repr(message))
        if reason not in FINISH_REASONS:
            return "fail", say("evidence.unknown_finish", reason=repr(reason), known=sorted(FINISH_REASONS))
        fault = usage_fault(value.get("usage"), say)
        return ("fail", fault) if fault else "pass"

    def usage(self) -> Status | tuple[Status, str]:
        say = self.words
        body = self.protocol.chat(SAMPLE, max_tokens=SAMPLE_TOKENS, stream_options={"include_usage": True})
        response = self.send(body)
        if isinstance(self.protocol, GetGptProtocol) and 400 <= response.status < 500:
            return "n/a", say("evidence.nine_fields", status=response.status)
        if not 200 <= response.status < 300:
            return "fail", say("evidence.status", status=response.status, excerpt=response.excerpt())
        facts = StreamFacts.read(response.reads, say)
        self.streams.append(facts)
        if facts.problems:
            return "fail", say("evidence.stream_faulty", problems="; ".join(facts.problems[:3]))
        if not facts.usages and facts.errors:
            return "n/a", say("evidence.ended_in_error")
        if not facts.usages:
            return "fail", say("evidence.no_usage")
        if len(facts.usages) > 1:
            return "fail", say("evidence.usage_many", count=len(facts.usages))
        at, usage = facts.usages[0]
        fault = usage_fault(usage, say)
        if fault:
            return "fail", say("evidence.event", at=at, fault=fault)
        if facts.finishes and at < facts.finishes[-1][0]:
            return "fail", say("evidence.usage_early", at=at, finish=facts.finishes[-1][0])
        return "pass"

    def bad_json(self) -> Status | tuple[Status, str]:
        return judge_error(self.send(self.protocol.not_json()), (400,), self.words)

    def bad_signature(self) -> Status | tuple[Status, str]:
        assert isinstance(self.protocol, GetGptProtocol)
        return judge_error(self.send(self.protocol.bad_signature()), (400,), self.words)

    def invalid(self) -> Status | tuple[Status, str]:
        return judge_error(self.send(self.protocol.invalid()), (400, 422), self.words)

    def disconnect(self) -> Status | tuple[Status, str]:
        say = self.words
        before = self.active_count()
        if before is None:
            return "n/a", say("evidence.no_healthz")
        reply = Open(
            self.target,
            "POST",
            self.protocol.chat_path,
            self.protocol.headers(),
            body=self.protocol.chat(LONG, max_tokens=LONG_TOKENS),
            timeout=self.settings.timeout,
        )
        try:
            if not 200 <= reply.response.status < 300:
                return "n/a", say("evidence.long_refused", status=reply.response.status)
            for data in reply.reads():
                if b'"content"' in data:
                    break
            during = self.active_count()
        finally:
            reply.close()
        if during is None or during <= before:
            return "n/a", say("evidence.ended_early")
        deadline = time.monotonic() + self.settings.disconnect_within
        while True:
            after = self.active_count()
            if after is not None and after <= before:
                return "pass"
            if time.monotonic() > deadline:
                within = f"{self.settings.disconnect_within:g}"
                return "fail", say(
                    "evidence.still_streaming", before=before, during=during, after=after, within=within
                )
            time.sleep(0.05)

    def active_count(self) -> int | None:
        """The replies in progress by ``/healthz`` (under the base URL, else at the root): its
        ``active_slots``, or ``active_streams`` as getgpt serve named it before; None without."""
        for place in dict.fromkeys((self.target, self.target.root())):
            try:
                response = fetch(
                    place,
                    "GET",
                    "healthz",
                    {"Accept": "application/json"},
                    timeout=self.settings.timeout,
                    total=self.settings.timeout,
                )
                value = json.loads(response.body) if response.status == 200 else None
            except (HttpFailure, ValueError):
                continue
            for name in ("active_slots", "active_streams"):
                if isinstance(value, dict) and isinstance(value.get(name), int):
                    return int(value[name])
        return None

    def error_events(self) -> Status | tuple[Status, str]:
        say = self.words
        seen = 0
        for facts in self.streams:
            for at, event in facts.errors:
                seen += 1
                error = event.get("error")
                if not isinstance(error, dict) or not isinstance(error.get("message"), str):
                    return "fail", say("evidence.error_shape", at=at, event=json.dumps(event)[:160])
                later = [p for p in facts.payloads[at + 1 :] if p != b"[DONE]"]
                if later:
                    return "fail", say("evidence.error_then_more", at=at, later=repr(later[0][:120]))
                if facts.done_at is None or facts.done_at < at:
                    return "fail", say("evidence.error_no_done", at=at)
        if not seen:
            return "n/a", say("evidence.no_error_event")
        return "pass", say("evidence.error_events", count=seen)

    def retry_after(self) -> Status | tuple[Status, str]:
        say = self.words
        for response in self.responses:
            fault = retry_after_fault(response, say)
            if fault:
                return "fail", fault
        chat = self.protocol.chat("ping", max_tokens=BURST_TOKENS)
        for sent in range(1, self.settings.burst + 1):
            response = self.send(chat, polite=False)
            if response.status in (429, 503):
                fault = retry_after_fault(response, say)
                if fault:
                    return "fail", say("evidence.at_request", sent=sent, fault=fault)
                asked = response.headers["retry-after"]
                return "pass", say("evidence.limited", status=response.status, sent=sent, asked=asked)
        return "n/a", say("evidence.no_429", burst=self.settings.burst)


# --- judgements shared by the checks ---------------------------------------------------------------


def retry_after(response: Response) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), or None.

    Strict, as RFC 9110 writes it -- whole seconds or a date -- where the client reads it leniently.
    """
    value = response.headers.get("retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def retry_after_fault(response: Response, words: Words | None = None) -> str | None:
    say = words or Words()
    if response.status not in (429, 503):
        return None
    if "retry-after" not in response.headers:
        return say("evidence.no_retry_after", status=response.status)
    if retry_after(response) is None:
        return say(
            "evidence.bad_retry_after", status=response.status, value=repr(response.headers["retry-after"])
        )
    return None


def judge_error(
    response: Response, statuses: tuple[int, ...], words: Words | None = None
) -> Status | tuple[Status, str]:
    """An error response: one of ``statuses``, JSON, ``{"error": {"message": ...}}``."""
    say = words or Words()
    if response.status not in statuses:
        expected = " / ".join(map(str, statuses))
        return "fail", say(
            "evidence.status_expected", status=response.status, expected=expected, excerpt=response.excerpt()
        )
    if response.media_type != "application/json":
        kind = response.headers.get("content-type", "(none)")
        return "fail", say("evidence.content_type_body", value=kind, excerpt=response.excerpt())
    try:
        value = json.loads(response.body)
    except ValueError:
        return "fail", say("evidence.body_not_json", excerpt=response.excerpt())
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str) or not error["message"]:
        return "fail", say("evidence.not_error_object", excerpt=response.excerpt())
    return "pass"


def judge_finish(facts: StreamFacts, words: Words | None = None) -> Status | tuple[Status, str]:
    say = words or Words()
    if facts.errors and not facts.finishes:
        return "pass", say("evidence.ended_in_error")
    if not facts.finishes:
        return "fail", say("evidence.no_finish")
    if len(facts.finishes) > 1:
        return "fail", say("evidence.many_finish", reasons=[reason for _, reason in facts.finishes])
    at, reason = facts.finishes[0]
    if reason not in FINISH_REASONS:
        return "fail", say("evidence.unknown_finish", reason=repr(reason), known=sorted(FINISH_REASONS))
    later = [piece for where, piece in facts.pieces if where > at]
    if later:
        return "fail", say("evidence.text_after_finish", at=at, text=repr(later[0]))
    return "pass"


def usage_fault(usage: Any, words: Words | None = None) -> str | None:
    say = words or Words()
    if not isinstance(usage, dict):
        return say("evidence.no_usage_object", usage=repr(usage))
    counts = {name: usage.get(name) for name in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        return say("evidence.usage_not_whole", counts=counts)
    if counts["total_tokens"] != counts["prompt_tokens"] + counts["completion_tokens"]:  # type: ignore[operator]
        return say("evidence.usage_total", counts=counts)
    return None
