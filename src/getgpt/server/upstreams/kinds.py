"""The two kinds of upstream, as two small classes on one base: what differs is the URL a chat
request goes to, the headers it carries, its body, and what else the upstream serves.

- :class:`OpenAIUpstream` (``openai``): any OpenAI-compatible ``/v1`` server (OpenAI, Ollama,
  vLLM, llama.cpp, another getgpt). A ``/v1`` request goes on as the client's own bytes; a
  GetGpt request as the OpenAI request object it stands for. It lists its models
  (``GET /v1/models``), serves OpenAI's other routes, and is asked for the usage of every stream.
- :class:`GetGptUpstream` (``getgpt``): another GetGpt-protocol server's ``/api/chat/stream``
  (chaining), the request sealed in the envelope again, the seed's nine fields first. It serves
  chat only; the server lists its own ``--model`` names for it.

An :class:`Upstream` owns its transport (a connection pool to its origin) and nothing about the
reply: :mod:`getgpt.server.upstreams.forwarding` relays what comes back, whatever the kind.
"""

from __future__ import annotations

import os
from typing import ClassVar
from urllib.parse import urlsplit

import msgspec

from ...client.transport import AsyncTransport, Timeouts, open_transport
from ...protocol import envelope
from ...protocol.request import USER_AGENT, encode
from ..chat.request import Chat
from ..config import ServerConfig

__all__ = ["KINDS", "GetGptUpstream", "OpenAIUpstream", "Upstream", "timeouts_of", "upstream_key"]


def timeouts_of(config: ServerConfig) -> Timeouts:
    """The bounds of every upstream request: ``--upstream-connect-timeout`` the connection,
    ``--upstream-timeout`` each read, ``--upstream-head-timeout`` the reply's status and headers in
    all, however they trickle (the whole reply's deadline is the caller's, per request)."""
    wait = config.upstream_timeout
    return Timeouts(
        config.upstream_connect_timeout, read=wait, write=wait, pool=wait, head=config.upstream_head_timeout
    )


def upstream_key(env_name: str | None) -> str | None:
    """The API key held by the environment variable ``env_name`` (None for no variable);
    :class:`ValueError` naming the variable when it holds none."""
    if not env_name:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise ValueError(f"the environment variable {env_name} holds no API key")
    return key


class Upstream:
    """One upstream server of some kind; see the module docstring.

    ``url`` is its base (``.../v1`` for the ``openai`` kind, the server's root for ``getgpt``),
    ``key`` the API key sent as ``Authorization: Bearer``, ``ask_usage`` whether a stream asks
    for its usage (for the token counters; only a kind that can be asked does).
    """

    #: The kind's name, as ``--backend`` and the config file's ``kind`` say it.
    kind: ClassVar[str]
    #: It serves OpenAI's other routes (``/v1/embeddings``, ...).
    forwards_routes: ClassVar[bool] = False
    #: It lists its own models (``GET {url}/models``).
    lists_models: ClassVar[bool] = False
    #: A stream can ask it for the usage chunk (``stream_options.include_usage``).
    can_ask_usage: ClassVar[bool] = False

    def __init__(
        self,
        url: str,
        *,
        key: str | None,
        timeouts: Timeouts,
        ask_usage: bool = True,
        max_idle: int = 100,
    ) -> None:
        self.base = url
        # Where OpenAI's other routes are: the path of the upstream's /v1.
        self.base_path = urlsplit(url).path.rstrip("/")
        self.ask_usage = ask_usage and self.can_ask_usage
        # Identity encoding: the body is relayed as it comes, with no decoder to run per chunk.
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **self._headers()}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.url = self._chat_url()
        # An environment proxy (HTTPS_PROXY, NO_PROXY...) is honoured.
        self.transport: AsyncTransport = open_transport(
            self.url, headers, timeouts=timeouts, max_idle=max_idle
        )

    def _chat_url(self) -> str:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        return {}

    def check(self, chat: Chat) -> None:
        """Raise :class:`~getgpt.server.api_error.ApiError` if this kind cannot carry ``chat``."""

    def body(self, chat: Chat, model: str | None) -> tuple[bytes, bool]:
        """The request body for the upstream, ``model`` sent instead of the client's when given,
        and whether the usage chunk is the server's own ask (to drop it from the reply)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.transport.aclose()


class OpenAIUpstream(Upstream):
    """An OpenAI-compatible ``/v1`` server."""

    kind = "openai"
    forwards_routes = True
    lists_models = True
    can_ask_usage = True

    def _chat_url(self) -> str:
        return self.base.rstrip("/") + "/chat/completions"

    def _headers(self) -> dict[str, str]:
        return {"Accept": "text/event-stream"}

    def body(self, chat: Chat, model: str | None) -> tuple[bytes, bool]:
        add_usage = self.ask_usage and chat.stream and not chat.include_usage
        return chat.openai_body(model, add_usage), add_usage


class GetGptUpstream(Upstream):
    """Another GetGpt-protocol server (chaining)."""

    kind = "getgpt"

    def _root(self) -> str:
        return self.base if self.base.endswith("/") else self.base + "/"

    def _chat_url(self) -> str:
        return self._root() + "api/chat/stream"

    def _headers(self) -> dict[str, str]:
        return {"Referer": self._root(), "User-Agent": USER_AGENT}

    def check(self, chat: Chat) -> None:
        chat.request  # noqa: B018 -- a /v1 request must have a GetGpt form: a 400 if it has none

    def body(self, chat: Chat, model: str | None) -> tuple[bytes, bool]:
        request = chat.request
        if model is not None and model != request.model:
            request = msgspec.structs.replace(request, model=model)
        signature = envelope.encrypt(encode(request).decode())
        return b'{"signature":"' + signature.encode() + b'"}', False


#: The kinds by name.
KINDS: dict[str, type[Upstream]] = {kind.kind: kind for kind in (OpenAIUpstream, GetGptUpstream)}
