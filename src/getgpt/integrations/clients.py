"""Where the integrations get their clients.

A framework hands each call its own settings (a base URL, an API key, a timeout); the clients
behind them are made here. Synchronous calls share one pooled :class:`~getgpt.Client` per
distinct setting, so repeated calls reuse their connections; an :class:`~getgpt.AsyncClient`
holds connections of one event loop, and frameworks run calls on loops they make and close
(g4f's synchronous path, LiteLLM's, pytest's), so every async call gets its own, closed after it.
A :class:`Call` is one framework call sorted into those settings and the request, and opens its
reply from the right client.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from ..client import AsyncChatStream, AsyncClient, ChatStream, Client, Messages, base_url_from

__all__ = [
    "API_KEY_ENV",
    "AsyncClient",
    "Call",
    "Client",
    "async_client",
    "client_options",
    "sync_client",
]

#: The variable an integration reads an API key from when none is given.
API_KEY_ENV = "GETGPT_API_KEY"
# Distinct settings seen in one process are few; the bound keeps a stream of per-call keys from
# growing the table without end. A client dropped from it is not closed, since another thread may
# still be reading a reply through it: the garbage collector closes its connections.
_MAX_CLIENTS = 64

_clients: OrderedDict[tuple[Any, ...], Client] = OrderedDict()
_lock = threading.Lock()


def client_options(
    *,
    api_key: str | None = None,
    timeout: float | httpx.Timeout | None = None,
    max_retries: int | None = None,
    proxy: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The client's keyword arguments for a framework's settings; ``None`` means the default.

    An API key, given or from ``GETGPT_API_KEY``, is sent as ``Authorization: Bearer`` (what
    ``getgpt serve`` checks when it has ``GETGPT_API_KEYS``); ``headers`` go with every request.
    """
    options: dict[str, Any] = {}
    sent = dict(headers or {})
    key = api_key or os.environ.get(API_KEY_ENV)
    if key:
        sent["Authorization"] = f"Bearer {key}"
    if sent:
        options["headers"] = sent
    if timeout is not None:
        options["timeout"] = timeout if isinstance(timeout, httpx.Timeout) else float(timeout)
    if max_retries is not None:
        options["max_retries"] = int(max_retries)
    if proxy:
        options["proxy"] = proxy
    return options


def _key(base_url: str | None, options: dict[str, Any]) -> tuple[Any, ...]:
    headers = tuple(sorted(options.get("headers", {}).items()))
    rest = tuple(sorted((k, repr(v)) for k, v in options.items() if k != "headers"))
    return (base_url_from(base_url), headers, rest)


def sync_client(base_url: str | None = None, **options: Any) -> Client:
    """The shared :class:`~getgpt.Client` for these settings."""
    key = _key(base_url, options)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = Client(base_url_from(base_url), **options)
            if len(_clients) > _MAX_CLIENTS:
                _clients.popitem(last=False)
        else:
            _clients.move_to_end(key)
        return client


def async_client(base_url: str | None = None, **options: Any) -> AsyncClient:
    """A new :class:`~getgpt.AsyncClient` for one call; use it in ``async with``."""
    return AsyncClient(base_url_from(base_url), **options)


@dataclass
class Call:
    """One framework call, sorted: where to send it, the client's options, the request's
    parameters, and the stop sequences to apply on this side (see :mod:`.handover`)."""

    base_url: str | None
    options: dict[str, Any]
    params: dict[str, Any]
    stop: Any

    def stream(self, messages: Messages) -> ChatStream:
        """The reply, from the shared client for these settings; use it in ``with``."""
        return sync_client(self.base_url, **self.options).stream(messages, **self.params)

    @asynccontextmanager
    async def astream(self, messages: Messages) -> AsyncIterator[AsyncChatStream]:
        """The reply, from a client of its own that is closed with it."""
        async with (
            async_client(self.base_url, **self.options) as client,
            client.stream(messages, **self.params) as reply,
        ):
            yield reply
