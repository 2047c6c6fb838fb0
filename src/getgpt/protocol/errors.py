"""The errors getgpt raises, all rooted at :class:`GetGptError`.

Every error raised while a reply was streaming carries the text received so far in ``partial``,
so a failure never silently loses the part of the answer that did arrive.

    GetGptError                 Base of every error this package raises.
    ├── TransportError          The connection failed: refused, reset, broken mid-transfer, or not HTTP.
    │   ├── ConnectError        No connection could be made: refused, unreachable, TLS, a proxy's refusal.
    │   └── Timeout             Connecting, sending or waiting for the reply took longer than allowed.
    ├── StatusError             The server answered with a non-2xx status; carries it and a body excerpt.
    │   ├── RateLimitError      Status 429: the server asks us to slow down (see ``retry_after``).
    │   └── CloudflareBlocked   A Cloudflare challenge or block page came back instead of the API.
    ├── ProtocolError           The reply broke the protocol: a malformed or oversized event, a bad coding.
    │   ├── IncompleteStream    The server closed the stream before ``[DONE]`` or a ``finish_reason``.
    │   └── LimitExceeded       The reply went past a bound the client keeps: its size, its head's.
    ├── RemoteError             The server reported an error inside the stream: ``data: {"error": ...}``.
    ├── SignatureError          A signature (the request envelope) is malformed and cannot be decrypted.
    └── ValidationError         A chat request breaks the protocol's rules (roles, ranges, types).
"""

from __future__ import annotations

import builtins

__all__ = [
    "CloudflareBlocked",
    "ConnectError",
    "GetGptError",
    "IncompleteStream",
    "LimitExceeded",
    "ProtocolError",
    "RateLimitError",
    "RemoteError",
    "SignatureError",
    "StatusError",
    "Timeout",
    "TransportError",
    "ValidationError",
]


class GetGptError(Exception):
    """Base of every error this package raises."""

    def __init__(self, message: str, *, partial: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: The reply text received before the error; empty when nothing had arrived.
        self.partial = partial


class TransportError(GetGptError):
    """The connection failed: refused, reset, broken mid-transfer, or not HTTP."""


class ConnectError(TransportError):
    """No connection could be made: refused, unreachable, TLS, a proxy's refusal."""


class Timeout(TransportError, builtins.TimeoutError):
    """Connecting, sending or waiting for the reply took longer than allowed."""


class StatusError(GetGptError):
    """The server answered with a non-2xx status; carries it and a body excerpt."""

    def __init__(self, message: str, *, status_code: int, body: str = "", partial: str = "") -> None:
        super().__init__(message, partial=partial)
        self.status_code = status_code
        #: At most the first couple of kilobytes of the response body, decoded leniently.
        self.body = body


class RateLimitError(StatusError):
    """Status 429: the server asks us to slow down (see ``retry_after``)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        #: Seconds the server asked us to wait (from ``Retry-After``), if it said.
        self.retry_after = retry_after


class CloudflareBlocked(StatusError):
    """A Cloudflare challenge or block page came back instead of the API."""


class ProtocolError(GetGptError):
    """The reply broke the protocol: a malformed or oversized event, a bad coding."""


class IncompleteStream(ProtocolError):
    """The server closed the stream before ``[DONE]`` or a ``finish_reason``."""


class LimitExceeded(ProtocolError):
    """The reply went past a bound the client keeps: its size, its head's.

    A whole (non-streamed) reply larger than ``max_reply_bytes``, a head larger or with more
    headers than the client reads, too many interim (1xx) replies. Never retried.
    """


class RemoteError(GetGptError):
    """The server reported an error inside the stream: ``data: {"error": ...}``."""

    def __init__(
        self,
        message: str,
        *,
        type: str | None = None,
        code: str | int | None = None,
        partial: str = "",
    ) -> None:
        super().__init__(message, partial=partial)
        self.type = type
        self.code = code


class SignatureError(GetGptError, ValueError):
    """A signature (the request envelope) is malformed and cannot be decrypted."""


class ValidationError(GetGptError, ValueError):
    """A chat request breaks the protocol's rules (roles, ranges, types)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        #: Where in the request the problem is (``temperature``, ``messages[0].role``), when known.
        self.param = param
