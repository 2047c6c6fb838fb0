"""The message the integration tests send to ``getgpt serve``'s offline echo backend, and what that
server answers: the same text, in four-character pieces, with its own token counts."""

from __future__ import annotations

import getgpt

__all__ = ["HELLO", "PIECES", "TEXT", "server_usage"]

TEXT = "Привет, мир! 🙂 How are you?"
HELLO = [{"role": "user", "content": TEXT}]
# The echo backend sends four characters a piece.
PIECES = [TEXT[i : i + 4] for i in range(0, len(TEXT), 4)]


def server_usage(url: str) -> getgpt.Usage:
    """The usage the server at ``url`` reports for HELLO, asked directly with the project's client."""
    with getgpt.Client(url) as client:
        usage = client.complete(HELLO, stream=False).usage
    assert usage is not None
    return usage
