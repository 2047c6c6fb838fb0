"""The GetGpt provider, with the module face of gpt4free's freegpt-webui era.

Old code that did ``from g4f.Provider.Providers import GetGpt`` and then called
``GetGpt._create_completion(model=..., messages=..., stream=True)`` runs unchanged against
``from getgpt.providers import GetGpt``. The server is ``GETGPT_BASE_URL`` when set, else ``url``.
"""

from __future__ import annotations

import threading
import typing
from collections.abc import Iterator
from typing import Any

from .._client import DEFAULT_BASE_URL, Client, base_url_from
from ..request import PARAMETERS

url = DEFAULT_BASE_URL
model = ["gpt-3.5-turbo"]
supports_stream = True
needs_auth = False

_clients: dict[str, Client] = {}
_lock = threading.Lock()


def _client() -> Client:
    # One pooled client per base URL, so repeated calls reuse their connections.
    base = base_url_from(None)
    with _lock:
        client = _clients.get(base)
        if client is None:
            client = _clients[base] = Client(base)
        return client


def _create_completion(model: str, messages: list, stream: bool, **kwargs: Any) -> Iterator[str]:  # type: ignore[type-arg]
    """Yield the reply to ``messages`` piece by piece.

    Keyword arguments the protocol knows (``temperature``, ``max_tokens``, ...) are sent; others,
    which g4f passed to every provider alike, are ignored as the original provider did.
    """
    params = {k: v for k, v in kwargs.items() if k in PARAMETERS and k not in ("model", "stream")}
    yield from _client().stream(messages, model=model, stream=stream, **params)


_hints = typing.get_type_hints(_create_completion)
_code = _create_completion.__code__
params = f"g4f.Providers.{__name__.rpartition('.')[2]} supports: " + "({})".format(
    ", ".join(f"{name}: {_hints[name].__name__}" for name in _code.co_varnames[: _code.co_argcount])
)
del _hints, _code

__all__ = ["_create_completion", "model", "needs_auth", "params", "supports_stream", "url"]
