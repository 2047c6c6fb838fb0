"""A LiteLLM custom provider speaking the GetGpt protocol, registered as ``getgpt``.

    import litellm
    from getgpt.integrations import litellm as getgpt_litellm

    getgpt_litellm.register()
    reply = litellm.completion(
        model="getgpt/gpt-3.5-turbo",
        api_base="http://127.0.0.1:8000/",          # or GETGPT_BASE_URL
        messages=[{"role": "user", "content": "Hi"}],
    )

``completion``, ``acompletion`` and both streamed. The LiteLLM proxy loads the same provider from
its ``config.yaml`` (``litellm_settings.custom_provider_map`` naming
``getgpt.integrations.litellm.handler``; see examples/litellm-proxy/config.yaml).

A whole reply is asked for with ``"stream": false``, so the server's token counts come back;
when a server reports none, LiteLLM's own counter fills them in, as LiteLLM does for any
provider. ``stop`` is applied on the client side (see :mod:`getgpt.integrations.stops`).
Failures are raised as LiteLLM's own exception types (chosen by LiteLLM from the status, as for
its built-in providers), with ``partial`` holding the text that had arrived.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, NoReturn, cast

import httpx
import litellm
from litellm.exceptions import APIConnectionError, APIError, BadRequestError
from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import (
    ChatCompletionMessageToolCall,
    Choices,
    EmbeddingResponse,
    GenericStreamingChunk,
    Message,
    ModelResponse,
)
from litellm.types.utils import Usage as LiteLLMUsage

from ..client import AsyncChatStream, ChatStream
from ..protocol import errors
from ..protocol.reply import Reply, Usage
from .clients import Call, client_options
from .handover import Handover

__all__ = ["PROVIDER", "GetGptLLM", "handler", "litellm_error", "register"]

#: The provider name: models are called ``getgpt/<model>``.
PROVIDER = "getgpt"
# Parameters LiteLLM hands a provider that are settled here rather than sent in the request.
_HANDLED = frozenset({"stream", "stream_options", "max_retries"})
NO_EMBEDDINGS = (
    "the GetGpt protocol has no embeddings: it carries chat requests only (POST /api/chat/stream). "
    "getgpt serve --backend openai forwards /v1/embeddings to its upstream: call that as an OpenAI "
    "endpoint (model='openai/<name>', api_base='http://<server>/v1')"
)
ONE_STREAMED_CHOICE = (
    "the getgpt provider cannot stream n={n} choices: LiteLLM passes a custom provider's stream on "
    "as one choice, so the others would be generated (and billed) and lost. Ask with stream=False "
    "for every choice, or with n=1"
)


def _call(
    *,
    model: str,
    api_base: str | None,
    api_key: str | None,
    optional_params: Mapping[str, Any],
    litellm_params: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    timeout: float | httpx.Timeout | None,
    stream: bool,
) -> Call:
    """One LiteLLM call, sorted: where to send, how, what, and where to stop.

    A stream asking for more than one choice is refused before anything is sent (see
    :data:`ONE_STREAMED_CHOICE`).
    """
    choices = optional_params.get("n")
    if stream and isinstance(choices, int) and choices > 1:
        raise BadRequestError(ONE_STREAMED_CHOICE.format(n=choices), model=model, llm_provider=PROVIDER)
    retries = optional_params.get("max_retries")
    if retries is None and litellm_params:
        retries = litellm_params.get("max_retries")
    options = client_options(api_key=api_key, timeout=timeout, max_retries=retries, headers=headers)
    # Everything else is the request's: the protocol's fields, and any other parameter,
    # which the client sends or refuses by name -- never dropped here.
    params = {k: v for k, v in optional_params.items() if k not in _HANDLED and v is not None}
    if stream:  # the server's token counts, whether or not the caller asked LiteLLM for them
        params["stream_options"] = {
            **(optional_params.get("stream_options") or {}),
            "include_usage": True,
        }
    # ``stop`` is sent, and applied here as well (see getgpt.integrations.stops).
    return Call(api_base, options, {**params, "model": model, "stream": stream}, optional_params.get("stop"))


_STATUS_OF = (
    (errors.StatusError, None),  # its own status
    (errors.Timeout, 408),
    (errors.ValidationError, 400),
    (errors.SignatureError, 400),
    (errors.ProtocolError, 502),  # the reply broke the protocol, as a bad gateway's would
    (errors.RemoteError, 500),  # the server reported a failure of its own
)


def litellm_error(exc: errors.GetGptError, model: str) -> Exception:
    """LiteLLM's exception for a getgpt error, with ``partial`` and the error as its cause."""
    if isinstance(exc, errors.TransportError) and not isinstance(exc, errors.Timeout):
        mapped: Exception = APIConnectionError(message=str(exc), llm_provider=PROVIDER, model=model)
    else:
        status = next(
            (getattr(exc, "status_code", code) for kind, code in _STATUS_OF if isinstance(exc, kind)), 500
        )
        try:
            # LiteLLM's own mapping, the one its built-in providers go through.
            litellm.exception_type(
                model=model,
                original_exception=CustomLLMError(status_code=status, message=str(exc)),  # type: ignore[no-untyped-call]
                custom_llm_provider=PROVIDER,
            )
        except Exception as raised:
            mapped = raised
        else:  # pragma: no cover - exception_type always raises
            mapped = APIError(500, str(exc), PROVIDER, model)
    mapped.partial = exc.partial  # type: ignore[attr-defined]
    mapped.__cause__ = exc
    return mapped


