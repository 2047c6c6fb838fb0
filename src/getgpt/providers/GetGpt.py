"""The GetGpt provider, with the module face of gpt4free's freegpt-webui era.

Old code that did ``from g4f.Provider.Providers import GetGpt`` and then called
``GetGpt._create_completion(model=..., messages=..., stream=True)`` runs unchanged against
``from getgpt.providers import GetGpt``. The server is ``GETGPT_BASE_URL``: ``url`` stays the
seed's, whose server is gone, so a call without the variable fails at once saying how to set it.
The time allowed is the call's ``timeout`` keyword, else ``GETGPT_TIMEOUT``, else the client's
(600 s): each read, and the reply's status and headers in all.

Today's g4f (8.x) takes the module too, as ``g4f.client.Client(provider=GetGpt)``: for it the
module also has ``working``, ``default_model``, ``get_dict()`` and ``create_completion``, which
hands the call to :class:`getgpt.integrations.g4f.GetGpt` (g4f is installed when g4f calls it).
"""

from __future__ import annotations

import os
import threading
import typing
from collections.abc import Iterator
from typing import Any

from ..client import DEFAULT_BASE_URL, Client, base_url_from
from ..protocol.errors import ValidationError
from ..protocol.request import PARAMETERS

url = DEFAULT_BASE_URL
model = ["gpt-3.5-turbo"]
supports_stream = True
needs_auth = False
# What g4f 8.x reads from a provider besides the seed's attributes.
working = True
supports_message_history = True
supports_system_message = True
default_model = model[0]
use_stream_timeout = True  # g4f's stream_timeout bounds the wait for each piece
live = 0  # g4f counts a provider's successes and failures here

_clients: dict[tuple[str, float | None], Client] = {}
_lock = threading.Lock()


def _timeout(given: float | None) -> float | None:
    """Seconds: ``given``, else ``GETGPT_TIMEOUT``, else None (the client's own default)."""
    where = "timeout"
    if given is None:
        raw = os.environ.get("GETGPT_TIMEOUT", "").strip()
        if not raw:
            return None
        where = "GETGPT_TIMEOUT"
        try:
            given = float(raw)
        except ValueError:
            raise ValidationError(f"GETGPT_TIMEOUT={raw!r} is not a number of seconds") from None
    if not given > 0:
        raise ValidationError(f"{where} must be a positive number of seconds, not {given!r}")
    return float(given)


def _client(timeout: float | None) -> Client:
    # One pooled client per base URL and timeout, so repeated calls reuse their connections.
    base = base_url_from(None)
    with _lock:
        client = _clients.get((base, timeout))
        if client is None:
            client = Client(base) if timeout is None else Client(base, timeout=timeout)
            _clients[base, timeout] = client
        return client


def _create_completion(
    model: str,
    messages: list,  # type: ignore[type-arg]
    stream: bool,
    *,
    timeout: float | None = None,
    **kwargs: Any,
) -> Iterator[str]:
    """Yield the reply to ``messages`` piece by piece.

    Keyword arguments the protocol knows (``temperature``, ``max_tokens``, ...) are sent; others,
    which g4f passed to every provider alike, are ignored as the original provider did.
    ``timeout`` (else ``GETGPT_TIMEOUT``) bounds each read and the reply's head in all, in seconds.
    """
    params = {k: v for k, v in kwargs.items() if k in PARAMETERS and k not in ("model", "stream")}
    yield from _client(_timeout(timeout)).stream(messages, model=model, stream=stream, **params)


def create_completion(model: str, messages: list, stream: bool = True, **kwargs: Any) -> Iterator[Any]:  # type: ignore[type-arg]
    """g4f 8.x's entry point: the reply as :class:`getgpt.integrations.g4f.GetGpt` gives it."""
    from ..integrations.g4f import GetGpt

    return GetGpt.create_completion(model, messages, stream, **kwargs)


def get_dict() -> dict[str, str]:
    """How g4f 8.x names a provider; the server is read when asked, as calls read it."""
    return {
        "name": "GetGpt",
        "url": base_url_from(os.environ.get("GETGPT_BASE_URL") or url),
        "label": "GetGpt",
    }


_hints = typing.get_type_hints(_create_completion)
_code = _create_completion.__code__
params = f"g4f.Providers.{__name__.rpartition('.')[2]} supports: " + "({})".format(
    ", ".join(f"{name}: {_hints[name].__name__}" for name in _code.co_varnames[: _code.co_argcount])
)
del _hints, _code

__all__ = [
    "_create_completion",
    "create_completion",
    "default_model",
    "get_dict",
    "live",
    "model",
    "needs_auth",
    "params",
    "supports_message_history",
    "supports_stream",
    "supports_system_message",
    "url",
    "use_stream_timeout",
    "working",
]
