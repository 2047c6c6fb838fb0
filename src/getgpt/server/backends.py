"""Backends: what produces the reply's text.

One small interface: :meth:`Backend.stream` takes a :class:`~getgpt.request.ChatRequest` and an
:class:`~getgpt.server.wire.Outcome` to fill in, and returns an async iterator of text pieces.
Closing that iterator (``aclose()``, or cancelling the task that drives it) must promptly close
any upstream request, so a client that goes away stops the work it asked for. Errors meant for
the client are raised as :class:`~getgpt.server.api_error.ApiError`.

- :class:`EchoBackend` replies with the last user message, in small pieces: offline, deterministic.
- :class:`OpenAIBackend` forwards to an OpenAI-compatible ``/v1`` server over streaming HTTP, on
  the clients' own transports (:mod:`getgpt.upstream`; the lean HTTP/1.1 path, through an HTTP
  proxy if the environment names one): per short request it costs about half of what aiohttp
  did and a fifth of httpx (bench/upstream_clients.py).
- :class:`GetGptBackend` forwards to another GetGpt-protocol server with the project's own client.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import msgspec

from .. import AsyncClient, errors
from ..reply import ReplyParser
from ..request import DEFAULT_MODEL, ChatRequest
from ..upstream import AsyncResponse, Timeouts, aread_excerpt, error_message, open_transport
from .api_error import ApiError
from .config import ServerConfig
from .wire import Outcome

if TYPE_CHECKING:
    from ..request import Message

__all__ = ["Backend", "EchoBackend", "GetGptBackend", "OpenAIBackend", "make_backend"]

log = logging.getLogger("getgpt.server")

# The protocol's defaults mean "no preference": leave them to the upstream's own defaults.
_DEFAULTS: dict[str, object] = {
    "frequency_penalty": 0,
    "max_tokens": 4000,
    "presence_penalty": 0,
    "temperature": 1,
    "top_p": 1,
}
# Upstream statuses that are the request's fault or a request to slow down pass through as they
# are; any other failure of the upstream is the gateway's 502.
_PASSED_STATUSES = frozenset({400, 404, 413, 422, 429})
_EXCERPT = 4096


class Backend(Protocol):
    """Produces the text of a reply."""

    name: str

    def stream(self, request: ChatRequest, outcome: Outcome) -> AsyncIterator[str]:
        """The reply's text pieces; fill ``outcome`` before the iterator ends."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the server stops."""
        ...


def _parameters(request: ChatRequest) -> dict[str, Any]:
    return {
        name: getattr(request, name)
        for name, default in _DEFAULTS.items()
        if getattr(request, name) != default
    }


def _messages(messages: list[Message]) -> list[dict[str, str]]:
    # to_builtins, not asdict: a message's unset ``name`` must not go upstream as null.
    return [msgspec.to_builtins(message) for message in messages]


class EchoBackend:
    """Replies with exactly the content of the last user message, ``piece_chars`` characters at a time."""

    name = "echo"

    def __init__(self, piece_chars: int = 4, delay: float = 0.0) -> None:
        self.piece_chars = piece_chars
        self.delay = delay

    async def stream(self, request: ChatRequest, outcome: Outcome) -> AsyncIterator[str]:
        text = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        size, delay = self.piece_chars, self.delay
        for start in range(0, len(text), size):
            if delay and start:
                await asyncio.sleep(delay)
            yield text[start : start + size]

    async def aclose(self) -> None:
        pass


class OpenAIBackend:
    """Forwards to an OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp, another getgpt)."""

    name = "openai"

    def __init__(self, config: ServerConfig) -> None:
        assert config.upstream is not None
        self.url = config.upstream.rstrip("/") + "/chat/completions"
        self.model = config.upstream_model
        # Identity encoding: the body is relayed as it comes, with no decoder to run per chunk.
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
        }
        if config.upstream_key_env:
            key = os.environ.get(config.upstream_key_env)
            if not key:
                raise ValueError(f"the environment variable {config.upstream_key_env} holds no API key")
            self._headers["Authorization"] = f"Bearer {key}"
        # The server's own stream limit bounds the connections open upstream at once; an
        # environment proxy (HTTPS_PROXY, NO_PROXY...) is honoured.
        wait = config.upstream_timeout
        timeouts = Timeouts(config.upstream_connect_timeout, read=wait, write=wait, pool=wait, head=wait)
        self._transport = open_transport(self.url, self._headers, timeouts=timeouts, max_idle=100)

    async def stream(self, request: ChatRequest, outcome: Outcome) -> AsyncIterator[str]:
        body = {
            "model": self.model or request.model,
            "messages": _messages(request.messages),
            "stream": True,
            **_parameters(request),
        }
        parser = ReplyParser()
        response: AsyncResponse | None = None
        sent = 0
        try:
            response = await self._transport.send(msgspec.json.encode(body))
            if not 200 <= response.status_code < 300:
                raise await _upstream_status(response)
            async for chunk in response.reads():
                for piece in parser.feed(chunk):
                    sent += len(piece)
                    yield piece
            for piece in parser.close():
                yield piece
        except errors.TransportError as exc:
            raise _upstream_unreachable(self.url, exc) from None
        except errors.GetGptError as exc:
            missing = _unsent(exc, sent)
            if missing:
                yield missing
            raise _upstream_broke(exc) from None
        finally:
            # Closing early (the client went away) closes the connection rather than reusing it.
            if response is not None:
                await response.aclose()
        outcome.finish_reason = parser.finish_reason or "stop"
        outcome.usage = parser.usage

    async def aclose(self) -> None:
        await self._transport.aclose()


