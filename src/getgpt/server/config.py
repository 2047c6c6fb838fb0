"""The server's settings: one dataclass, filled from defaults, then ``GETGPT_*`` variables, then flags.

Every field ``name`` can be set by the environment variable ``GETGPT_<NAME>`` (``GETGPT_MAX_STREAMS``,
``GETGPT_ECHO_DELAY``, ...); the CLI's flags override the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BACKENDS", "ENV_PREFIX", "ServerConfig"]

BACKENDS = ("echo", "openai", "getgpt")
ENV_PREFIX = "GETGPT_"


@dataclass
class ServerConfig:
    """Settings of :func:`getgpt.server.create_app` and ``getgpt serve``."""

    #: Where ``getgpt serve`` listens. Loopback unless asked otherwise.
    host: str = "127.0.0.1"
    port: int = 8000
    #: What answers: ``echo`` (offline), ``openai`` (any OpenAI-compatible /v1) or ``getgpt`` (chaining).
    backend: str = "echo"
    #: The upstream's base URL, for the ``openai`` (``.../v1``) and ``getgpt`` backends.
    upstream: str | None = None
    #: Name of the environment variable that holds the upstream's API key (never the key itself).
    upstream_key_env: str | None = None
    #: Model name sent upstream instead of the one the client asked for.
    upstream_model: str | None = None
    #: Seconds to wait for the upstream to connect (the read timeout is ``upstream_timeout``).
    upstream_connect_timeout: float = 5.0
    upstream_timeout: float = 600.0
    #: Largest request body accepted, in bytes; larger ones get 413 while still being read.
    max_body_bytes: int = 1 << 20
    #: Most messages accepted in one request.
    max_messages: int = 1000
    #: Most chat requests served at once; more get 503 with Retry-After.
    max_streams: int = 4096
    #: Seconds allowed to receive the whole request body; slower ones get 408.
    body_timeout: float = 10.0
    #: Seconds the echo backend sleeps between pieces (0: as fast as it can).
    echo_delay: float = 0.0
    #: Characters in each piece the echo backend sends.
    echo_piece_chars: int = 4
    #: Names listed by ``GET /v1/models``.
    models: tuple[str, ...] = field(default=("gpt-3.5-turbo",))
    # The defences below are all off by default; see getgpt.server.security.
    #: Keys the chat endpoints accept as ``Authorization: Bearer <key>``; empty: no key needed.
    #: Set them with ``GETGPT_API_KEYS`` (comma-separated), never on a command line.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Browser origins allowed to call the API (CORS); empty: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    #: Chat requests a minute per client (its API key, else its IP address); 0: no limit.
    rate_limit: float = 0.0
    #: Requests a client may save up and send at once (0: a tenth of a minute's worth, at least 1).
    rate_burst: int = 0
    #: Seconds a request's ``uuid`` is remembered so that a replay of it is refused; 0: off.
    replay_window: float = 0.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.backend != "echo" and not self.upstream:
            raise ValueError(f"the {self.backend} backend needs an upstream URL (--upstream)")
        for name in ("max_body_bytes", "max_messages", "max_streams", "echo_piece_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("body_timeout", "upstream_timeout", "upstream_connect_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {getattr(self, name)}")
        if self.echo_delay < 0:
            raise ValueError(f"echo_delay must not be negative, not {self.echo_delay}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, not {self.port}")
        if isinstance(self.models, str):
            self.models = (self.models,)
        if not self.models:
            raise ValueError("models must name at least one model")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, replaced by ``GETGPT_*`` variables, replaced by ``overrides`` that are not None.

        A variable that cannot be read as its field's type raises :class:`ValueError` naming it.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            name = ENV_PREFIX + item.name.upper()
            raw = env.get(name)
            if raw is not None and raw.strip():
                values[item.name] = _convert(name, raw.strip(), item.default)
        unknown = overrides.keys() - {item.name for item in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


def _convert(name: str, raw: str, default: Any) -> Any:
    """Read ``raw`` as the type of ``default`` (fields without a typed default are strings)."""
    try:
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {type(default).__name__}") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw
