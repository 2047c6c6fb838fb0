"""How ``getgpt serve`` runs the app under uvicorn: whom it believes, and what its logs keep out.

:func:`uvicorn_config` is the one place that turns a :class:`~getgpt.server.config.ServerConfig`
into uvicorn's settings, so whatever runs the server (the command, a worker, a test) runs it alike:

- proxy headers (``X-Forwarded-For``/``-Proto``) are believed only from the addresses in
  ``forwarded_allow_ips``; uvicorn's own default believes them from 127.0.0.1, which would let
  anyone behind a local proxy pick their rate-limit bucket per request;
- the access log never shows a query string's values (:class:`QueryRedaction`): a client that
  puts an API key in the URL must not leave it in the log.
"""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from .config import ServerConfig

__all__ = ["QueryRedaction", "uvicorn_config"]

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[redacted]"


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


def uvicorn_config(app: Any, config: ServerConfig, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for ``app`` as ``config`` says; ``options`` are passed on to uvicorn."""
    trusted = list(config.forwarded_allow_ips)
    settings: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "timeout_graceful_shutdown": 5,
        # A burst of as many connections as the server admits streams waits in the accept
        # queue instead of being dropped (and retried by the client's kernel a second later).
        # uvicorn asks for 2,048; the kernel caps whatever is asked at net.core.somaxconn.
        "backlog": max(2048, config.max_streams),
        "proxy_headers": bool(trusted),
        # A list even when empty: given None, uvicorn reads FORWARDED_ALLOW_IPS from the environment.
        "forwarded_allow_ips": trusted,
        **options,
    }
    built = uvicorn.Config(app, **settings)
    redact_access_log()  # after Config, which (re)configures uvicorn's loggers
    return built
