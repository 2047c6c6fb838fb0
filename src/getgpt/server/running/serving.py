"""How ``getgpt serve`` runs the app under uvicorn: its connection bounds, whom it believes, its logs.

:func:`uvicorn_config` is the one place that turns a :class:`~getgpt.server.config.ServerConfig`
into uvicorn's settings, so whatever runs the server (the command, a worker, a test) runs it alike:

- connections go through :class:`~getgpt.server.edge.connections.Connection` in front of uvicorn's
  own protocol (head size and count, head, idle and write timeouts, bytes read ahead, a cap on
  connections), and the app through its :class:`~getgpt.server.edge.connections.AnswerSignal`; the
  cap defaults to what the file-descriptor limit allows (:func:`connection_limit`);

- proxy headers (``X-Forwarded-For``/``-Proto``) are believed only from the addresses in
  ``forwarded_allow_ips``; uvicorn's own default believes them from 127.0.0.1, which would let
  anyone behind a local proxy pick their rate-limit bucket per request;
- the access log never shows a query string's values (:class:`QueryRedaction`): a client that
  puts an API key in the URL must not leave it in the log;
- logs are text or JSON as ``--log-format`` says (:mod:`getgpt.server.operations.logs`).

:func:`tune_garbage_collector` fits CPython's cyclic collector to a process holding thousands of
open streams; ``getgpt serve`` calls it once the app is built.

How many processes run it, and how they drain on SIGTERM, is :mod:`getgpt.server.running.supervisor`.
"""

from __future__ import annotations

import gc
import logging
import math
from typing import Any

import uvicorn

from ...client.transport import without_credentials
from ..config import ServerConfig
from ..edge.connections import ConnectionBounds, Limits
from ..operations.logs import log_config

__all__ = [
    "FD_RESERVE",
    "QueryRedaction",
    "connection_bounds",
    "connection_limit",
    "connection_settings",
    "start_lines",
    "tls_options",
    "tune_garbage_collector",
    "uvicorn_config",
]

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[redacted]"
#: File descriptors kept out of the connection cap: stdio, the listening sockets, the event loop's
#: own, log files, files opened to serve the page, and the connections admitted past the cap to
#: answer /healthz (connections.OVERFLOW).
FD_RESERVE = 64
#: Allocations (net) between two collections of the youngest generation; CPython's default is 700.
#: A server with 1,000 open streams holds several hundred thousand live objects, which every full
#: collection walks while no request is served: with the default, time to first chunk at p99 went
#: from ~2 ms with the collector off to 78-95 ms (bench.concurrency 1000, 1,000 streams opened over
#: 2 s); at 200,000 it was 6 ms, and at 10,000 streams p50/p99 fell from 2.8/11.8 s to 0.7/5.5 s.
GC_YOUNG_THRESHOLD = 200_000
#: Idle upstream connections a forwarding backend keeps (its max_idle / max_keepalive_connections).
UPSTREAM_IDLE = 100


def open_files_limit() -> int | None:
    """This process's soft limit on open files (``ulimit -n``); None where there is none to read."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def connection_limit(config: ServerConfig, open_files: int | None) -> int:
    """The most client connections ``config`` may hold open under a limit of ``open_files``.

    The echo backend needs one descriptor a connection; a forwarding backend two (each reply in
    progress holds an upstream socket) and room for the idle pool of each of its upstreams.
    ``max_connections`` 0 takes all of that; a larger value than it is a startup error, since
    past it ``accept`` fails and the server stops answering even ``/healthz``.
    """
    if open_files is None:
        return config.max_connections or max(config.max_streams, 1024)
    forwarding = config.backend != "echo"
    pools = len(config.routing.upstreams) if config.routing is not None else 1
    spare = open_files - FD_RESERVE - (UPSTREAM_IDLE * pools if forwarding else 0)
    allowed = spare // 2 if forwarding else spare
    if allowed < 1:
        raise ValueError(
            f"the open-files limit (ulimit -n) is {open_files}: too low to serve with the "
            f"{config.backend} backend; raise it"
        )
    if config.max_connections > allowed:
        raise ValueError(
            f"max_connections {config.max_connections} is more than the open-files limit "
            f"(ulimit -n {open_files}) allows with the {config.backend} backend ({allowed}): "
            "raise the limit or lower max_connections"
        )
    return config.max_connections or allowed


class QueryRedaction(logging.Filter):
    """Replaces each value of the query string in uvicorn's access-log lines with ``[redacted]``.

    uvicorn logs ``(client, method, path?query, http version, status)``; the parameter names stay
    (they tell what a client tried), a value or a bare item does not.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            path, _, query = args[2].partition("?")
            items = [
                f"{name}={REDACTED}" if sep else REDACTED
                for name, sep, _ in (item.partition("=") for item in query.split("&"))
            ]
            record.args = (*args[:2], f"{path}?{'&'.join(items)}", *args[3:])
        return True


