"""The one error the server answers with, in OpenAI's shape: ``{"error": {"message", "type", "code"}}``.

Raised anywhere on the way -- reading the body, a request check, parsing, a backend -- an
:class:`ApiError` becomes that JSON with its status when nothing was sent yet, or an in-stream
``data: {"error": ...}`` event followed by ``data: [DONE]`` once the stream has begun (the bytes
of both are made in :mod:`getgpt.server.wire`).
"""

from __future__ import annotations

__all__ = ["ApiError"]


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
