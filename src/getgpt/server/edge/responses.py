"""Plain ASGI responses for the chat endpoints, which run without Starlette's wrappers."""

from __future__ import annotations

from starlette.types import Message, Send

from ..api_error import ApiError

__all__ = ["JSON_HEADERS", "STREAM_HEADERS", "error_messages", "json_messages", "send_all", "send_error"]

JSON_HEADERS = [(b"content-type", b"application/json")]
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Tells nginx-style proxies not to hold events back.
    (b"x-accel-buffering", b"no"),
]


def json_messages(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> list[Message]:
    """The ASGI messages of a whole JSON response."""
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(headers or ())],
        },
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


def error_messages(error: ApiError, *, close: bool = False) -> list[Message]:
    """The ASGI messages answering ``error``; ``close`` ends the connection (a body was left unread)."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()
    ]
    if close:
        headers.append((b"connection", b"close"))
    return json_messages(error.status, error.json(), headers)


async def send_all(send: Send, messages: list[Message]) -> None:
    for message in messages:
        await send(message)


async def send_error(send: Send, error: ApiError, *, close: bool = False) -> None:
    await send_all(send, error_messages(error, close=close))
