"""The two kinds of upstream, as two small classes on one base: what differs is the URL a chat
request goes to, the headers it carries, its body, and what else the upstream serves.

- :class:`OpenAIUpstream` (``openai``): any OpenAI-compatible ``/v1`` server (OpenAI, Ollama,
  vLLM, llama.cpp, another getgpt). A ``/v1`` request goes on as the client's own bytes; a
  GetGpt request as the OpenAI request object it stands for. It lists its models
  (``GET /v1/models``), serves OpenAI's other routes, and is asked for the usage of every stream.
- :class:`GetGptUpstream` (``getgpt``): another GetGpt-protocol server's ``/api/chat/stream``
  (chaining), the request sealed in the envelope again, the seed's nine fields first. It serves
  chat only; the server lists its own ``--model`` names for it.

An :class:`Upstream` owns its transport (a connection pool to its origin) and its
:class:`~getgpt.server.upstreams.health.Health`, and nothing about the reply:
:mod:`getgpt.server.upstreams.forwarding` relays what comes back, whatever the kind.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

import msgspec

from ...client.transport import AsyncTransport, Timeouts, open_transport
from ...protocol import envelope
from ...protocol.request import USER_AGENT, encode
from ..chat.request import Chat
from ..config import ServerConfig
from .health import Health
from .redaction import Redaction

if TYPE_CHECKING:
    from ..operations.prometheus import UpstreamSeries

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

    ``name`` is what logs, metrics and ``X-Getgpt-Upstream`` call it; ``url`` its base
    (``.../v1`` for the ``openai`` kind, the server's root for ``getgpt``), ``key`` the API key
    sent as ``Authorization: Bearer``, ``ask_usage`` whether a stream asks for its usage (for
    the token counters; only a kind that can be asked does), ``max_in_flight`` its own cap on
    requests at once (0: none).
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
        name: str,
        url: str,
        *,
        key: str | None,
        timeouts: Timeouts,
        ask_usage: bool = True,
        max_in_flight: int = 0,
        max_idle: int = 100,
    ) -> None:
        self.name = name
        self.base = url
        self.key = key
        #: Its secrets and address, kept out of what a client or a log is told.
        self.redaction = Redaction(url, key)
        #: As a log line names it: its name and its URL, without the credentials the URL may carry
        #: (the operator needs the address; a client is told neither).
        self.logged_as = f"{name} ({self.redaction.shown})"
        self.health = Health(max_in_flight)
        # Where its cooldown is kept in Redis, shared with every process that routes to it: the
        # same name at another URL is another upstream.
        self.shared_key = hashlib.blake2b(f"{name}\0{url}".encode(), digest_size=12).hexdigest()
        #: Retired by a reload: closed once its last request has ended.
        self.retired = False
        #: Its series in /metrics, once the server counts (set by the forwarding backend).
        self.series: UpstreamSeries | None = None
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

    def same(self, name: str, url: str, key: str | None, kind: str, ask_usage: bool) -> bool:
        """Whether a reload's upstream ``name`` is this one, to keep (its state and connections)."""
        return (name, url, key, kind) == (self.name, self.base, self.key, self.kind) and self.ask_usage == (
            ask_usage and self.can_ask_usage
        )

    def probe_path(self) -> str:
        """What a health probe asks for (``GET``): a page that answers without doing work."""
        raise NotImplementedError

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

    def probe_path(self) -> str:
        return self.base_path + "/models"

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

    def probe_path(self) -> str:
        return urlsplit(self._root()).path + "healthz"

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
