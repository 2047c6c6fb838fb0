"""``ChatGetGpt``: a LangChain chat model speaking the GetGpt protocol.

    from getgpt.integrations.langchain import ChatGetGpt

    chat = ChatGetGpt(base_url="http://127.0.0.1:8000/", temperature=0.2)   # or GETGPT_BASE_URL
    print(chat.invoke("Hi").content)
    for chunk in chat.stream("Tell me more"):
        print(chunk.content, end="")

``invoke``, ``stream``, ``batch`` and their async twins; usage metadata (an ``invoke`` asks the
server for the whole reply, a stream for ``stream_options.include_usage``: both carry its token
counts); stop sequences (sent, and applied on the client side too: :mod:`getgpt.integrations.stops`);
``bind_tools`` and ``with_structured_output`` (function calling, JSON mode, JSON schema), the tool
calls coming back in the protocol's own ``tool_calls``; a reasoning model's reasoning in
``additional_kwargs["reasoning_content"]``. It passes LangChain's standard tests
(``langchain-tests``) against ``getgpt serve``; see the README for the counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal, cast

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
    make_invalid_tool_call,
    parse_tool_call,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ..client import AsyncChatStream, ChatStream
from ..protocol.reply import Usage
from ..protocol.request import DEFAULT_MODEL
from .clients import API_KEY_ENV, Call, client_options
from .handover import Handover

__all__ = ["ChatGetGpt"]

_PROVIDER = "getgpt"


def _usage_metadata(usage: Usage | None) -> UsageMetadata | None:
    if usage is None or usage.prompt_tokens is None or usage.completion_tokens is None:
        return None
    total = usage.total_tokens
    if total is None:
        total = usage.prompt_tokens + usage.completion_tokens
    counts = {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "total_tokens": total,
    }
    # A cast, not the TypedDict's call: langchain-core writes typing.NotRequired, which mypy,
    # checking for Python 3.10 here, does not know, so it would ask for the optional keys too.
    return cast("UsageMetadata", counts)


class ChatGetGpt(BaseChatModel):
    """A chat model answered by a GetGpt server; see the module's documentation.

    The server is ``base_url``, else ``GETGPT_BASE_URL``, else the seed's address; an API key
    (``api_key``, else ``GETGPT_API_KEY``) goes as ``Authorization: Bearer``.
    """

    model_config = ConfigDict(populate_by_name=True)

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """The model the server is asked for."""
    base_url: str | None = Field(default_factory=from_env("GETGPT_BASE_URL", default=None), alias="api_base")
    """The GetGpt server; ``GETGPT_BASE_URL`` when not given."""
    api_key: SecretStr | None = Field(default_factory=secret_from_env(API_KEY_ENV, default=None))
    """Sent as ``Authorization: Bearer``; ``GETGPT_API_KEY`` when not given."""
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Stop sequences for every call; a call's own ``stop`` replaces them."""
    timeout: float | None = None
    """Seconds to wait for the server (the client's default, 600, when None)."""
    max_retries: int | None = None
    """Retries before the first byte of a reply (the client's default, 2, when None)."""
    streaming: bool = False
    """Whether ``invoke`` streams underneath (its result is the same)."""
    stream_usage: bool = True
    """Whether a stream asks for the token counts (``stream_options.include_usage``)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other request parameters, sent with every call."""

    @property
    def _llm_type(self) -> str:
        return "getgpt-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": API_KEY_ENV}

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "base_url": self.base_url, **self._request_defaults()}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=_PROVIDER,
            ls_model_name=str(kwargs.get("model", self.model_name)),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = stops
        return params

    # --- the request ------------------------------------------------------------------------------

    def _request_defaults(self) -> dict[str, Any]:
        fields = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
        }
        return {**{k: v for k, v in fields.items() if v is not None}, **self.model_kwargs}

    def _call(self, stop: list[str] | None, kwargs: dict[str, Any], stream: bool) -> Call:
        """The call: this model's server and options, the request's parameters, and the stop
        sequences, which are applied on this side as well: the server is asked to stop there,
        and a server that passes them by gives the same cut."""
        params = {**self._request_defaults(), **{k: v for k, v in kwargs.items() if v is not None}}
        params["model"] = params.get("model") or self.model_name
        params["stream"] = stream
        stops = stop if stop is not None else self.stop
        if stops:
            params["stop"] = list(stops)
        if stream and self.stream_usage:
            params.setdefault("stream_options", {"include_usage": True})
        key = self.api_key.get_secret_value() if self.api_key is not None else None
        options = client_options(api_key=key, timeout=self.timeout, max_retries=self.max_retries)
        return Call(self.base_url, options, params, stops)

    @staticmethod
    def _messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
        converted = convert_to_openai_messages(list(messages), text_format="string")
        return converted if isinstance(converted, list) else [converted]

    # --- tools and structured output --------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer ``tools`` to the model: each goes in the request's ``tools`` in OpenAI's shape.

        ``tool_choice``: a tool's name to force it, ``"any"``/``"required"``/``True`` for some
        tool, ``"auto"`` or ``"none"``, or OpenAI's own dict.
        """
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        choice = _tool_choice(tool_choice)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """The model's answer parsed into ``schema`` (a Pydantic class, a TypedDict or a JSON schema).

        ``function_calling`` forces a tool of the schema's shape; ``json_mode`` asks for a JSON
        object (``response_format``) and ``json_schema`` for one that fits the schema.
        """
        if kwargs:
            raise ValueError(f"unsupported arguments: {sorted(kwargs)}")
        pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        function = convert_to_openai_tool(schema, strict=strict)["function"]
        traced = {"kwargs": {"method": method, "strict": strict}, "schema": function}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            model = self.bind_tools(
                [schema],
                tool_choice=function["name"],
                parallel_tool_calls=False,
                strict=strict,
                ls_structured_output_format=traced,
            )
            if pydantic:
                parser = PydanticToolsParser(tools=[cast("type[BaseModel]", schema)], first_tool_only=True)
            else:
                parser = JsonOutputKeyToolsParser(key_name=function["name"], first_tool_only=True)
        elif method in ("json_mode", "json_schema"):
            if method == "json_mode":
                response_format: dict[str, Any] = {"type": "json_object"}
            else:
                described = {k: function[k] for k in ("name", "description") if k in function}
                wanted = {**described, "schema": function.get("parameters", {})}
                if strict is not None:
                    wanted["strict"] = strict
                response_format = {"type": "json_schema", "json_schema": wanted}
            model = self.bind(response_format=response_format, ls_structured_output_format=traced)
            if pydantic:
                parser = PydanticOutputParser(pydantic_object=cast("type[BaseModel]", schema))
            else:
                parser = JsonOutputParser()
        else:
            raise ValueError(f"method must be function_calling, json_mode or json_schema, not {method!r}")
        if not include_raw:
            return model | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=model) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")

    # --- whole replies ----------------------------------------------------------------------------

    def _result(
        self, text: str, reply: ChatStream | AsyncChatStream, handover: Handover, model: str
    ) -> ChatResult:
        reason = handover.finish_reason(reply)
        metadata = {"model_name": model, "finish_reason": reason, "model_provider": _PROVIDER}
        calls, invalid = _tool_calls(reply.tool_calls)
        message = AIMessage(
            content=text,
            tool_calls=calls,
            invalid_tool_calls=invalid,
            additional_kwargs=_reasoning(reply.reasoning),
            response_metadata=metadata,
            usage_metadata=_usage_metadata(reply.usage),
        )
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason": reason})],
            llm_output={"model_name": model},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            chunks = self._stream(messages, stop=stop, run_manager=run_manager, **kwargs)
            return _from_chunks(list(chunks))
        call = self._call(stop, kwargs, stream=False)
        handover = Handover(call.stop)
        with call.stream(self._messages(messages)) as reply:
            text = "".join(handover.piece(piece) for piece in reply) + handover.tail()
        return self._result(text, reply, handover, call.params["model"])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            chunks = [c async for c in self._astream(messages, stop=stop, run_manager=run_manager, **kwargs)]
            return _from_chunks(chunks)
        call = self._call(stop, kwargs, stream=False)
        handover = Handover(call.stop)
        async with call.astream(self._messages(messages)) as reply:
            text = "".join([handover.piece(piece) async for piece in reply]) + handover.tail()
        return self._result(text, reply, handover, call.params["model"])

    # --- streams ----------------------------------------------------------------------------------

    @staticmethod
    def _last(reply: ChatStream | AsyncChatStream, handover: Handover, model: str) -> ChatGenerationChunk:
        reason = handover.finish_reason(reply)
        calls = [
            tool_call_chunk(
                name=call["function"]["name"], args=call["function"]["arguments"], id=call["id"], index=index
            )
            for index, call in enumerate(reply.tool_calls)
        ]
        message = AIMessageChunk(
            content=handover.tail(),
            tool_call_chunks=calls,
            additional_kwargs=_reasoning(reply.reasoning),
            chunk_position="last",
            response_metadata={"model_name": model, "finish_reason": reason, "model_provider": _PROVIDER},
            usage_metadata=_usage_metadata(reply.usage),
        )
        return ChatGenerationChunk(message=message, generation_info={"finish_reason": reason})

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._call(stop, kwargs, stream=True)
        handover = Handover(call.stop)
        with call.stream(self._messages(messages)) as reply:
            for text in handover.texts(reply):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        yield self._last(reply, handover, call.params["model"])

    # The async twin of _stream().
    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._call(stop, kwargs, stream=True)
        handover = Handover(call.stop)
        async with call.astream(self._messages(messages)) as reply:
            async for text in handover.atexts(reply):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager is not None:
                    await run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        yield self._last(reply, handover, call.params["model"])


def _tool_choice(choice: str | bool | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or choice is False:
        return None
    if choice is True or choice in ("any", "required"):
        return "required"
    if isinstance(choice, str) and choice not in ("auto", "none"):
        return {"type": "function", "function": {"name": choice}}
    return choice


def _tool_calls(raw: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """LangChain's tool calls from the protocol's (OpenAI's shape), and those whose arguments
    are not JSON, kept as invalid ones with the reason."""
    calls: list[Any] = []
    invalid: list[Any] = []
    for call in raw:
        try:
            parsed = parse_tool_call(call, return_id=True)
        except OutputParserException as exc:
            invalid.append(make_invalid_tool_call(call, str(exc)))
        else:
            if parsed is not None:
                calls.append(parsed)
    return calls, invalid


def _reasoning(text: str) -> dict[str, Any]:
    return {"reasoning_content": text} if text else {}


def _from_chunks(chunks: list[ChatGenerationChunk]) -> ChatResult:
    """A whole result from the chunks of a stream (for ``streaming=True``)."""
    if not chunks:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    message = whole.message
    return ChatResult(
        generations=[
            ChatGeneration(
                message=AIMessage(
                    content=message.content,
                    tool_calls=getattr(message, "tool_calls", []),
                    invalid_tool_calls=getattr(message, "invalid_tool_calls", []),
                    additional_kwargs=message.additional_kwargs,
                    response_metadata=message.response_metadata,
                    usage_metadata=getattr(message, "usage_metadata", None),
                ),
                generation_info=whole.generation_info,
            )
        ]
    )
