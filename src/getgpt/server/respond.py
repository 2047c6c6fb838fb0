"""Plain ASGI responses for the chat endpoints, which run without Starlette's wrappers."""

from __future__ import annotations

from starlette.types import Send

from .errors import ApiError, error_body

__all__ = ["JSON_HEADERS", "STREAM_HEADERS", "send_error", "send_json"]

JSON_HEADERS = [(b"content-type", b"application/json")]
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Tells nginx-style proxies not to hold events back.
    (b"x-accel-buffering", b"no"),
]


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, error: ApiError, *, close: bool = False) -> None:
    """Answer with ``error``; ``close`` ends the connection (a body was left unread)."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send_json(send, error.status, error_body(error), headers)
