"""``GetGpt``: a provider for today's gpt4free (g4f 8.x), speaking the GetGpt protocol.

    from g4f.client import Client
    from getgpt.integrations.g4f import GetGpt

    client = Client(provider=GetGpt)
    reply = client.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=[{"role": "user", "content": "Hi"}],
        api_base="http://127.0.0.1:8000/",     # or GETGPT_BASE_URL
    )

It works in ``g4f.client.Client``, ``g4f.client.AsyncClient`` and the legacy
``g4f.ChatCompletion.create(..., provider=GetGpt)``, streamed or not. The server is the call's
``api_base`` (or ``base_url``, which ``g4f.client.Client(base_url=...)`` passes on), else
``GETGPT_BASE_URL``; with neither, the call fails at once saying how to name one (the seed's
address, which g4f's listings show, is gone). Errors become g4f's own types where g4f has one
(:func:`g4f_error`), with the reply received so far in ``partial``; a stream hands over every
piece of text that arrived before it raises. Tools (``tools=``, ``tool_choice=``) travel in the
request, and the model's calls come back as g4f's ``ToolCalls``, its reasoning as ``Reasoning``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, ClassVar

from g4f import errors as g4f_errors
from g4f.providers.base_provider import AsyncGeneratorProvider, ProviderModelMixin
from g4f.providers.response import FinishReason, Reasoning, ToolCalls, Usage

from ..client import DEFAULT_BASE_URL, AsyncChatStream, ChatStream, base_url_from
from ..protocol import errors
from ..protocol.request import DEFAULT_MODEL
from .clients import Call, client_options
from .handover import Handover

__all__ = ["GetGpt", "g4f_error"]

# What g4f hands every provider besides the request, and which a GetGpt request does not carry:
# settled by g4f itself before or after the call (its stream timeout, web search, tool
# emulation, the conversation cache), or naming the provider.
_G4F_CONTROLS = frozenset(
    {"provider", "stream_timeout", "ignore_stream", "download_media", "web_search", "history_disabled"}
)


def _call(model: str, stream: bool, kwargs: Mapping[str, Any]) -> Call:
    """One call's g4f keyword arguments, sorted: where to send, how, and what."""
    rest = {name: value for name, value in kwargs.items() if value is not None}
    for name in _G4F_CONTROLS:
        rest.pop(name, None)
    if rest.get("conversation") is None:
        rest.pop("conversation", None)
    if rest.pop("media", None):
        raise errors.ValidationError(
            "this provider does not send media=: put images in the messages as OpenAI content parts"
        )
    base_url = rest.pop("api_base", None) or rest.pop("base_url", None)
    rest.pop("base_url", None)
    options = client_options(
        api_key=rest.pop("api_key", None),
        timeout=rest.pop("timeout", None),
        max_retries=rest.pop("max_retries", None),
        proxy=rest.pop("proxy", None),
    )
    stop = rest.get("stop")  # sent, and applied here as well (see getgpt.integrations.stops)
    if stream:  # the server's token counts, rather than g4f's estimate
        rest.setdefault("stream_options", {"include_usage": True})
    return Call(base_url, options, {**rest, "model": model, "stream": stream}, stop)


def g4f_error(exc: errors.GetGptError) -> Exception:
    """The g4f exception for a getgpt error, or the error itself where g4f has no such type.

    The text received before the error stays reachable as ``partial``.
    """
    mapped: Exception
    if isinstance(exc, errors.RateLimitError):
        mapped = g4f_errors.RateLimitError(str(exc))
    elif isinstance(exc, errors.CloudflareBlocked):
        mapped = g4f_errors.CloudflareError(str(exc))
    elif isinstance(exc, errors.StatusError):
        status = exc.status_code
        if status in (401, 403):
            mapped = g4f_errors.MissingAuthError(str(exc))
        elif status == 402:
            mapped = g4f_errors.PaymentRequiredError(str(exc))
        elif status in (400, 422):
            mapped = g4f_errors.BadRequestError(str(exc))
        else:
            mapped = g4f_errors.ResponseStatusError(str(exc))
    elif isinstance(exc, errors.Timeout):
        mapped = g4f_errors.TimeoutError(str(exc))
    elif isinstance(exc, (errors.RemoteError, errors.ProtocolError)):
        mapped = g4f_errors.ResponseError(str(exc))
    else:  # TransportError, ValidationError, SignatureError: g4f has no counterpart
        return exc
    mapped.partial = exc.partial  # type: ignore[attr-defined]
    return mapped


def _ending(reply: ChatStream | AsyncChatStream, handover: Handover) -> Iterator[Any]:
    """What follows the text: the held-back tail, then g4f's finish reason and usage objects."""
    tail = handover.tail()
    if tail:
        yield tail
    if reply.reasoning:
        yield Reasoning(token=reply.reasoning)
    if reply.tool_calls:
        yield ToolCalls(reply.tool_calls)
    reason = handover.finish_reason(reply)
    if reason:
        yield FinishReason(reason)
    usage = reply.usage
    if usage is not None:
        yield Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )


def _listed() -> str:
    """The server g4f's listings name: ``GETGPT_BASE_URL``, else the seed's address (a call with
    neither fails, saying so)."""
    return base_url_from(os.environ.get("GETGPT_BASE_URL") or DEFAULT_BASE_URL)


class GetGpt(AsyncGeneratorProvider, ProviderModelMixin):  # type: ignore[misc]  # g4f's bases are untyped
    """The GetGpt protocol as a g4f provider; see the module's documentation."""

    label = "GetGpt"
    url = _listed()
    working = True
    needs_auth = False
    supports_stream = True
    supports_message_history = True
    supports_system_message = True
    # Tools go to the server in the request (g4f would otherwise emulate them in the prompt), and
    # the model's calls come back as g4f's ToolCalls.
    supports_native_tools = True
    default_model = DEFAULT_MODEL
    models: ClassVar[list[str]] = [DEFAULT_MODEL]

    @classmethod
    def get_dict(cls) -> dict[str, Any]:
        # The server can change after import (GETGPT_BASE_URL), so it is read when asked.
        return {"name": cls.__name__, "url": _listed(), "label": cls.label}

    @classmethod
    def _model(cls, model: str | None) -> str:
        return model if model and model != "auto" else cls.default_model

    @classmethod
    def create_completion(
        cls, model: str, messages: list[dict[str, Any]], stream: bool = True, **kwargs: Any
    ) -> Iterator[Any]:
        """The reply's text pieces, then a ``FinishReason`` and, when the server sent it, ``Usage``.

        g4f's synchronous paths call this; they share one pooled client per server and key.
        """
        call = _call(cls._model(model), stream, kwargs)
        handover = Handover(call.stop)
        try:
            with call.stream(messages) as reply:
                yield from handover.texts(reply)
        except errors.GetGptError as exc:
            raise g4f_error(exc) from exc
        yield from _ending(reply, handover)

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: list[dict[str, Any]], stream: bool = True, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """As :meth:`create_completion`, for g4f's asynchronous paths."""
        call = _call(cls._model(model), stream, kwargs)
        handover = Handover(call.stop)
        try:
            async with call.astream(messages) as reply:
                async for text in handover.atexts(reply):
                    yield text
        except errors.GetGptError as exc:
            raise g4f_error(exc) from exc
        for item in _ending(reply, handover):
            yield item