class GetGptBackend:
    """Forwards to another GetGpt-protocol server's ``/api/chat/stream`` (chaining)."""

    name = "getgpt"

    def __init__(self, config: ServerConfig) -> None:
        assert config.upstream is not None
        self.model = config.upstream_model
        # The server's own stream limit bounds the connections open upstream at once.
        self._client = AsyncClient(
            config.upstream,
            timeout=httpx.Timeout(config.upstream_timeout, connect=config.upstream_connect_timeout),
            max_keepalive_connections=100,
        )

    async def stream(self, request: ChatRequest, outcome: Outcome) -> AsyncIterator[str]:
        params = _parameters(request)
        model = self.model or request.model
        if model != DEFAULT_MODEL:
            params["model"] = model
        sent = 0
        try:
            async with self._client.stream(request.messages, **params) as chat:
                async for piece in chat:
                    sent += len(piece)
                    yield piece
                outcome.finish_reason = chat.finish_reason or "stop"
                outcome.usage = chat.usage
        except errors.StatusError as exc:
            status = exc.status_code if exc.status_code in _PASSED_STATUSES else 502
            headers = {}
            if isinstance(exc, errors.RateLimitError) and exc.retry_after is not None:
                headers["Retry-After"] = str(int(exc.retry_after + 0.999))
            raise ApiError(
                status,
                f"upstream: {exc.message}",
                type="upstream_error",
                code=exc.status_code,
                headers=headers,
            ) from None
        except errors.TransportError as exc:
            raise ApiError(
                502, f"upstream: {exc.message}", type="upstream_error", code="upstream_unreachable"
            ) from None
        except errors.GetGptError as exc:
            missing = _unsent(exc, sent)
            if missing:
                yield missing
            raise _upstream_broke(exc) from None

    async def aclose(self) -> None:
        await self._client.aclose()


def _unsent(exc: errors.GetGptError, sent: int) -> str:
    """Text the upstream sent that was not yet passed on, ``sent`` characters having been: the
    pieces that arrived in the same read as the error are only in its ``partial``. They go to
    the client before the error does."""
    return exc.partial[sent:]


async def _upstream_status(response: AsyncResponse) -> ApiError:
    excerpt = await aread_excerpt(response, _EXCERPT)
    status = response.status_code
    detail = _upstream_message(excerpt) or response.reason_phrase or "no detail"
    headers = {}
    if status == 429 and "retry-after" in response.headers:
        headers["Retry-After"] = response.headers["retry-after"]
    return ApiError(
        status if status in _PASSED_STATUSES else 502,
        f"upstream answered HTTP {status}: {detail}",
        type="upstream_error",
        code=status,
        headers=headers,
    )


def _upstream_message(body: bytes) -> str | None:
    message = error_message(body)
    if message is not None:
        return message[:500]
    text = body.decode("utf-8", "replace").strip()
    return text[:200] if text and not text.startswith(("<", "{", "[")) else None


def _upstream_unreachable(url: str, exc: errors.TransportError) -> ApiError:
    timed_out = isinstance(exc, errors.Timeout)
    what = "timed out" if timed_out else "failed"
    log.warning("upstream %s %s: %s", url, what, type(exc).__name__)
    return ApiError(
        504 if timed_out else 502,
        f"upstream {what} ({type(exc).__name__})",
        type="upstream_error",
        code="upstream_timeout" if timed_out else "upstream_unreachable",
    )


def _upstream_broke(exc: errors.GetGptError) -> ApiError:
    if isinstance(exc, errors.RemoteError):
        return ApiError(502, f"upstream: {exc.message}", type=exc.type or "upstream_error", code=exc.code)
    return ApiError(
        502, f"upstream broke the protocol: {exc.message}", type="upstream_error", code="bad_upstream"
    )


def make_backend(config: ServerConfig) -> Backend:
    """The backend ``config`` names."""
    if config.backend == "openai":
        return OpenAIBackend(config)
    if config.backend == "getgpt":
        return GetGptBackend(config)
    return EchoBackend(config.echo_piece_chars, config.echo_delay)
