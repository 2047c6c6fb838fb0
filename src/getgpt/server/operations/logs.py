"""The server's log lines: uvicorn's text format, or one JSON object a line; and the request id.

Every HTTP request gets an id: the client's ``X-Request-Id`` when it sent a usable one (1 to 128
visible ASCII characters), else a fresh random one. The app returns it in ``X-Request-Id`` and
keeps it in :data:`REQUEST_ID` while the request is answered, so every log line written meanwhile
-- the access line included, which uvicorn writes from inside the app's ``send`` -- carries it.

The access line of a request an upstream answered names it: ``upstream=NAME`` at the end of a
text line, an ``upstream`` field of a JSON one (:data:`UPSTREAM`, set by the app when the
response begins, which is when uvicorn writes the line).

Message text never reaches a log line at INFO or above: the server logs at INFO only what uvicorn
logs (method, path, status) and its own events, which name no message content.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import re
import secrets
import time
from typing import Any

import msgspec

from ..config import ServerConfig

__all__ = ["REQUEST_ID", "UPSTREAM", "JsonFormatter", "UpstreamField", "log_config", "request_id"]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("getgpt_request_id", default=None)
#: The upstream answering the request being answered (its name), for the access line.
UPSTREAM: contextvars.ContextVar[str | None] = contextvars.ContextVar("getgpt_upstream", default=None)

_USABLE_ID = re.compile(rb"[\x21-\x7e]{1,128}")
_encode = msgspec.json.Encoder().encode
# A made id is this process's random half and a count: unique across processes and restarts,
# and a tenth of the cost of 16 fresh random bytes per request.
_PROCESS_HALF = secrets.token_hex(8)
_count = itertools.count(1)


def request_id(given: bytes | None) -> bytes:
    """The id for a request that sent ``given`` as its ``X-Request-Id`` (or nothing): 32 hex digits."""
    if given is not None and _USABLE_ID.fullmatch(given):
        return given
    return f"{_PROCESS_HALF}{next(_count):016x}".encode()


class UpstreamField(logging.Filter):
    """Gives each access line the upstream that answered: ``record.upstream`` (its name or None)
    and ``record.upstream_shown`` (`` upstream=NAME``, or nothing), for the text format."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = UPSTREAM.get()
        record.upstream = name
        record.upstream_shown = f" upstream={name}" if name else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the request id when there is one.

    uvicorn's access lines also give the client, method, path (without its query string, which
    may hold a key), HTTP version and status as fields of their own.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            line.update(
                {
                    "message": "request",
                    "client": client,
                    "method": method,
                    "path": str(path).split("?", 1)[0],
                    "http_version": version,
                    "status": status,
                }
            )
            upstream = getattr(record, "upstream", None)
            if upstream is not None:
                line["upstream"] = upstream
        else:
            line["message"] = record.getMessage()
        rid = REQUEST_ID.get()
        if rid is not None:
            line["request_id"] = rid
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return _encode(line).decode()


def log_config(config: ServerConfig) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for uvicorn and getgpt's loggers, as ``config`` asks."""
    level = config.log_level.upper()
    if config.log_format == "json":
        formatters: dict[str, Any] = {
            "default": {"()": "getgpt.server.operations.logs.JsonFormatter"},
            "access": {"()": "getgpt.server.operations.logs.JsonFormatter"},
        }
    else:
        formatters = {
            "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"},
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
                "%(upstream_shown)s",
            },
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["upstream"],
            },
        },
        "filters": {"upstream": {"()": "getgpt.server.operations.logs.UpstreamField"}},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
            "getgpt": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
