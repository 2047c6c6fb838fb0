"""What both pools share: their settings, and how they word a failure."""

from __future__ import annotations

import ssl
from typing import Generic, TypeVar

from ...protocol.errors import TransportError
from ..base import KEEPALIVE, MAX_IDLE, Request, Timeouts
from .origin import Endpoint
from .reader import ResponseReader

__all__ = ["PoolBase", "WriteFailed", "detail", "via"]

Idle = TypeVar("Idle")


class PoolBase(Generic[Idle]):
    """Keep-alive connections to one endpoint: the settings either pool keeps them by, and the
    idle ones (whatever a pool keeps of a connection)."""

    def __init__(
        self,
        where: Endpoint,
        timeouts: Timeouts,
        tls: ssl.SSLContext | None = None,
        max_idle: int = MAX_IDLE,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self.endpoint = where
        self.timeouts = timeouts
        #: Idle connections kept for reuse, each for ``keepalive`` seconds at most.
        self.max_idle = max_idle
        self.keepalive = keepalive
        #: The TLS context for https:// endpoints.
        self.tls = tls
        if where.scheme == "https" and tls is None:
            raise ValueError("an https:// endpoint needs a TLS context")
        self._idle: list[Idle] = []
        self._closed = False

    def _post(self, body: bytes) -> tuple[bytes, ResponseReader]:
        """A POST of ``body`` to the endpoint's URL, and the reader for its reply."""
        where = self.endpoint
        return where.request(body), ResponseReader(where.url, where.asked)

    def _outgoing(self, request: Request) -> tuple[bytes, ResponseReader]:
        """The bytes of ``request``, and the reader for its response."""
        where, headers = self.endpoint, request.headers
        head = where.head(request.method, request.target, headers, len(request.body))
        return head + request.body, ResponseReader(where.origin + request.target, where.asked_with(headers))


class WriteFailed(TransportError):
    """The request could not be written whole. Never leaves a pool: the server may have answered
    anyway (a 413 before reading a large body), and that answer is what the caller gets; else a
    plain :class:`~getgpt.protocol.errors.TransportError` with this message."""


def detail(exc: BaseException) -> str:
    """An OS or TLS error's text, or its class's name when it has none."""
    return str(exc) or type(exc).__name__


def via(where: Endpoint, url: str) -> str:
    """``url``, and the proxy requests to it go through."""
    return url if where.proxy is None else f"{url} through the proxy {where.proxy.url}"
