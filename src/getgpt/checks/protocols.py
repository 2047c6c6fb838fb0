"""The two protocols the checker speaks: how each asks for a chat reply, and how it asks wrongly.

``getgpt``: the seed's request -- its nine fields in their order, sealed in the envelope, POSTed to
``{base}api/chat/stream`` with a browser's headers. Parameters beyond the nine (the checker asks
for ``stream_options`` once) follow them inside the envelope, as the project's client sends them.
``openai``: OpenAI's chat completions API, ``POST {base}chat/completions`` with a JSON body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..protocol import envelope
from ..protocol.request import DEFAULT_MODEL, USER_AGENT, build_request, encode

__all__ = ["GetGptProtocol", "OpenAIProtocol", "Protocol", "protocol_named"]


class Protocol:
    """What differs between the protocols; every path is relative to the base URL."""

    name = ""
    chat_path = ""
    #: Whether a reply as one JSON object (``"stream": false``) is part of the protocol.
    whole_reply_required = True
    #: Whether ``stream_options.include_usage`` is part of the protocol.
    usage_required = True

    def __init__(self, base_url: str, model: str = DEFAULT_MODEL, api_key: str | None = None) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def chat(self, text: str, *, max_tokens: int, stream: bool = True, **extra: Any) -> bytes:
        """The body of a valid request for a reply of at most ``max_tokens`` to one user message
        ``text``: the checker asks for few tokens, so a paid model costs next to nothing."""
        raise NotImplementedError

    def invalid(self) -> bytes:
        """The body of a well-formed request that breaks the rules: it has no messages."""
        raise NotImplementedError

    def not_json(self) -> bytes:
        return b'{"messages": [{"role": "user", "content": "cut'


class GetGptProtocol(Protocol):
    name = "getgpt"
    chat_path = "api/chat/stream"
    whole_reply_required = False  # the seed's clients always stream
    usage_required = False  # the seed's request has no stream_options

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Referer": self.base_url, "User-Agent": USER_AGENT}

    def chat(self, text: str, *, max_tokens: int, stream: bool = True, **extra: Any) -> bytes:
        messages = [{"role": "user", "content": text}]
        request = encode(build_request(messages, model=self.model, stream=stream, max_tokens=max_tokens))
        if extra:  # after the nine fields, which keep their order
            request = request[:-1] + b"," + json.dumps(extra, ensure_ascii=False)[1:].encode()
        return self._sealed(request)

    def invalid(self) -> bytes:
        fields = {"messages": [], "frequency_penalty": 0, "max_tokens": 4000, "model": self.model}
        return self._sealed(json.dumps(fields).encode())

    def bad_signature(self) -> bytes:
        return b'{"signature": "not a signature"}'

    @staticmethod
    def _sealed(request: bytes) -> bytes:
        return b'{"signature":"' + envelope.encrypt(request.decode()).encode() + b'"}'


class OpenAIProtocol(Protocol):
    name = "openai"
    chat_path = "chat/completions"

    def chat(self, text: str, *, max_tokens: int, stream: bool = True, **extra: Any) -> bytes:
        body: Mapping[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
            "stream": stream,
            **extra,
        }
        return json.dumps(body, ensure_ascii=False).encode()

    def invalid(self) -> bytes:
        return json.dumps({"model": self.model, "messages": []}).encode()


def protocol_named(name: str, base_url: str, model: str, api_key: str | None) -> Protocol:
    kinds: dict[str, type[Protocol]] = {"getgpt": GetGptProtocol, "openai": OpenAIProtocol}
    if name not in kinds:
        raise ValueError(f"unknown protocol {name!r}: expected getgpt or openai")
    return kinds[name](base_url, model, api_key)