def _raise(exc: errors.GetGptError, model: str) -> NoReturn:
    raise litellm_error(exc, model) from exc


def _usage(usage: Usage | None, model: str, messages: list[Any], text: str) -> LiteLLMUsage:
    prompt = usage.prompt_tokens if usage else None
    completion = usage.completion_tokens if usage else None
    if prompt is None:
        prompt = litellm.token_counter(model=model, messages=messages)
    if completion is None:
        completion = litellm.token_counter(model=model, text=text)
    return LiteLLMUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _fill(
    response: ModelResponse,
    reply: ChatStream | AsyncChatStream,
    handover: Handover,
    *,
    model: str,
    messages: list[Any],
    text: str,
) -> ModelResponse:
    """LiteLLM's whole response for an ended ``reply`` whose text (stops applied) is ``text``."""
    choice = response.choices[0]
    message = choice.message
    calls = reply.tool_calls
    message.content = text if text or not calls else None
    if calls:
        message.tool_calls = [ChatCompletionMessageToolCall(**call) for call in calls]
    if reply.reasoning:
        message.reasoning_content = reply.reasoning
    reason = handover.finish_reason(reply)
    choice.finish_reason = cast(Any, reason or "stop")  # LiteLLM types it as OpenAI's five reasons
    # With n > 1, every choice the server generated (and the upstream billed), stops applied to each.
    texts = [text]
    for index, other in enumerate(reply.choices[1:], start=1):
        texts.append(_more(response, index, other, handover.stops.stops))
    response.model = model
    response.usage = _usage(reply.usage, model, messages, "".join(texts))  # type: ignore[attr-defined]
    return response


def _more(response: ModelResponse, index: int, reply: Reply, stop: list[str]) -> str:
    """Choice ``index`` of a whole response, from the client's ``reply`` for it; its text."""
    cut = Handover(stop)
    text: str = cut.piece(reply) + cut.tail()
    message = Message(content=text if text or not reply.tool_calls else None, role="assistant")
    if reply.tool_calls:
        message.tool_calls = [ChatCompletionMessageToolCall(**call) for call in reply.tool_calls]
    if reply.reasoning:
        message.reasoning_content = reply.reasoning
    reason = "stop" if cut.stopped else reply.finish_reason or "stop"
    response.choices.append(Choices(index=index, message=message, finish_reason=reason))
    return text


def _chunk(text: str) -> GenericStreamingChunk:
    return {
        "text": text,
        "is_finished": False,
        "finish_reason": "",
        "usage": None,
        "index": 0,
        "tool_use": None,
    }


def _tool_uses(reply: ChatStream | AsyncChatStream) -> Iterator[GenericStreamingChunk]:
    """The model's tool calls, one chunk each: the client hands them over whole at the end."""
    for index, call in enumerate(reply.tool_calls):
        chunk = _chunk("")
        chunk["tool_use"] = {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": call["function"]["arguments"]},
            "index": index,
        }
        yield chunk


def _last(reply: ChatStream | AsyncChatStream, handover: Handover) -> GenericStreamingChunk:
    usage = reply.usage
    block = None
    if usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
        block = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        }
    return {
        "text": handover.tail(),
        "is_finished": True,
        "finish_reason": handover.finish_reason(reply) or "stop",
        "usage": block,  # type: ignore[typeddict-item]
        "index": 0,
        "tool_use": None,
    }


