"""Backends: what produces a chat reply.

One small interface. :meth:`Backend.check` refuses, with an :class:`ApiError` (400 naming the
parameter), a request the backend cannot honour, before any work starts. :meth:`Backend.stream`
takes the :class:`~getgpt.server.chat.request.Chat` and an :class:`~getgpt.server.chat.wire.Outcome` to fill
in, and returns an async iterator of the reply: "chat chunks out", in one of two forms --

- text pieces (``str``) of the first choice, the fast path for plain text, which the server
  writes as OpenAI ``chat.completion.chunk`` events (:class:`~getgpt.server.chat.wire.ChunkWriter`);
  ``outcome.choices`` > 1 repeats them for that many choices;
- with ``passthrough = True``, bytes: the events of a reply already framed, as an upstream sent
  them -- tool-call deltas, reasoning, logprobs, several choices, anything -- or, when the client
  did not ask for a stream, the whole ``chat.completion`` JSON.

Closing the iterator (``aclose()``, or cancelling the task that drives it) must promptly close
any upstream request, so a client that goes away stops the work it asked for. Errors meant for
the client are raised as :class:`~getgpt.server.api_error.ApiError`.

- :class:`~getgpt.server.backends.echo.EchoBackend` replies with the last user message: offline, honest.
- :class:`~getgpt.server.upstreams.forwarding.ForwardingBackend` forwards to an OpenAI-compatible server
  (``openai``) or another GetGpt server (``getgpt``), on the clients' own lean HTTP/1.1 path
  (httpx when a proxy is set).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from ...client.transport import AsyncResponse
from ..chat.request import Chat
from ..chat.wire import Outcome
from ..config import ServerConfig
from ..operations.prometheus import PrometheusMetrics
from ..upstreams.forwarding import ForwardingBackend, configured_models
from .echo import EchoBackend

__all__ = ["Backend", "EchoBackend", "ForwardingBackend", "make_backend"]


class Backend(Protocol):
    """Produces a chat reply; see the module docstring."""

    name: str
    #: The reply is bytes to send as they are (an upstream's), not text to make events of.
    passthrough: bool
    #: It forwards OpenAI's other routes (``/v1/embeddings``, ...) to an upstream.
    forwards_routes: bool

    def check(self, chat: Chat) -> None:
        """Raise :class:`ApiError` if the backend cannot honour ``chat``."""
        ...

    def stream(self, chat: Chat, outcome: Outcome) -> AsyncIterator[str] | AsyncIterator[bytes]:
        """The reply; fill ``outcome`` before the iterator ends."""
        ...

    async def models(self) -> list[dict[str, Any]]:
        """The model objects ``GET /v1/models`` lists."""
        ...

    async def forward(self, path: str, body: bytes) -> AsyncResponse:
        """POST ``body`` to the upstream's ``path`` (``/embeddings``, ...): its 2xx answer, whose body
        the caller reads and closes, or an :class:`ApiError` (400 when the backend has no such route)."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the server stops."""
        ...


def make_backend(config: ServerConfig, metrics: PrometheusMetrics | None = None) -> Backend:
    """The backend ``config`` names; a forwarding one counts its upstream's latency and failures
    in ``metrics``."""
    if config.backend == "echo":
        return EchoBackend(config.echo_piece_chars, config.echo_delay, models=configured_models(config))
    return ForwardingBackend(config, metrics)
