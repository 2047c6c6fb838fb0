"""The echo backend: the offline default, which replies with the last user message -- honestly.

It honours what can shape such a reply -- ``max_tokens`` / ``max_completion_tokens`` (the text
is cut, ``finish_reason: "length"``), ``stop`` (cut before the first stop sequence) and ``n``
(that many choices) -- and takes the parameters that could not change a deterministic echo
(sampling, ``seed``, ``user``, tools the model may leave uncalled...). What it cannot honour --
a forced tool call, a JSON ``response_format``, ``logprobs``, audio -- is refused with a 400
naming the parameter, and so is any parameter it does not know: never a silent ignore.

It counts a token for every four characters, in ``max_tokens`` as in the usage it reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from ...client.transport import AsyncResponse
from ...protocol.reply import Usage
from ...protocol.request import ChatRequest
from ..chat.request import Chat, invalid, not_served
from ..chat.wire import CHARS_PER_TOKEN, Outcome, estimate_tokens

__all__ = ["NO_EFFECT", "EchoBackend"]

#: Parameters that cannot change what a deterministic echo replies: taken, and rightly without effect.
NO_EFFECT = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repetition_penalty",
        "seed",
        "user",
        "metadata",
        "store",
        "service_tier",
        "reasoning_effort",
        "verbosity",
        "prediction",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "stream_options",
        # The model may always leave a tool uncalled: offering tools forces nothing.
        "tools",
        "functions",
        "parallel_tool_calls",
    }
)
_MOST_CHOICES = 128


def _allowed(allowed: Callable[[Any], bool], why: str) -> Callable[[str, Any], None]:
    def judge(name: str, value: Any) -> None:
        if value is not None and not allowed(value):
            raise invalid(
                f"the echo backend cannot honour {name}={value!r}: {why}", name, "unsupported_parameter"
            )

    return judge


# Parameters the echo can take with some values only: the others it refuses, saying why.
_CONDITIONAL: dict[str, Callable[[str, Any], None]] = {
    "tool_choice": _allowed(lambda v: v in ("none", "auto"), "it never calls a tool"),
    "function_call": _allowed(lambda v: v in ("none", "auto"), "it never calls a function"),
    "response_format": _allowed(
        lambda v: isinstance(v, dict) and v.get("type") == "text", "it replies with the text it was given"
    ),
    "logprobs": _allowed(lambda v: v is False, "it has no token probabilities"),
    "top_logprobs": _allowed(lambda v: v == 0, "it has no token probabilities"),
    "modalities": _allowed(lambda v: v == ["text"], "it replies with text only"),
    "audio": _allowed(lambda v: False, "it replies with text only"),
    "logit_bias": _allowed(lambda v: v == {}, "it cannot bias the text it echoes"),
    "web_search_options": _allowed(lambda v: False, "it searches nothing"),
}
_HONOURED = frozenset({"max_tokens", "max_completion_tokens", "stop", "n"})


def _stops(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise invalid(f"stop must be a non-empty string or a list of them, not {value!r}", "stop")
    return stops


def _choices(value: Any) -> int:
    if value is None:
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MOST_CHOICES:
        raise invalid(f"n must be an integer from 1 to {_MOST_CHOICES}, not {value!r}", "n")
    return value


def judge(request: ChatRequest) -> None:
    """Refuse, with a 400 naming it, any parameter of ``request`` the echo cannot honour."""
    for name, value in request.extra.items():
        if name in NO_EFFECT or name in _HONOURED:
            continue
        check = _CONDITIONAL.get(name)
        if check is None:
            raise invalid(
                f"the echo backend does not know the parameter {name!r}, so it cannot honour it "
                "(a server with --backend openai forwards it to its upstream)",
                name,
                "unsupported_parameter",
            )
        check(name, value)


def _cut(text: str, stops: list[str], most: int | None) -> tuple[str, str]:
    """The text as the reply gives it, and why it ends there."""
    for stop in stops:
        at = text.find(stop)
        if at >= 0:
            text = text[:at]
    if most is not None and len(text) > most:
        return text[:most], "length"
    return text, "stop"


class EchoBackend:
    """Replies with exactly the content of the last user message, ``piece_chars`` characters at a time."""

    name = "echo"
    passthrough = False
    forwards_routes = False

    def __init__(
        self, piece_chars: int = 4, delay: float = 0.0, *, models: list[dict[str, Any]] | None = None
    ) -> None:
        self.piece_chars = piece_chars
        self.delay = delay
        self._models = models or []

    def check(self, chat: Chat) -> None:
        request = chat.request
        if request.extra:
            judge(request)
            _stops(request.extra.get("stop", []))
            _choices(request.extra.get("n"))
        chat.token_limit  # noqa: B018 -- it raises the 400 for a bad limit

    async def stream(self, chat: Chat, outcome: Outcome) -> AsyncIterator[str]:
        request = chat.request
        size, delay = self.piece_chars, self.delay
        text = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        limit = chat.token_limit
        extra = request.extra
        stops = _stops(extra["stop"]) if extra.get("stop") is not None else []
        text, outcome.finish_reason = _cut(text, stops, None if limit is None else limit * CHARS_PER_TOKEN)
        outcome.choices = _choices(extra.get("n"))
        prompt = estimate_tokens(sum(len(m.text) for m in request.messages))
        completion = estimate_tokens(len(text)) * outcome.choices
        outcome.usage = Usage(prompt, completion, prompt + completion)
        for start in range(0, len(text), size):
            if delay and start:
                await asyncio.sleep(delay)
            yield text[start : start + size]

    async def models(self) -> list[dict[str, Any]]:
        return self._models

    async def forward(self, path: str, body: bytes, outcome: Outcome | None = None) -> AsyncResponse:
        raise not_served(self.name, path)

    async def aclose(self) -> None:
        pass
