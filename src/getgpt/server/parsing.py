"""Turning a request body into a :class:`~getgpt.request.ChatRequest`, for both chat endpoints.

``/api/chat/stream`` carries the GetGpt envelope, ``{"signature": ...}``, around the protocol's own
request; ``/v1/chat/completions`` carries OpenAI's request, which is mapped onto the same model so
that one validation (:func:`getgpt.request.build_request`) serves both.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .. import envelope
from ..errors import SignatureError, ValidationError
from ..request import DEFAULT_MODEL, ChatRequest, build_request, parse_request
from .api_error import ApiError

__all__ = ["parse_envelope", "parse_openai"]


class _Envelope(msgspec.Struct):
    signature: str


class _Part(msgspec.Struct):
    type: str
    text: str | None = None


class _Message(msgspec.Struct):
    role: str
    content: str | list[_Part] | None = None
    name: str | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class _OpenAIRequest(msgspec.Struct):
    """The fields of OpenAI's request this server uses; the SDK may send others, which are ignored."""

    messages: list[_Message]
    model: str = DEFAULT_MODEL
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    # Floats too: JSON has one number type, and 100.0 is as good a count as 100.
    max_tokens: int | float | None = None
    max_completion_tokens: int | float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    n: int | None = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_openai = msgspec.json.Decoder(_OpenAIRequest).decode
# OpenAI's newer name for the system role.
_ROLES = {"developer": "system"}


def _not_json(detail: object) -> ApiError:
    return ApiError(400, f"the request body is not valid JSON: {detail}", code="invalid_json")


def _undecodable(exc: UnicodeDecodeError | RecursionError) -> ApiError:
    # msgspec raises these outside its own errors: for invalid UTF-8 inside a string, and for
    # JSON nested past its depth limit (even inside a field that would be ignored).
    if isinstance(exc, UnicodeDecodeError):
        return _not_json("a string holds invalid UTF-8")
    return ApiError(400, "the request body nests JSON too deeply", code="invalid_json")


def _out_of_range(exc: msgspec.DecodeError) -> ApiError | None:
    # A number no float holds (1e999) is one error with one status on both endpoints: msgspec
    # reports it as a validation error of the typed /v1 body, and as undecodable JSON otherwise.
    detail = str(exc)
    if not detail.startswith("Number out of range"):
        return None
    where = detail.partition(" - at ")[2].replace("`$", "`request")
    at = f" at {where}" if where and "[...]" not in where else ""
    return ApiError(400, f"the request holds a number out of range{at}", code="invalid_json")


def _invalid(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(422, message, code=code)


def _count(request: ChatRequest, max_messages: int) -> ChatRequest:
    if len(request.messages) > max_messages:
        raise _invalid(
            f"too many messages: {len(request.messages)}, at most {max_messages} allowed", "too_many_messages"
        )
    return request


def parse_envelope(body: bytes, max_messages: int) -> ChatRequest:
    """The request inside a GetGpt envelope: 400 for a bad envelope, 422 for a bad request inside."""
    try:
        signature = _decode_envelope(body).signature
    except msgspec.ValidationError as exc:
        raise ApiError(
            400, f'the body must be {{"signature": "<hex>"}}: {exc}', code="bad_signature"
        ) from None
    except msgspec.DecodeError as exc:
        raise _not_json(exc) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise _undecodable(exc) from None
    try:
        text = envelope.decrypt(signature)
    except SignatureError as exc:
        raise ApiError(400, str(exc), code="bad_signature") from None
    try:
        request = parse_request(text)
    except ValidationError as exc:
        try:
            msgspec.json.decode(text)
        except msgspec.DecodeError as bad:
            out_of_range = _out_of_range(bad)
            if out_of_range is not None:
                raise out_of_range from None
            raise ApiError(
                400, "the signature decrypts to text that is not JSON", code="invalid_json"
            ) from None
        except RecursionError:
            pass  # JSON, if too deep to read here: the request's own error says what is wrong
        raise _invalid(str(exc)) from None
    return _count(request, max_messages)


def _text(message: _Message, index: int) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    if content is None:
        raise _invalid(f"messages[{index}] has no content")
    texts: list[str] = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise _invalid(f"messages[{index}]: only text content is supported, not {part.type!r}")
        texts.append(part.text)
    return "".join(texts)


def _count_of(value: float | None) -> float | None:
    """An integral float as the int it is; anything else as given, for validation to judge."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def parse_openai(body: bytes, max_messages: int) -> tuple[ChatRequest, bool]:
    """An OpenAI chat request as a :class:`ChatRequest`, and whether usage was asked for in the stream."""
    try:
        raw = _decode_openai(body)
    except msgspec.ValidationError as exc:
        invalid = _invalid(f"invalid chat request: {exc}".replace("`$", "`request"))
        raise _out_of_range(exc) or invalid from None
    except msgspec.DecodeError as exc:
        raise _not_json(exc) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise _undecodable(exc) from None
    if raw.max_tokens is not None and raw.max_completion_tokens is not None:
        # Only one is used, but a bad value in the other is still a bad request.
        legacy = _count_of(raw.max_tokens)
        if not isinstance(legacy, int) or legacy < 1:
            raise _invalid(f"max_tokens must be an integer of at least 1, not {raw.max_tokens}")
    if raw.n not in (None, 1):
        raise _invalid(f"n must be 1 here, not {raw.n}")
    if len(raw.messages) > max_messages:
        raise _invalid(
            f"too many messages: {len(raw.messages)}, at most {max_messages} allowed", "too_many_messages"
        )
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(raw.messages):
        item: dict[str, Any] = {
            "role": _ROLES.get(message.role, message.role),
            "content": _text(message, index),
        }
        if message.name is not None:
            item["name"] = message.name
        messages.append(item)
    try:
        request = build_request(
            messages,
            model=raw.model,
            stream=bool(raw.stream),
            temperature=raw.temperature,
            top_p=raw.top_p,
            max_tokens=_count_of(
                raw.max_completion_tokens if raw.max_completion_tokens is not None else raw.max_tokens
            ),
            frequency_penalty=raw.frequency_penalty,
            presence_penalty=raw.presence_penalty,
        )
    except ValidationError as exc:
        raise _invalid(str(exc)) from None
    include_usage = bool(raw.stream and raw.stream_options and raw.stream_options.include_usage)
    return request, include_usage
