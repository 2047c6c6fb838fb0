"""What a request's ASGI scope says: its headers, looked up without Starlette's wrappers."""

from __future__ import annotations

from starlette.types import Scope

__all__ = ["header"]


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case, as ASGI gives names), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
