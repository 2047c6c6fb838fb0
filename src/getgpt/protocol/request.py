"""The chat request: the JSON object that travels inside the envelope.

Field names, order and defaults are the wire format shared with other implementations of the
protocol, so :func:`encode` must keep producing exactly
``{"messages":[...],"frequency_penalty":0,"max_tokens":4000,"model":"gpt-3.5-turbo",
"presence_penalty":0,"temperature":1,"top_p":1,"stream":true,"uuid":"..."}``.

Any other OpenAI chat parameter (``tools``, ``tool_choice``, ``response_format``, ``stop``, ...)
follows those nine fields, in the order it was given: a server that does not know it ignores it,
getgpt's server forwards it. Messages may be any OpenAI message: a ``tool`` reply, an assistant
turn with ``content: null`` and ``tool_calls``, content given as a list of parts.
"""

from __future__ import annotations

import re
import uuid as _uuid
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import UNSET, UnsetType

from .errors import ValidationError
from .untrusted import json_or_none

__all__ = [
    "DEFAULT_MODEL",
    "OPENAI_PARAMETERS",
    "PARAMETERS",
    "USER_AGENT",
    "ChatRequest",
    "Message",
    "build_request",
    "encode",
    "parse_request",
    "request_from",
]

DEFAULT_MODEL = "gpt-3.5-turbo"
#: The GetGpt protocol's clients present themselves as a browser, as the original page did.
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


Role = Literal["system", "user", "assistant", "tool", "developer", "function"]
# int and float both, so a default of 1 stays `1` on the wire and never becomes `1.0`.
Penalty = Union[Annotated[int, msgspec.Meta(ge=-2, le=2)], Annotated[float, msgspec.Meta(ge=-2.0, le=2.0)]]  # noqa: UP007
Temperature = Union[Annotated[int, msgspec.Meta(ge=0, le=2)], Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]]  # noqa: UP007
TopP = Union[Annotated[int, msgspec.Meta(ge=0, le=1)], Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]]  # noqa: UP007
MaxTokens = Annotated[int, msgspec.Meta(ge=1)]
Model = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: A content part (``{"type": "text", "text": ...}``, ``{"type": "image_url", ...}``, ...), kept as given.
Part = dict[str, Any]
_SPOKEN = frozenset({"system", "user", "developer", "tool", "function"})


class Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One turn of the conversation, in OpenAI's shape; fields left out stay out on the wire."""

    role: Role
    content: str | list[Part] | UnsetType | None = UNSET
    name: str | None = None
    tool_calls: list[dict[str, Any]] | UnsetType = UNSET
    tool_call_id: str | UnsetType = UNSET
    refusal: str | UnsetType | None = UNSET
    function_call: dict[str, Any] | UnsetType = UNSET
    audio: dict[str, Any] | UnsetType | None = UNSET

    @property
    def text(self) -> str:
        """The message's text: its content string, or its text parts joined; "" when it has none."""
        content = self.content
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                part["text"]
                for part in content
                if part.get("type") == "text" and isinstance(part.get("text"), str)
            )
        return ""

    def __post_init__(self) -> None:
        content = self.content
        if self.role in _SPOKEN:
            if content is None or content is UNSET:
                raise ValueError(f"a {self.role} message needs content (a string or a list of parts)")
            if self.role == "tool" and self.tool_call_id is UNSET:
                raise ValueError("a tool message needs the tool_call_id it answers")
        elif (
            (content is None or content is UNSET) and self.tool_calls is UNSET and self.function_call is UNSET
        ):
            raise ValueError("an assistant message needs content or tool_calls")