def redact_access_log() -> None:
    """Put :class:`QueryRedaction` on uvicorn's access logger (once)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, QueryRedaction) for existing in logger.filters):
        logger.addFilter(QueryRedaction())


def connection_bounds(config: ServerConfig) -> ConnectionBounds:
    """The bounds on each connection ``config`` asks for, for one server.

    Raises :class:`ValueError` when the connection cap cannot be kept under the open-files limit.
    """
    limits = Limits(
        max_head_bytes=config.max_head_bytes,
        max_headers=config.max_headers,
        head_timeout=config.head_timeout,
        idle_timeout=config.idle_timeout,
        write_timeout=config.write_timeout,
        max_connections=connection_limit(config, open_files_limit()),
        max_read_ahead=config.max_read_ahead,
    )
    return ConnectionBounds(limits)


def connection_settings(app: Any, config: ServerConfig) -> dict[str, Any]:
    """uvicorn's settings that bound each connection as ``config`` says: the app (``app``, as the
    bounds must run it), ``http``, ``ws`` and ``timeout_keep_alive``; for ``uvicorn.Config(**...)``.

    Raises :class:`ValueError` when the connection cap cannot be kept under the open-files limit.
    """
    bounds = connection_bounds(config)
    prometheus = getattr(getattr(app, "state", None), "prometheus", None)
    if prometheus is not None:  # getgpt's app: /metrics shows what is held read ahead
        bounds.pool.on_ahead = prometheus.read_ahead.inc
    return {
        "app": bounds.app(app),
        "http": bounds.protocol(),
        # No WebSocket route exists; an upgrade request is answered as plain HTTP.
        "ws": "none",
        # uvicorn's own keep-alive timer (after each answer; any byte it is given puts it back)
        # must never close a connection the bounds keep: one waiting for a request, then sending
        # its head, which uvicorn is given only once whole.
        "timeout_keep_alive": math.ceil(config.idle_timeout + config.head_timeout) + 1,
    }


def tune_garbage_collector() -> None:
    """Make the cyclic collector's pauses rare and short in a server process; call it once
    everything long-lived (modules, the app) exists.

    What exists now is moved out of the collector's sight for good (``gc.freeze``: it would be
    walked by every full collection and never freed), and the youngest generation is collected
    after :data:`GC_YOUNG_THRESHOLD` allocations instead of 700. Reference counting still frees
    nearly everything at once; only cycles wait longer, which costs a little memory, not a leak.
    """
    gc.collect()  # what is garbage already is freed, not frozen
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


def tls_options(config: ServerConfig) -> dict[str, str]:
    """uvicorn's TLS settings for ``--tls-certfile`` / ``--tls-keyfile`` (none without them).

    The pair is loaded here once, so a missing file, a key that is not the certificate's or a
    file that is not PEM is a :class:`ValueError` at start, not a worker failing to bind.
    """
    if not (config.tls_certfile and config.tls_keyfile):
        return {}
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            config.tls_certfile, config.tls_keyfile
        )
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cannot serve TLS with --tls-certfile {config.tls_certfile} and --tls-keyfile "
            f"{config.tls_keyfile}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    return {"ssl_certfile": config.tls_certfile, "ssl_keyfile": config.tls_keyfile}


def start_lines(config: ServerConfig, port: int) -> list[str]:
    """What ``getgpt serve`` says once it listens: what answers, and where to point a browser and a
    client (a wildcard address is shown as this machine's loopback one, which a browser can open)."""
    scheme = "https" if config.tls_certfile else "http"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(config.host, config.host)
    base = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/"
    if config.backend == "echo":
        backend = "the echo backend (offline: each reply repeats the last user message)"
    elif config.routing is not None:
        names = ", ".join(entry.name for entry in config.routing.upstreams)
        backend = (
            f"routing among {len(config.routing.upstreams)} upstream(s) of {config.config_file}: {names}"
        )
    else:  # the URL as a log may name it: without the password it may carry
        backend = f"the {config.backend} backend, forwarding to {without_credentials(config.upstream or '')}"
    lines = [
        f"getgpt serve: {backend}",
        f"getgpt serve: the chat page: {base}",
        f"getgpt serve: the OpenAI-compatible API: {base}v1 ; the GetGpt protocol: {base}api/chat/stream",
    ]
    if host != config.host:
        lines[1] += f" (listening on {config.host}: every address of this machine)"
    return lines


def uvicorn_config(app: Any, config: ServerConfig, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for ``app`` as ``config`` says; ``options`` are passed on to uvicorn.

    Raises :class:`ValueError` when the connection cap cannot be kept under the open-files limit.
    """
    trusted = list(config.forwarded_allow_ips)
    settings: dict[str, Any] = {
        **connection_settings(app, config),
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "log_config": log_config(config),
        "lifespan": "on",
        # The drain (supervisor.DrainingServer) ends every stream by --shutdown-grace; this
        # bounds only what is left after it.
        "timeout_graceful_shutdown": 5,
        # A burst of as many connections as the server admits streams waits in the accept
        # queue instead of being dropped (and retried by the client's kernel a second later).
        # uvicorn asks for 2,048; the kernel caps whatever is asked at net.core.somaxconn.
        "backlog": max(2048, config.max_streams),
        "proxy_headers": bool(trusted),
        # A list even when empty: given None, uvicorn reads FORWARDED_ALLOW_IPS from the environment.
        "forwarded_allow_ips": trusted,
        **tls_options(config),
        **options,
    }
    built = uvicorn.Config(**settings)
    redact_access_log()  # after Config, which (re)configures uvicorn's loggers
    return built
