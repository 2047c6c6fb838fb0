"""The server's settings: one dataclass, filled from defaults, then the config file, then
``GETGPT_*`` variables, then flags.

Each setting is declared once, as a :class:`ServerConfig` field made by :func:`setting`; its help
text, choices and parser live in the field's metadata. From that one declaration come the
environment variable ``GETGPT_<NAME>`` (``GETGPT_MAX_STREAMS``, ``GETGPT_ECHO_DELAY``, ...), the
``getgpt serve`` flag ``--<name>`` and its ``--help`` line (:func:`add_flags`, :func:`from_flags`),
and the config file's key of the same name (:mod:`getgpt.server.config_file`). Flags override the
environment, which overrides the file, which overrides the defaults.

The upstreams a gateway routes to, and how, are a :class:`Routing` table: from the config file's
``[[upstreams]]``, ``[routing]`` and ``[models]`` tables, or made from ``--upstream`` alone
(:meth:`ServerConfig.routing_table`).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..protocol import DEFAULT_MODEL

__all__ = [
    "BACKENDS",
    "ENV_PREFIX",
    "FLAG_GROUPS",
    "KINDS",
    "ROUTED",
    "STRATEGIES",
    "Routing",
    "ServerConfig",
    "UpstreamEntry",
    "add_flags",
    "env_name",
    "flag_values",
    "from_flags",
    "setting",
]

BACKENDS = ("echo", "openai", "getgpt")
#: The backend of a server whose config file lists its upstreams (each says its own kind).
ROUTED = "upstreams"
#: The kinds of upstream.
KINDS = ("openai", "getgpt")
#: How one upstream of a model is chosen (getgpt.server.upstreams.strategies).
STRATEGIES = ("least-in-flight", "weighted", "latency")
#: A model name an upstream serves when it serves any.
#: What ``--upstream`` alone calls its one upstream in logs, metrics, ``/healthz``,
#: ``X-Getgpt-Upstream`` and the ledger (never its address, which may be internal).
LONE_UPSTREAM = "upstream"
ANY_MODEL = "*"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")
REDIS_FAILURE = ("open", "closed")
ENV_PREFIX = "GETGPT_"


def _workers(raw: str) -> int:
    """``auto`` (one worker per CPU) or a whole number."""
    if raw.strip().lower() == "auto":
        # The CPUs this process may run on (a container's cpuset), not every CPU of the machine.
        affinity = getattr(os, "sched_getaffinity", None)
        return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    return int(raw)


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    flag: str | None = None,
    env_only: bool = False,
    parse: Callable[[str], Any] | None = None,
    shown: str | None = None,
    repr: bool = True,
    fail_closed: bool = False,
    file_only: bool = False,
) -> Any:
    """A :class:`ServerConfig` field and everything the CLI and the environment need to set it.

    ``flag`` replaces the generated ``--name``; ``env_only`` settings get no flag (a secret on a
    command line shows in ``ps``); ``parse`` reads a variable's or a flag's text (by default, as
    the default's type); ``shown`` is the default as ``--help`` prints it. A tuple setting's flag
    may be repeated, and its variable and each flag hold comma-separated values. A ``fail_closed``
    setting is a defence: its variable, once set, must hold a value -- an empty one (``""``,
    ``","``) is a startup error, never the defence quietly off. A ``file_only`` setting has
    neither a flag nor a variable: only the config file (or code) sets it.
    """
    metadata = {
        "help": help,
        "choices": choices,
        "metavar": metavar,
        "flag": flag,
        "env_only": env_only,
        "parse": parse,
        "shown": shown,
        "fail_closed": fail_closed,
        "file_only": file_only,
    }
    return field(default=default, metadata=metadata, repr=repr)


@dataclass(frozen=True)
class UpstreamEntry:
    """One upstream: an ``[[upstreams]]`` entry of the config file, or ``--upstream``'s."""

    #: Unique; what logs, metrics, ``/healthz`` and ``X-Getgpt-Upstream`` call it.
    name: str
    url: str
    kind: str = "openai"
    #: Sent as ``Authorization: Bearer``; never logged or shown.
    api_key: str | None = field(default=None, repr=False)
    #: The models it serves: each routed name with the upstream's own name for it (None: the
    #: same); ``("*", None)`` serves any model, as asked.
    models: tuple[tuple[str, str | None], ...] = ((ANY_MODEL, None),)
    weight: int = 1
    #: Requests it may answer at once; 0: no cap of its own.
    max_in_flight: int = 0


@dataclass(frozen=True)
class Routing:
    """The upstreams and how a request is routed among them (the config file's tables)."""

    upstreams: tuple[UpstreamEntry, ...]
    strategy: str = "least-in-flight"
    #: Tries a request may make across the upstreams of one model (each fallback model as many again).
    attempts: int = 3
    #: Seconds a failing upstream rests (an upstream's Retry-After wins); 0: never rested.
    cooldown: float = 30.0
    #: Consecutive failures that cool an upstream.
    failures_to_cool: int = 3
    #: Seconds between probes of a cooled upstream; 0: none (it is back when its cooldown ends).
    health_interval: float = 10.0
    #: A client's model name -> the routed name.
    aliases: tuple[tuple[str, str], ...] = ()
    #: A model -> the models to try, in order, when every upstream of it failed.
    fallbacks: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass
class ServerConfig:
    """Settings of :func:`getgpt.server.create_app` and ``getgpt serve``."""

    host: str = setting("127.0.0.1", "address to listen on (this machine only unless told)", metavar="ADDR")
    port: int = setting(8000, "port to listen on", metavar="N")
    backend: str = setting(
        "echo",
        "what answers: echo (offline), openai (any OpenAI-compatible /v1) or getgpt (chaining)",
        choices=BACKENDS,
    )
    upstream: str | None = setting(
        None, "the upstream's base URL, for the openai (.../v1) and getgpt backends", metavar="URL"
    )
    upstream_key_env: str | None = setting(
        None,
        "name of the environment variable holding the upstream's API key (never the key)",
        metavar="NAME",
    )
    upstream_model: str | None = setting(
        None, "model name sent upstream instead of the one the client asked for", metavar="NAME"
    )
    model_aliases: tuple[str, ...] = setting(
        (),
        "ALIAS=NAME: clients may ask for model ALIAS, the upstream gets NAME; GET /v1/models lists ALIAS "
        "(repeatable)",
        flag="--model-alias",
        metavar="ALIAS=NAME",
    )
    models_cache_ttl: float = setting(
        60.0, "seconds GET /v1/models answers from the upstream's list before asking again", metavar="S"
    )
    upstream_usage: bool = setting(
        True,
        "ask the upstream for the usage of every stream, for the token counters; the usage chunk "
        "reaches only clients that asked for it (false: for an upstream that refuses stream_options)",
        metavar="BOOL",
    )
    upstream_connect_timeout: float = setting(5.0, "seconds to wait for the upstream to connect", metavar="S")
    upstream_timeout: float = setting(600.0, "seconds to wait for each read from the upstream", metavar="S")
    upstream_head_timeout: float = setting(
        120.0,
        "seconds from sending a request upstream to its reply's status and headers, however they "
        "trickle in (raise it for an upstream that loads a model before it answers)",
        metavar="S",
    )
    upstream_max_duration: float = setting(
        3600.0,
        "seconds an upstream reply may take in all, from the request to its last byte; an upstream "
        "still sending then is cut off (an error event after the partial reply)",
        metavar="S",
    )
    max_body_bytes: int = setting(
        32 << 20,
        "largest request body accepted, in bytes (413 beyond): a 20 MB image as base64 fits",
        metavar="N",
        shown="32 MiB",
    )
    body_budget: int = setting(
        256 << 20,
        "bytes of request bodies held at once, each from its first byte read until its request is "
        "answered and counted as it decodes (503 server_busy beyond); at least --max-body-bytes",
        metavar="N",
        shown="256 MiB",
    )
    max_messages: int = setting(10_000, "most messages accepted in one request", metavar="N")
    whole_reply_budget: int = setting(
        128 << 20,
        "bytes of whole (non-streamed) upstream replies held at once, by all requests together; "
        "a reply that would hold more is refused (503 server_busy)",
        metavar="N",
        shown="128 MiB",
    )
    max_streams: int = setting(4096, "most chat requests answered at once (503 beyond)", metavar="N")
    # Bytes waiting to be written to clients that read slower than their replies come; past them
    # the backend (and the upstream read) waits: getgpt.server.chat.pump.
    stream_buffer_bytes: int = setting(
        256 << 10,
        "bytes one reply may hold for a client that reads slower than the reply comes; past it the "
        "backend (the upstream read) waits for the client",
        metavar="N",
        shown="256 KiB",
    )
    write_budget_bytes: int = setting(
        64 << 20,
        "bytes all replies together may hold for clients that read slowly (per worker); past it a "
        "reply holding any waits for its client, while replies to clients that read go on",
        metavar="N",
        shown="64 MiB",
    )
    body_timeout: float = setting(10.0, "seconds allowed to receive a request body (408 beyond)", metavar="S")
    # Bounds on connections, kept by getgpt.server.edge.connections (getgpt serve only).
    max_connections: int = setting(
        0,
        "most client connections open at once: a newcomer closes the one waiting longest for a "
        "request, or gets 503 (but /healthz) when all are busy; 0: what ulimit -n allows",
        metavar="N",
        shown="from ulimit -n",
    )
    max_head_bytes: int = setting(
        32 << 10,
        "largest request head (request line and headers), in bytes (431 beyond)",
        metavar="N",
        shown="32 KiB",
    )
    max_headers: int = setting(100, "most header lines in one request (431 beyond)", metavar="N")
    max_read_ahead: int = setting(
        64 << 10,
        "bytes a client may send past the request being answered (pipelined requests), held "
        "unparsed; the socket is not read past them until the answer is done",
        metavar="N",
        shown="64 KiB",
    )
    head_timeout: float = setting(
        10.0, "seconds for a request's head to arrive once it has begun (408 beyond)", metavar="S"
    )
    idle_timeout: float = setting(
        5.0,
        "seconds a connection may wait for a request, new or kept alive, before it is closed",
        metavar="S",
    )
    write_timeout: float = setting(
        30.0,
        "seconds a client may leave the server's writes unread before its connection is dropped "
        "(a stream's backend is then stopped and its slot freed)",
        metavar="S",
    )
    echo_delay: float = setting(0.0, "echo backend: seconds between pieces", metavar="S")
    echo_piece_chars: int = setting(4, "echo backend: characters in each piece", metavar="N")
    models: tuple[str, ...] = setting(
        (DEFAULT_MODEL,), "a model name GET /v1/models lists (repeatable)", flag="--model", metavar="NAME"
    )
    # The defences below are all off by default; see getgpt.server.admission.security.
    api_keys: tuple[str, ...] = setting(
        (),
        "keys the chat endpoints accept as 'Authorization: Bearer <key>', comma-separated; none: no key",
        env_only=True,
        repr=False,
        fail_closed=True,
    )
    forwarded_allow_ips: tuple[str, ...] = setting(
        (),
        "believe X-Forwarded-For/-Proto only from these proxy addresses or networks (repeatable, "
        "comma-separated; '*': any); none: the headers are ignored and the peer's address is the client",
        metavar="ADDR",
    )
    cors_origins: tuple[str, ...] = setting(
        (),
        "let browser pages on ORIGIN call the API (repeatable); none: CORS off",
        flag="--cors-origin",
        metavar="ORIGIN",
    )
    rate_limit: float = setting(
        0.0, "chat requests a minute per client (its API key, else its IP); 0: no limit", metavar="N"
    )
    rate_burst: int = setting(
        0, "requests a client may save up and send at once (0: a tenth of a minute's worth)", metavar="N"
    )
    replay_window: float = setting(
        0.0, "refuse a request uuid seen in the last S seconds; 0: off", metavar="S"
    )
    log_level: str = setting("info", "log level", choices=LOG_LEVELS)
    # Operations: several processes, state shared between them, drain, metrics, logs; see docs/deploy.md.
    workers: int = setting(
        1,
        "worker processes sharing the port, each with its own socket (SO_REUSEPORT); auto: one per CPU. "
        "--max-streams applies to each worker",
        metavar="N|auto",
        parse=_workers,
    )
    accept_queues: int = setting(
        0,
        "listening sockets per worker, each with its own accept queue (SO_REUSEPORT); "
        "0: enough queue for --max-streams connections at the kernel's cap (net.core.somaxconn)",
        metavar="N",
    )
    redis_url: str | None = setting(
        None,
        "Redis holding the rate limits and the replay guard for every worker and replica "
        "(redis://host:6379/0); none: each process keeps its own",
        flag="--redis",
        metavar="URL",
        repr=False,
    )
    redis_timeout: float = setting(
        0.25,
        "seconds a Redis command may take before Redis counts as down (--redis-failure decides then); "
        "a request waits at most this on it",
        metavar="S",
    )
    redis_failure: str = setting(
        "open",
        "while Redis is unreachable: open (each process limits and guards on its own) or closed "
        "(chat requests get 503)",
        choices=REDIS_FAILURE,
    )
    shutdown_grace: float = setting(
        30.0,
        "on SIGTERM, seconds streams in flight may run on before they end with an error event",
        metavar="S",
    )
    metrics_key: str | None = setting(
        None,
        "key GET /metrics needs as 'Authorization: Bearer <key>'; none: /metrics is open",
        env_only=True,
        repr=False,
        fail_closed=True,
    )
    log_format: str = setting(
        "text", "log lines as text, or one JSON object each (with the request id)", choices=LOG_FORMATS
    )
    # Many upstreams (getgpt.server.upstreams): the file's tables, and what answers say of them.
    config_file: str | None = setting(
        None,
        "a TOML file of settings (the names of these flags) and of upstreams to route among; "
        "flags and variables override it; SIGHUP reads it again",
        flag="--config",
        metavar="FILE",
    )
    expose_upstream: bool = setting(
        True, "name the upstream that answered in the X-Getgpt-Upstream response header", metavar="BOOL"
    )
    routing: Routing | None = setting(  # noqa: RUF009 -- a field() with its metadata, as every setting
        None, "the upstreams and how requests are routed among them", file_only=True, repr=False
    )
    # TLS served by getgpt serve itself (uvicorn's ssl_certfile / ssl_keyfile), for a server with no
    # reverse proxy in front.
    tls_certfile: str | None = setting(
        None, "serve HTTPS with this certificate chain (PEM); needs --tls-keyfile", metavar="FILE"
    )
    tls_keyfile: str | None = setting(
        None, "the private key (PEM) of --tls-certfile's certificate", metavar="FILE", repr=False
    )
    # Keys, quotas and the usage ledger (getgpt.server.admission.keys); off without db.
    db: str | None = setting(
        None,
        "the key store and usage ledger: a SQLite file PATH (created on first use), 'default' (getgpt.db "
        "in the user's data directory) or a postgresql:// URL shared by replicas; every request then "
        "needs a key; none: no store",
        metavar="PATH|URL",
        repr=False,
    )
    db_failure: str = setting(
        "open",
        "while the database is unreachable: open (keys in the cache keep working, the ledger waits in "
        "memory) or closed (the chat endpoints and forwarded routes get 503)",
        choices=REDIS_FAILURE,
    )
    key_cache_ttl: float = setting(
        2.0,
        "seconds between reads of changed keys and spend from the database: how soon a revocation "
        "reaches this process without --redis (with it, at once)",
        metavar="S",
    )
    admin_key: str | None = setting(
        None,
        "key the admin API (/admin/keys, /admin/usage) needs as 'Authorization: Bearer <key>'; "
        "none: the admin API is off",
        env_only=True,
        repr=False,
        fail_closed=True,
    )

    @property
    def aliases(self) -> dict[str, str]:
        """``model_aliases`` as a mapping: the name a client asks for -> the upstream's name."""
        return {
            name.strip(): target.strip()
            for name, _, target in (alias.partition("=") for alias in self.model_aliases)
        }

    def routing_table(self) -> Routing | None:
        """The upstreams to route among: the config file's, or ``--upstream``'s one (None for echo).

        ``--upstream`` alone routes as before routing existed: one upstream serving any model
        (``--upstream-model`` sent instead of the client's), one try, never cooled.
        """
        if self.routing is not None:
            return self.routing
        if self.backend == "echo" or self.upstream is None:
            return None
        key = None
        if self.upstream_key_env:
            key = os.environ.get(self.upstream_key_env)
            if not key:
                raise ValueError(f"the environment variable {self.upstream_key_env} holds no API key")
        entry = UpstreamEntry(
            LONE_UPSTREAM, self.upstream, self.backend, key, models=((ANY_MODEL, self.upstream_model),)
        )
        return Routing(
            (entry,), attempts=1, cooldown=0.0, health_interval=0.0, aliases=tuple(self.aliases.items())
        )

    def __post_init__(self) -> None:
        if self.routing is not None:
            if self.backend != ROUTED:
                raise ValueError(f"a routing table needs backend {ROUTED!r}, not {self.backend!r}")
        elif self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.backend not in ("echo", ROUTED) and not self.upstream:
            raise ValueError(f"the {self.backend} backend needs an upstream URL (--upstream)")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        for name in (
            "max_body_bytes",
            "max_messages",
            "max_streams",
            "stream_buffer_bytes",
            "write_budget_bytes",
            "echo_piece_chars",
            "max_headers",
            "max_read_ahead",
            "workers",
            "whole_reply_budget",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_connections < 0:
            raise ValueError(f"max_connections must be 0 (automatic) or more, not {self.max_connections}")
        if self.body_budget < self.max_body_bytes:
            raise ValueError(
                f"body_budget ({self.body_budget}) must be at least max_body_bytes ({self.max_body_bytes}): "
                "a body of the largest size accepted must fit in it"
            )
        if self.max_head_bytes < 1024:
            raise ValueError(f"max_head_bytes must be at least 1024, not {self.max_head_bytes}")
        for name in (
            "body_timeout",
            "upstream_timeout",
            "upstream_connect_timeout",
            "upstream_head_timeout",
            "upstream_max_duration",
            "head_timeout",
            "idle_timeout",
            "write_timeout",
            "redis_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {getattr(self, name)}")
        for name, allowed in (
            ("log_format", LOG_FORMATS),
            ("redis_failure", REDIS_FAILURE),
            ("db_failure", REDIS_FAILURE),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        if not 0 <= self.accept_queues <= 64:
            raise ValueError(f"accept_queues must be 0..64, not {self.accept_queues}")
        if self.shutdown_grace < 0:
            raise ValueError(f"shutdown_grace must not be negative, not {self.shutdown_grace}")
        if self.db is not None and not self.db.strip():
            raise ValueError(
                "db is empty: give a file path, 'default' or a postgresql:// URL, or leave it unset"
            )
        if not self.key_cache_ttl > 0:
            raise ValueError(f"key_cache_ttl must be a positive number of seconds, not {self.key_cache_ttl}")
        if self.admin_key is not None and not self.admin_key.strip():
            raise ValueError("admin_key is empty: leave it unset to turn the admin API off")
        if self.admin_key is not None and self.db is None:
            raise ValueError("admin_key needs db: the admin API manages the store's keys")
        if self.metrics_key is not None and not self.metrics_key.strip():
            raise ValueError("metrics_key is empty: leave it unset for an open /metrics")
        if self.echo_delay < 0:
            raise ValueError(f"echo_delay must not be negative, not {self.echo_delay}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, not {self.port}")
        if isinstance(self.models, str):
            self.models = (self.models,)
        if isinstance(self.model_aliases, str):
            self.model_aliases = (self.model_aliases,)
        for alias in self.model_aliases:
            name, _, target = alias.partition("=")
            if not name.strip() or not target.strip():
                raise ValueError(f"a model alias must be ALIAS=NAME, not {alias!r}")
        if self.models_cache_ttl < 0:
            raise ValueError(f"models_cache_ttl must not be negative, not {self.models_cache_ttl}")
        if not self.models:
            raise ValueError("models must name at least one model")
        for address in self.forwarded_allow_ips:
            _check_address(address)
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError(
                "tls_certfile and tls_keyfile go together: "
                "give both (--tls-certfile, --tls-keyfile), or neither"
            )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        base: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> ServerConfig:
        """Defaults, replaced by ``base`` (the config file's values), replaced by ``GETGPT_*``
        variables, replaced by ``overrides`` that are not None.

        A variable that cannot be read as its field's type raises :class:`ValueError` naming it.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = dict(base or {})
        for item in dataclasses.fields(cls):
            if item.metadata.get("file_only"):
                continue
            name = env_name(item)
            raw = env.get(name)
            if raw is not None and item.metadata.get("fail_closed"):
                values[item.name] = _read_guarded(item, raw, name)
            elif raw is not None and raw.strip():
                values[item.name] = _read(item, raw.strip(), name)
        unknown = overrides.keys() - {item.name for item in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


def _check_address(address: str) -> None:
    if address == "*":
        return
    try:
        ipaddress.ip_network(address, strict=False)
    except ValueError:
        raise ValueError(
            f"forwarded_allow_ips: {address!r} is not an IP address or network (or '*')"
        ) from None


def env_name(item: dataclasses.Field[Any]) -> str:
    """The environment variable that sets ``item``."""
    return ENV_PREFIX + item.name.upper()


def _read(item: dataclasses.Field[Any], raw: str, where: str) -> Any:
    """Read ``raw`` as ``item``'s value: its own parser, or the type of its default."""
    parse = item.metadata.get("parse")
    default = item.default
    try:
        if parse is not None:
            return parse(raw)
        if isinstance(default, bool):
            return _boolean(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as exc:
        if parse is None and isinstance(default, bool):
            raise ValueError(f"{where}={raw!r} is not a boolean: {exc}") from None
        kind = type(default).__name__ if parse is None else "value"
        raise ValueError(f"{where}={raw!r} is not a valid {kind}{_detail(exc, parse)}") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean(raw: str) -> bool:
    """``true`` or ``false`` (or 1/0, yes/no, on/off, in any case); anything else is refused rather
    than read as false: ``GETGPT_UPSTREAM_USAGE=maybe`` must not quietly mean "off"."""
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true or false ({'/'.join(_TRUE)} or {'/'.join(_FALSE)})")


def _read_guarded(item: dataclasses.Field[Any], raw: str, where: str) -> Any:
    # A defence switched on by mistake with nothing in it (GETGPT_API_KEYS=",", or a template's
    # empty ${KEYS}) would otherwise read as "not set" and run the server open.
    value = _read(item, raw.strip(), where) if raw.strip() else None
    if not value:
        raise ValueError(f"{where} is set but holds no value ({raw!r}): give one, or unset it")
    return value


def _detail(exc: ValueError, parse: object) -> str:
    return f": {exc}" if parse is not None and str(exc) else ""


def _flag(item: dataclasses.Field[Any]) -> str:
    return str(item.metadata.get("flag") or "--" + item.name.replace("_", "-"))


def _shown(item: dataclasses.Field[Any]) -> str:
    shown = item.metadata.get("shown")
    if shown is not None:
        return str(shown)
    default = item.default
    if default is None or default == ():
        return "none"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple):
        return ", ".join(default)
    return f"{default:g}" if isinstance(default, float) else str(default)


#: ``getgpt serve --help`` in groups: each title, and the settings it holds in their order. A
#: setting left out of every group is shown under :data:`OTHER_FLAGS` (tests/cli/test_serve.py
#: asks that none is).
FLAG_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("where it listens", ("host", "port", "tls_certfile", "tls_keyfile", "workers", "accept_queues")),
    ("the config file", ("config_file",)),
    (
        "the backend: what answers",
        (
            "backend",
            "upstream",
            "upstream_key_env",
            "upstream_model",
            "model_aliases",
            "models",
            "models_cache_ttl",
            "upstream_usage",
            "expose_upstream",
            "echo_delay",
            "echo_piece_chars",
        ),
    ),
    (
        "time bounds on the upstream",
        ("upstream_connect_timeout", "upstream_timeout", "upstream_head_timeout", "upstream_max_duration"),
    ),
    ("limits on requests", ("max_body_bytes", "body_timeout", "max_messages", "max_streams")),
    (
        "memory budgets, shared by every request",
        ("body_budget", "stream_buffer_bytes", "write_budget_bytes", "whole_reply_budget"),
    ),
    (
        "limits on connections",
        (
            "max_connections",
            "max_head_bytes",
            "max_headers",
            "max_read_ahead",
            "head_timeout",
            "idle_timeout",
            "write_timeout",
        ),
    ),
    ("defences", ("forwarded_allow_ips", "cors_origins", "rate_limit", "rate_burst", "replay_window")),
    ("several processes and replicas", ("redis_url", "redis_timeout", "redis_failure", "shutdown_grace")),
    ("keys, quotas and the usage ledger", ("db", "db_failure", "key_cache_ttl")),
    ("logs", ("log_level", "log_format")),
)
OTHER_FLAGS = "other settings"


def add_flags(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A flag for every setting that may be given on a command line, with its help line, in the
    groups of :data:`FLAG_GROUPS`; the groups by title (to add more flags to one)."""
    fields = {
        item.name: item
        for item in dataclasses.fields(ServerConfig)
        if not item.metadata.get("env_only") and not item.metadata.get("file_only")
    }
    grouped = {name for _, names in FLAG_GROUPS for name in names}
    layout = [*FLAG_GROUPS, (OTHER_FLAGS, tuple(name for name in fields if name not in grouped))]
    groups: dict[str, Any] = {}
    for title, names in layout:
        present = [fields[name] for name in names if name in fields]
        if not present:
            continue
        group = groups[title] = parser.add_argument_group(title)
        for item in present:
            _add_flag(group, item)
    return groups


def _add_flag(group: Any, item: dataclasses.Field[Any]) -> None:
    meta = item.metadata
    options: dict[str, Any] = {
        "dest": item.name,
        "default": None,
        "metavar": meta.get("metavar"),
        "choices": meta.get("choices"),
        "help": f"{meta['help']} (default: {_shown(item)}; {env_name(item)})",
    }
    if isinstance(item.default, tuple):
        options["action"] = "append"
    else:
        options["type"] = _flag_type(item)
    group.add_argument(_flag(item), **options)


def _flag_type(item: dataclasses.Field[Any]) -> Callable[[str], Any]:
    def read(raw: str) -> Any:
        try:
            return _read(item, raw, _flag(item))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return read


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags in ``args`` (None for those not given), by field name."""
    overrides: dict[str, Any] = {}
    for item in dataclasses.fields(ServerConfig):
        if item.metadata.get("file_only"):
            continue
        value = getattr(args, item.name, None)
        if isinstance(value, list):
            value = tuple(part.strip() for given in value for part in given.split(",") if part.strip())
        overrides[item.name] = value
    return overrides


def from_flags(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """The settings: defaults, then ``environ`` (``os.environ``), then the flags given in ``args``
    (the config file too: :func:`getgpt.server.config_file.load_settings`)."""
    return ServerConfig.from_env(environ, **flag_values(args))
