"""The chat request: the JSON object that travels inside the envelope.

Field names, order and defaults are the wire format shared with other implementations of the
protocol, so :func:`encode` must keep producing exactly
``{"messages":[...],"frequency_penalty":0,"max_tokens":4000,"model":"gpt-3.5-turbo",
"presence_penalty":0,"temperature":1,"top_p":1,"stream":true,"uuid":"..."}``.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union

import msgspec

from .errors import ValidationError

__all__ = [
    "DEFAULT_MODEL",
    "PARAMETERS",
    "ChatRequest",
    "Message",
    "build_request",
    "encode",
    "parse_request",
]

DEFAULT_MODEL = "gpt-3.5-turbo"


Role = Literal["system", "user", "assistant"]
# int and float both, so a default of 1 stays `1` on the wire and never becomes `1.0`.
Penalty = Union[Annotated[int, msgspec.Meta(ge=-2, le=2)], Annotated[float, msgspec.Meta(ge=-2.0, le=2.0)]]  # noqa: UP007
Temperature = Union[Annotated[int, msgspec.Meta(ge=0, le=2)], Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]]  # noqa: UP007
TopP = Union[Annotated[int, msgspec.Meta(ge=0, le=1)], Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]]  # noqa: UP007
MaxTokens = Annotated[int, msgspec.Meta(ge=1)]
Model = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One turn of the conversation."""

    role: Role
    content: str
    name: str | None = None


def _new_uuid() -> str:
    return str(_uuid.uuid4())


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The request object, with the protocol's defaults."""

    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    frequency_penalty: Penalty = 0
    max_tokens: MaxTokens = 4000
    model: Model = DEFAULT_MODEL
    presence_penalty: Penalty = 0
    temperature: Temperature = 1
    top_p: TopP = 1
    stream: bool = True
    uuid: RequestId = msgspec.field(default_factory=_new_uuid)


#: The parameters a caller may set besides ``messages``.
PARAMETERS = frozenset(ChatRequest.__struct_fields__) - {"messages"}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ChatRequest)


def _invalid(exc: msgspec.ValidationError) -> ValidationError:
    # msgspec names the path as `$.messages[0].role`; "request" reads better in a message to a user.
    return ValidationError("invalid chat request: " + str(exc).replace("`$", "`request"))


def build_request(messages: Iterable[Mapping[str, Any] | Message], **params: Any) -> ChatRequest:
    """Validate ``messages`` and ``params`` into a :class:`ChatRequest`.

    Parameters left out, or given as ``None``, take the protocol's defaults.
    """
    unknown = params.keys() - PARAMETERS
    if unknown:
        raise ValidationError(
            f"unknown parameter(s): {', '.join(sorted(unknown))}; "
            f"expected some of: {', '.join(sorted(PARAMETERS))}"
        )
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        raise ValidationError("messages must be a list of {'role': ..., 'content': ...} objects")
    fields: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
    fields["messages"] = [msgspec.structs.asdict(m) if isinstance(m, Message) else m for m in messages]
    try:
        return msgspec.convert(fields, ChatRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None


def encode(request: ChatRequest) -> bytes:
    """The request's JSON, as it goes inside the envelope."""
    try:
        return _encoder.encode(request)
    except UnicodeEncodeError:  # a lone surrogate: a Python str, but no Unicode text JSON can carry
        raise ValidationError(
            "chat request holds text that is not valid Unicode (a lone surrogate)"
        ) from None


def parse_request(data: bytes | str) -> ChatRequest:
    """Parse and validate a request's JSON; raise :class:`ValidationError` when it is not one."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise ValidationError(f"chat request is not valid JSON: {exc}") from None
    except UnicodeDecodeError:  # msgspec's error for invalid UTF-8 inside a string
        raise ValidationError("chat request is not valid UTF-8") from None
