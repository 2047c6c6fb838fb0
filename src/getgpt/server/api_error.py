"""The one error the server answers with, in OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``.

Raised anywhere on the way -- reading the body, a request check, parsing, a backend -- an
:class:`ApiError` becomes that JSON with its status when nothing was sent yet, or an in-stream
``data: {"error": ...}`` event followed by ``data: [DONE]`` once the stream has begun
(:meth:`ApiError.json` makes the JSON; the event is framed in :mod:`getgpt.server.chat.wire`).
An error an upstream sent is passed on as it came: ``body`` holds its JSON.
"""

from __future__ import annotations

import math

import msgspec

__all__ = ["ApiError", "retry_in", "try_later"]


class ApiError(Exception):
    """An error for the client: HTTP ``status``, a message, a ``type``, a ``param`` and a ``code``.

    ``param`` names the request field at fault, as OpenAI's errors do (None when none is).
    ``headers`` go on the response (``Retry-After``, ``WWW-Authenticate``, ...) when it is one.
    ``body``, when given, is the exact JSON to send instead of one made from the other fields:
    an upstream's own error object, passed on untouched.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | int | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.body = body

    def payload(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def json(self) -> bytes:
        """The JSON body of the error: the upstream's own, when the error passes one on."""
        return self.body if self.body is not None else msgspec.json.encode(self.payload())


def try_later(message: str, code: str, *, type: str = "server_overloaded") -> ApiError:
    """A ``503`` the client may send again in a second (``Retry-After: 1``): the server is too
    busy for it, or cannot reach what it needs, just now."""
    return ApiError(503, f"{message}; retry shortly", type=type, code=code, headers={"Retry-After": "1"})


def retry_in(wait: float, status: int, message: str, *, type: str, code: str) -> ApiError:
    """An error the client may send again once ``wait`` seconds have passed: ``Retry-After`` in
    whole seconds (at least 1), and the message saying so."""
    seconds = max(1, math.ceil(wait))
    return ApiError(
        status,
        f"{message}; retry in {seconds} s",
        type=type,
        code=code,
        headers={"Retry-After": str(seconds)},
    )
