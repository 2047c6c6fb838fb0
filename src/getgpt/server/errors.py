"""The one error the server answers with, in OpenAI's shape: ``{"error": {"message", "type", "code"}}``.

Raised anywhere on the way -- reading the body, a request check, parsing, a backend -- an
:class:`ApiError` becomes that JSON with its status when nothing was sent yet, or an in-stream
``data: {"error": ...}`` event followed by ``data: [DONE]`` once the stream has begun.
"""

from __future__ import annotations

import msgspec

__all__ = ["ApiError", "error_body", "error_event"]

_encode = msgspec.json.encode


class ApiError(Exception):
    """An error for the client: HTTP ``status``, a message, a ``type`` and a ``code``.

    ``headers`` go on the response (``Retry-After``, ``WWW-Authenticate``, ...) when it is one.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.headers = headers or {}

    def payload(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


def error_body(error: ApiError) -> bytes:
    """The JSON body of an error response."""
    return _encode(error.payload())


def error_event(error: ApiError) -> bytes:
    """The events that end a stream with ``error``."""
    return b"data: " + _encode(error.payload()) + b"\n\ndata: [DONE]\n\n"