def _new_uuid() -> str:
    return str(_uuid.uuid4())


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The request object, with the protocol's defaults.

    ``extra`` holds the OpenAI fields that follow the nine, in order; on the wire they are
    fields of the request itself (see :func:`encode`), never an ``"extra"`` object.
    """

    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    frequency_penalty: Penalty = 0
    max_tokens: MaxTokens = 4000
    model: Model = DEFAULT_MODEL
    presence_penalty: Penalty = 0
    temperature: Temperature = 1
    top_p: TopP = 1
    stream: bool = True
    uuid: RequestId = msgspec.field(default_factory=_new_uuid)
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


#: The parameters of the protocol's own request besides ``messages``: the seed's nine.
PARAMETERS = frozenset(ChatRequest.__struct_fields__) - {"messages", "extra"}
#: The OpenAI chat parameters a caller may give besides those; anything else goes in ``extra_body``.
OPENAI_PARAMETERS = frozenset(
    {
        "audio",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "metadata",
        "modalities",
        "moderation",
        "n",
        "parallel_tool_calls",
        "prediction",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream_options",
        "tool_choice",
        "tools",
        "top_logprobs",
        "user",
        "verbosity",
        "web_search_options",
    }
)
_CORE = PARAMETERS | {"messages"}
_KNOWN = PARAMETERS | OPENAI_PARAMETERS

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ChatRequest)
# How a request with no extra fields ends when encoded: the field is dropped from the wire.
_NO_EXTRA = b',"extra":{}}'
_EXTRA_KEY = b',"extra":'
_PATH = re.compile(r"`\$\.?([^`]*)`")


def _invalid(exc: msgspec.ValidationError) -> ValidationError:
    # msgspec names the path as `$.messages[0].role`; "request" reads better in a message to a user.
    message = str(exc)
    found = _PATH.search(message)
    return ValidationError(
        "invalid chat request: " + message.replace("`$", "`request"),
        param=found.group(1) or None if found else None,
    )


def build_request(
    messages: Iterable[Mapping[str, Any] | Message],
    *,
    extra_body: Mapping[str, Any] | None = None,
    **params: Any,
) -> ChatRequest:
    """Validate ``messages`` and ``params`` into a :class:`ChatRequest`.

    ``params`` are the protocol's nine fields and any OpenAI chat parameter
    (:data:`OPENAI_PARAMETERS`); ``extra_body`` carries fields beyond those (a server's own
    extensions, such as ``top_k``), as in the openai SDK. Parameters left out, or given as
    ``None``, take the protocol's defaults or are left out.
    """
    extra: dict[str, Any] = {}
    if params.keys() <= PARAMETERS:  # the common case: the protocol's own fields only
        fields: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
    else:
        unknown = params.keys() - _KNOWN
        if unknown:
            raise ValidationError(
                f"unknown parameter(s): {', '.join(sorted(unknown))}; expected the protocol's "
                f"{', '.join(sorted(PARAMETERS))}, an OpenAI chat parameter, or extra_body={{...}}"
            )
        fields = {}
        for name, value in params.items():
            if value is not None:
                (fields if name in PARAMETERS else extra)[name] = value
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        raise ValidationError("messages must be a list of {'role': ..., 'content': ...} objects")
    if extra_body:
        clash = extra_body.keys() & _CORE
        if clash:
            raise ValidationError(
                f"extra_body repeats the request's own field(s) {', '.join(sorted(clash))}: "
                "give them as parameters"
            )
        extra.update(extra_body)
    fields["messages"] = [msgspec.to_builtins(m) if isinstance(m, Message) else m for m in messages]
    try:
        request = msgspec.convert(fields, ChatRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    if extra:
        request.extra = extra
    return request


def encode(request: ChatRequest) -> bytes:
    """The request's JSON, as it goes inside the envelope: the nine fields, then the extra ones."""
    try:
        raw = _encoder.encode(request)
        if not request.extra:
            return raw[: -len(_NO_EXTRA)] + b"}"
        # The extra fields were encoded last, as one object: splice its members in after the nine.
        extra = _encoder.encode(request.extra)
        return raw[: -(len(extra) + len(_EXTRA_KEY) + 1)] + b"," + extra[1:]
    except UnicodeEncodeError:  # a lone surrogate: a Python str, but no Unicode text JSON can carry
        raise ValidationError(
            "chat request holds text that is not valid Unicode (a lone surrogate)"
        ) from None
    except TypeError as exc:  # a parameter's value that is no JSON: a set, an object...
        raise ValidationError(f"chat request holds a value JSON cannot carry: {exc}") from None


def parse_request(data: bytes | str) -> ChatRequest:
    """Parse and validate a request's JSON; raise :class:`ValidationError` when it is not one.

    Fields beyond the nine go, in order, to ``extra``.
    """
    try:
        request = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        return _with_extra(data, exc)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"chat request is not valid JSON: {exc}") from None
    except UnicodeDecodeError:  # msgspec's error for invalid UTF-8 inside a string
        raise ValidationError("chat request is not valid UTF-8") from None
    if request.extra:  # a field that is itself named "extra": one of the extra fields
        return _with_extra(data, None)
    return request


def _with_extra(data: bytes | str, exc: msgspec.ValidationError | None) -> ChatRequest:
    """The slow way, for a request that has fields beyond the nine (or is invalid)."""
    # Not JSON: the typed decode stopped before the bad bytes (at `[`, say); its error says what is wrong.
    value = json_or_none(data)
    if not isinstance(value, dict) or (exc is not None and value.keys() <= _CORE):
        assert exc is not None
        raise _invalid(exc) from None
    return request_from(value)


def request_from(value: Mapping[str, Any]) -> ChatRequest:
    """Validate a request object already decoded from JSON (the nine fields, then any others).

    Fields beyond the nine go, in order, to ``extra``; a nine field given as ``None`` takes its default.
    """
    core = {
        name: item
        for name, item in value.items()
        if name in _CORE and (item is not None or name == "messages")
    }
    try:
        request = msgspec.convert(core, ChatRequest)
    except msgspec.ValidationError as error:
        raise _invalid(error) from None
    request.extra = {name: item for name, item in value.items() if name not in _CORE}
    return request
