"""Reading a request body with limits: its content type, its size (enforced while reading), its time."""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope

from ..api_error import ApiError
from .scope import header

__all__ = ["ClientGone", "read_json_body"]


class ClientGone(Exception):
    """The client disconnected before the body arrived: there is no one to answer."""


# asyncio.timeout (3.11+) times the read in the request's own task; wait_for would start another.
_timeout = getattr(asyncio, "timeout", None)


def _check_type(scope: Scope) -> None:
    kind = (header(scope, b"content-type") or b"").partition(b";")[0].strip().lower()
    if kind != b"application/json":
        sent = kind.decode("latin-1")[:100] or "none"
        raise ApiError(
            415,
            f"the request body must be JSON (Content-Type: application/json), not {sent}",
            code="unsupported_media_type",
        )


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes", code="body_too_large")


async def _read(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def read_json_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The body of a JSON request, or an :class:`ApiError` (415, 413, 408), or :class:`ClientGone`.

    After an :class:`ApiError` the rest of the body is unread: the response must close the connection.
    """
    _check_type(scope)
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    try:
        if _timeout is None:
            return await asyncio.wait_for(_read(receive, limit), timeout)
        async with _timeout(timeout):
            return await _read(receive, limit)
    except asyncio.TimeoutError:
        raise ApiError(
            408, f"the request body did not arrive within {timeout:g} seconds", code="body_timeout"
        ) from None