class GetGptLLM(CustomLLM):
    """The GetGpt protocol as a LiteLLM custom provider; see the module's documentation."""

    def completion(  # noqa: PLR0917  (LiteLLM's signature)
        self,
        model: str,
        messages: list[Any],
        api_base: str | None,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Callable[..., Any],
        encoding: Any,
        api_key: str | None,
        logging_obj: Any,
        optional_params: dict[str, Any],
        acompletion: Any = None,
        litellm_params: dict[str, Any] | None = None,
        logger_fn: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        client: Any = None,
    ) -> ModelResponse:
        call = _call(
            model=model,
            api_base=api_base,
            api_key=api_key,
            optional_params=optional_params,
            litellm_params=litellm_params,
            headers=headers,
            timeout=timeout,
            stream=False,
        )
        handover = Handover(call.stop)
        try:
            with call.stream(messages) as reply:
                text = "".join(handover.piece(piece) for piece in reply) + handover.tail()
        except errors.GetGptError as exc:
            _raise(exc, model)
        return _fill(model_response, reply, handover, model=model, messages=messages, text=text)

    # The async twin of completion(): LiteLLM's signature, the same call, awaited.
    async def acompletion(  # noqa: PLR0917  (LiteLLM's signature)
        self,
        model: str,
        messages: list[Any],
        api_base: str | None,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Callable[..., Any],
        encoding: Any,
        api_key: str | None,
        logging_obj: Any,
        optional_params: dict[str, Any],
        acompletion: Any = None,
        litellm_params: dict[str, Any] | None = None,
        logger_fn: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        client: Any = None,
    ) -> ModelResponse:
        call = _call(
            model=model,
            api_base=api_base,
            api_key=api_key,
            optional_params=optional_params,
            litellm_params=litellm_params,
            headers=headers,
            timeout=timeout,
            stream=False,
        )
        handover = Handover(call.stop)
        try:
            async with call.astream(messages) as reply:
                text = "".join([handover.piece(piece) async for piece in reply]) + handover.tail()
        except errors.GetGptError as exc:
            _raise(exc, model)
        return _fill(model_response, reply, handover, model=model, messages=messages, text=text)

    def streaming(  # noqa: PLR0917  (LiteLLM's signature)
        self,
        model: str,
        messages: list[Any],
        api_base: str | None,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Callable[..., Any],
        encoding: Any,
        api_key: str | None,
        logging_obj: Any,
        optional_params: dict[str, Any],
        acompletion: Any = None,
        litellm_params: dict[str, Any] | None = None,
        logger_fn: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        client: Any = None,
    ) -> Iterator[GenericStreamingChunk]:
        call = _call(
            model=model,
            api_base=api_base,
            api_key=api_key,
            optional_params=optional_params,
            litellm_params=litellm_params,
            headers=headers,
            timeout=timeout,
            stream=True,
        )
        handover = Handover(call.stop)
        try:
            with call.stream(messages) as reply:
                for text in handover.texts(reply):
                    yield _chunk(text)
        except errors.GetGptError as exc:
            _raise(exc, model)
        yield from _tool_uses(reply)
        yield _last(reply, handover)

    # LiteLLM declares a coroutine returning an iterator, but takes an async generator too (it
    # iterates what the call returns), and a generator is what streams without buffering.
    async def astreaming(  # type: ignore[override,misc]  # noqa: PLR0917
        self,
        model: str,
        messages: list[Any],
        api_base: str | None,
        custom_prompt_dict: dict[str, Any],
        model_response: ModelResponse,
        print_verbose: Callable[..., Any],
        encoding: Any,
        api_key: str | None,
        logging_obj: Any,
        optional_params: dict[str, Any],
        acompletion: Any = None,
        litellm_params: dict[str, Any] | None = None,
        logger_fn: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        client: Any = None,
    ) -> AsyncIterator[GenericStreamingChunk]:
        call = _call(
            model=model,
            api_base=api_base,
            api_key=api_key,
            optional_params=optional_params,
            litellm_params=litellm_params,
            headers=headers,
            timeout=timeout,
            stream=True,
        )
        handover = Handover(call.stop)
        try:
            async with call.astream(messages) as reply:
                async for text in handover.atexts(reply):
                    yield _chunk(text)
        except errors.GetGptError as exc:
            _raise(exc, model)
        for use in _tool_uses(reply):
            yield use
        yield _last(reply, handover)

    def embedding(  # noqa: PLR0917  (LiteLLM's signature)
        self,
        model: str,
        input: list[Any],
        model_response: EmbeddingResponse,
        print_verbose: Callable[..., Any],
        logging_obj: Any,
        optional_params: dict[str, Any],
        api_key: str | None = None,
        api_base: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        litellm_params: Any = None,
    ) -> EmbeddingResponse:
        """Refused, saying why: the protocol has no embeddings (LiteLLM's default says only "Not
        implemented yet!")."""
        raise BadRequestError(NO_EMBEDDINGS, model=model, llm_provider=PROVIDER)

    # The async twin of embedding(): LiteLLM's signature, the same refusal.
    async def aembedding(  # noqa: PLR0917  (LiteLLM's signature)
        self,
        model: str,
        input: list[Any],
        model_response: EmbeddingResponse,
        print_verbose: Callable[..., Any],
        logging_obj: Any,
        optional_params: dict[str, Any],
        api_key: str | None = None,
        api_base: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        litellm_params: Any = None,
    ) -> EmbeddingResponse:
        """As :meth:`embedding`."""
        raise BadRequestError(NO_EMBEDDINGS, model=model, llm_provider=PROVIDER)


#: The instance the LiteLLM proxy's ``custom_provider_map`` names, and :func:`register` installs.
handler = GetGptLLM()


def register(provider: str = PROVIDER) -> GetGptLLM:
    """Make ``litellm.completion(model="getgpt/...")`` use :data:`handler`; returns it.

    Calling it again replaces the entry rather than adding a second one.
    """
    others = [entry for entry in litellm.custom_provider_map if entry.get("provider") != provider]
    litellm.custom_provider_map = [*others, {"provider": provider, "custom_handler": handler}]
    return handler
