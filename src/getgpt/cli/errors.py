"""What went wrong, said to a person: one sentence in the user's language with what to do about
it, and the server's (or the system's) own words on a line of their own.

The sentence names the usual mistakes and their remedy once each: ``/v1`` in a GetGpt base URL
(that path is OpenAI's API), a missing or refused API key, a connection refused (no server
there), a web server that is not a GetGpt server. The detail line keeps what the server said, as
it said it -- a person searching for it, or a server's own language, needs it verbatim.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .text import Texts

__all__ = ["CommandFailed", "Problem", "describe_error", "server_words"]

# The longest detail kept: a whole HTML error page helps nobody on a terminal.
DETAIL_LENGTH = 200
_TAG = re.compile(r"<(script|style|head)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_CONNECTION_PREFIX = re.compile(r"^connection to \S+ failed(?: \(\w+\))?: ")


class Problem:
    """A failure said to a person: ``sentence`` (with its remedy) and, if any, ``detail``, the
    server's or the system's own words, under ``label`` ("the server said", "details")."""

    def __init__(self, sentence: str, detail: str = "", label: str = "") -> None:
        self.sentence = sentence
        self.detail = detail
        self.label = label

    def lines(self, texts: Texts, prog: str) -> list[str]:
        """``PROG: error: SENTENCE``, then the detail on a line of its own."""
        lines = [texts("cli.error", prog=prog, message=" ".join(self.sentence.split()))]
        if self.detail:
            lines.append(f"  {self.label}: {' '.join(self.detail.split())}")
        return lines


class CommandFailed(Exception):
    """A command that failed, already said to a person; ``status`` is the exit status."""

    def __init__(self, problem: Problem, status: int = 1) -> None:
        super().__init__(problem.sentence)
        self.problem = problem
        self.status = status


def server_words(body: str) -> str:
    """What an error body says, for the detail line: an OpenAI-style message, or the text of an
    HTML page without its markup, or the body itself; at most :data:`DETAIL_LENGTH` characters."""
    from ..client.statuses import error_message

    said = error_message(body.encode("utf-8", "replace"))
    if said is None:
        said = _TAG.sub(" ", body) if _is_html(body) else body
    said = " ".join(said.split())
    return said if len(said) <= DETAIL_LENGTH else said[: DETAIL_LENGTH - 1] + "…"


def _is_html(body: str) -> bool:
    return body.lstrip()[:1] == "<"


def _refused(exc: BaseException) -> bool:
    """Whether a ConnectionRefusedError is anywhere in the exception's chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        current = current.__cause__ or current.__context__
    return "connection refused" in str(exc).lower()


def _system_words(exc: BaseException) -> str:
    """What the system said of a failed connection: the OS's error, without our own wrapping."""
    cause = exc.__cause__
    if cause is not None and str(cause):
        return str(cause)
    return _CONNECTION_PREFIX.sub("", str(exc))


def without_v1(url: str) -> str | None:
    """``url`` with a trailing ``/v1`` segment removed, if it has one."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        return None
    return urlunsplit(parts._replace(path=path[: -len("v1")]))


def describe_error(exc: BaseException, texts: Texts, url: str, key_env: str, key_sent: bool) -> Problem:
    """``exc``, met talking to the GetGpt server at ``url``, said to a person."""
    from ..protocol.errors import (
        GetGptError,
        IncompleteStream,
        ProtocolError,
        RemoteError,
        StatusError,
        Timeout,
        TransportError,
        ValidationError,
    )

    if not isinstance(exc, GetGptError):
        return Problem(str(exc) or type(exc).__name__)
    message = exc.message
    if isinstance(exc, Timeout):
        return Problem(texts("error.timeout", url=url), message, texts("error.details"))
    if isinstance(exc, TransportError):
        if _refused(exc):
            return Problem(texts("error.refused", url=url))
        return Problem(texts("error.connect", url=url), _system_words(exc), texts("error.details"))
    if isinstance(exc, StatusError):
        return _status(exc, texts, url, key_env, key_sent)
    if isinstance(exc, IncompleteStream):
        return Problem(texts("error.incomplete"))
    if isinstance(exc, ProtocolError):
        return Problem(texts("error.protocol"), message, texts("error.details"))
    if isinstance(exc, RemoteError):
        return Problem(texts("error.remote"), message, texts("error.server_said"))
    if isinstance(exc, ValidationError):
        return Problem(texts("error.invalid"), message, texts("error.details"))
    return Problem(message)


def _status(exc: BaseException, texts: Texts, url: str, key_env: str, key_sent: bool) -> Problem:
    from ..protocol.errors import CloudflareBlocked, RateLimitError, StatusError

    assert isinstance(exc, StatusError)
    status, said = exc.status_code, server_words(exc.body)
    if isinstance(exc, CloudflareBlocked):
        return Problem(texts("error.cloudflare", url=url, status=status))
    if status in (401, 403) and not key_sent:
        return Problem(texts("error.need_key", env=key_env, status=status), said, texts("error.server_said"))
    if status in (401, 403):
        return Problem(texts("error.bad_key", env=key_env, status=status), said, texts("error.server_said"))
    if isinstance(exc, RateLimitError):
        if exc.retry_after is not None:
            seconds = max(1, round(exc.retry_after))
            return Problem(texts("error.rate_limited_for", seconds=seconds), said, texts("error.server_said"))
        return Problem(texts("error.rate_limited"), said, texts("error.server_said"))
    if status == 404:
        shorter = without_v1(url)
        if shorter is not None:
            return Problem(texts("error.v1", url=url, fixed=shorter), said, texts("error.server_said"))
        return Problem(texts("error.not_found", url=url), said, texts("error.server_said"))
    if status in (405, 501) or _is_html(exc.body):
        return Problem(texts("error.not_getgpt", url=url, status=status), said, texts("error.server_said"))
    return Problem(texts("error.status", status=status), said, texts("error.server_said"))
