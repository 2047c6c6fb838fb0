"""What every GetGpt client decides without I/O.

:class:`BaseClient` holds every decision that needs no I/O -- the URL, the request body, which
way a request travels, when to retry and for how long to wait, how a failed response becomes a
typed error. :class:`~getgpt.client.clients.Client` and
:class:`~getgpt.client.clients.AsyncClient` are thin shells over it that only send and read.

A request travels the lean HTTP/1.1 path of :mod:`getgpt._transports.http11` unless it needs
what only httpx has -- a SOCKS proxy, a custom transport, a ready-made httpx client, trio -- and
then through httpx; :mod:`getgpt._transports.choose` chooses, and both ways hand the clients a
response of the same shape and raise only getgpt's errors.
"""

from __future__ import annotations

import os
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from .._transports.base import (
    ResponseHead,
    Timeouts,
    without_credentials,
)
from ..protocol import envelope
from ..protocol.errors import (
    CloudflareBlocked,
    ProtocolError,
    RateLimitError,
    StatusError,
)
from ..protocol.request import USER_AGENT, Message, build_request, encode
from ..protocol.sse import DEFAULT_MAX_EVENT_SIZE
from .bodies import DEFAULT_MAX_REPLY_BYTES, EXCERPT
from .statuses import error_message, is_cloudflare_block, retry_after

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "BaseClient", "Messages", "base_url_from"]

#: The address of the original service, the seed's ``url``: gone, so never used unless named.
DEFAULT_BASE_URL = "https://chat.getgpt.world/"
#: As the openai SDK: 10 minutes in all, 5 seconds to connect.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
# Statuses worth another try: the request never reached a model, or the server asks us to wait.
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 8.0

Messages = Iterable[Mapping[str, Any] | Message]


NO_SERVER = (
    "no GetGpt server given: the original one ({seed}) is gone. Point getgpt at a server of "
    "yours: set GETGPT_BASE_URL (export GETGPT_BASE_URL=http://127.0.0.1:8000/), or pass it "
    "(base_url= to a client, api_base= to an integration); 'getgpt serve' runs one "
    "(pip install -e '.[server]')"
)


def base_url_from(value: str | None) -> str:
    """The base URL to use: ``value``, else ``GETGPT_BASE_URL``; ends in ``/``.

    Neither given is a :class:`ValueError` saying how to give one: the seed's server
    (:data:`DEFAULT_BASE_URL`) no longer answers, and a request sent there would end in a
    name-resolution error that says nothing of what to do.
    """
    url = value or os.environ.get("GETGPT_BASE_URL")
    if not url:
        raise ValueError(NO_SERVER.format(seed=DEFAULT_BASE_URL))
    return url if url.endswith("/") else url + "/"


class BaseClient:
    """Configuration and every decision that needs no I/O.

    Time: ``timeout`` (seconds, or an :class:`httpx.Timeout`) bounds each step -- connecting,
    sending, and each read, the longest silence while a reply streams; ``head_timeout`` bounds
    the reply's status line and headers in all, from the request sent (default: the read
    timeout); ``deadline``, if given, the whole reply, retries and their waits included.
    ``max_reply_bytes`` bounds a whole (non-streamed) JSON reply. ``on_retry(seconds, status)``
    is called before each wait between two tries.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        head_timeout: float | None = None,
        deadline: float | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = 60.0,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        headers: Mapping[str, str] | None = None,
        verify: bool | str | ssl.SSLContext = True,
        on_retry: Callable[[float, int | None], None] | None = None,
    ) -> None:
        self.base_url = base_url_from(base_url)
        self.url = self.base_url + "api/chat/stream"
        # The URL as messages name it: credentials in it stay out of errors and logs.
        self._named = without_credentials(self.url)
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        t = self.timeout
        #: Seconds for a reply's status line and headers in all (None: as long as a read may take).
        self.head_timeout = t.read if head_timeout is None else head_timeout
        #: Seconds for a whole reply, retries included; None for no limit.
        self.deadline = deadline
        #: Largest whole (non-streamed) reply read, in bytes.
        self.max_reply_bytes = max_reply_bytes
        self._timeouts = Timeouts(t.connect, t.read, t.write, t.pool, self.head_timeout)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.max_event_size = max_event_size
        self.headers = {
            "Content-Type": "application/json",
            "Referer": self.base_url,
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        #: Whether and how to check TLS certificates: True, False, a CA bundle's path or a context.
        self.verify = verify
        #: Told ``(seconds, status)`` before each wait between two tries (``status`` None when the
        #: connection failed): a face shows the wait, such as a Retry-After's countdown.
        self.on_retry = on_retry

    def _body(self, messages: Messages, params: Mapping[str, Any]) -> bytes:
        """The POST body: the validated request, sealed in the envelope."""
        signature = envelope.encrypt(encode(build_request(messages, **params)).decode())
        return b'{"signature":"' + signature.encode() + b'"}'

    def _until(self) -> float | None:
        """The moment (``time.monotonic()``) a reply starting now must end by, if there is one."""
        return None if self.deadline is None else time.monotonic() + self.deadline

    def _retry_delay(
        self, attempt: int, status: int | None, headers: Mapping[str, str] | None, until: float | None
    ) -> float:
        """Seconds to wait before attempt ``attempt + 1``, or -1 to give up.

        ``status`` is None for a connection that failed before any response. A wait that would
        end past the deadline (``until``) is not started.
        """
        if attempt >= self.max_retries or (status is not None and status not in _RETRY_STATUSES):
            return -1
        asked = retry_after(headers) if headers is not None else None
        if asked is not None:
            delay = asked if asked <= self.max_retry_wait else -1
        else:
            delay = min(_BACKOFF_BASE * 2.0**attempt, _BACKOFF_CAP) * random.uniform(0.75, 1.0)
        if until is not None and time.monotonic() + delay >= until:
            return -1
        if self.on_retry is not None:
            self.on_retry(delay, status)
        return delay

    def _status_error(self, response: ResponseHead, body: bytes) -> StatusError:
        status = response.status_code
        excerpt = body[:EXCERPT].decode("utf-8", "replace")
        detail = error_message(body) or excerpt.strip()[:200] or response.reason_phrase
        message = f"HTTP {status} from {self._named}: {detail}"
        if is_cloudflare_block(response, body):
            return CloudflareBlocked(
                f"HTTP {status} from {self._named}: blocked by a Cloudflare challenge page",
                status_code=status,
                body=excerpt,
            )
        if status == 429:
            return RateLimitError(message, body=excerpt, retry_after=retry_after(response.headers))
        return StatusError(message, status_code=status, body=excerpt)

    def _is_json(self, response: ResponseHead) -> bool:
        """True when the reply is one JSON object rather than an event stream."""
        kind: str = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind == "text/html":
            raise ProtocolError(f"expected an event stream from {self._named}, got an HTML page")
        return kind == "application/json"
