"""``ChatCompletion.create``: the entry point of gpt4free's freegpt-webui era."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ..protocol.errors import ValidationError

__all__ = ["ChatCompletion"]


class ChatCompletion:
    @staticmethod
    def create(
        model: Any,
        messages: list[dict[str, str]],
        provider: ModuleType | None = None,
        stream: bool = False,
        auth: str | bool = False,
        **kwargs: Any,
    ) -> Iterator[str] | str:
        """A generator of text pieces when ``stream``, else the whole reply as one string.

        ``model`` is a name or, as in g4f, an object with a ``name``. Where g4f printed a message
        and called ``sys.exit``, this raises :class:`~getgpt.protocol.errors.ValidationError`.
        """
        if provider is None:
            from . import GetGpt

            provider = GetGpt
        name = getattr(model, "name", model)
        if not isinstance(name, str):
            raise ValidationError(f"model must be a name, not {type(model).__name__}")
        label = provider.__name__.rpartition(".")[2]
        if stream and not getattr(provider, "supports_stream", False):
            raise ValidationError(f"{label} does not support streaming; use stream=False")
        if getattr(provider, "needs_auth", False) and not auth:
            raise ValidationError(f"{label} requires authentication: pass auth=...")
        pieces: Iterator[str] = provider._create_completion(name, messages, stream, **kwargs)
        return pieces if stream else "".join(pieces)
