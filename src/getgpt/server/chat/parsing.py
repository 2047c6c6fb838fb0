"""Turning a request body into a :class:`~getgpt.server.chat.request.Chat`, for both chat endpoints.

``/api/chat/stream`` carries the GetGpt envelope, ``{"signature": ...}``, around the protocol's own
request, which is validated whole. ``/v1/chat/completions`` carries OpenAI's request, which is
checked only for what makes it a chat request at all (a JSON object with a list of message
objects) and for the server's own limits: the rest is the upstream's to judge, or the backend's
(:attr:`Chat.request` validates it when a backend needs the GetGpt form). Every refusal is a 400
``invalid_request_error`` naming the ``param`` at fault, as OpenAI answers.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ...protocol import envelope
from ...protocol.errors import SignatureError, ValidationError
from ...protocol.request import DEFAULT_MODEL, parse_request
from ..api_error import ApiError
from .request import Chat, invalid

__all__ = ["parse_envelope", "parse_openai"]


class _Envelope(msgspec.Struct):
    signature: str


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_any = msgspec.json.Decoder().decode


def _not_json(detail: object) -> ApiError:
    return ApiError(400, f"the request body is not valid JSON: {detail}", code="invalid_json")


def _undecodable(exc: UnicodeDecodeError | RecursionError) -> ApiError:
    # msgspec raises these outside its own errors: for invalid UTF-8 inside a string, and for
    # JSON nested past its depth limit (even inside a field that would be ignored).
    if isinstance(exc, UnicodeDecodeError):
        return _not_json("a string holds invalid UTF-8")
    return ApiError(400, "the request body nests JSON too deeply", code="invalid_json")


def _out_of_range(exc: msgspec.DecodeError) -> ApiError | None:
    # A number no float holds (1e999) is one error with one status on both endpoints.
    detail = str(exc)
    if not detail.startswith("Number out of range"):
        return None
    where = detail.partition(" - at ")[2].replace("`$", "`request")
    at = f" at {where}" if where and "[...]" not in where else ""
    return ApiError(400, f"the request holds a number out of range{at}", code="invalid_json")


def _too_many(count: int, max_messages: int) -> ApiError:
    return invalid(
        f"too many messages: {count}, at most {max_messages} allowed", "messages", "too_many_messages"
    )


def parse_envelope(body: bytes, max_messages: int) -> Chat:
    """The request inside a GetGpt envelope; a 400 for a bad envelope or a bad request inside."""
    try:
        signature = _decode_envelope(body).signature
    except msgspec.ValidationError as exc:
        raise ApiError(
            400, f'the body must be {{"signature": "<hex>"}}: {exc}', code="bad_signature", param="signature"
        ) from None
    except msgspec.DecodeError as exc:
        raise _not_json(exc) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise _undecodable(exc) from None
    try:
        text = envelope.decrypt(signature)
    except SignatureError as exc:
        raise ApiError(400, str(exc), code="bad_signature", param="signature") from None
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
                400, "the signature decrypts to text that is not JSON", code="invalid_json", param="signature"
            ) from None
        except RecursionError:
            pass  # JSON, if too deep to read here: the request's own error says what is wrong
        raise invalid(str(exc), exc.param) from None
    if len(request.messages) > max_messages:
        raise _too_many(len(request.messages), max_messages)
    # A key of the request is the only place '"uuid"' can stand in its JSON but a nested object's
    # key (a string value holds its quotes escaped): absent, the request surely named no uuid.
    return Chat.from_getgpt(request, uuid_sent='"uuid"' in text)


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def parse_openai(body: bytes, max_messages: int) -> Chat:
    """An OpenAI chat request: what makes it one is checked, the rest left as the client sent it."""
    try:
        fields: Any = _decode_any(body)
    except msgspec.DecodeError as exc:
        raise _out_of_range(exc) or _not_json(exc) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise _undecodable(exc) from None
    if not isinstance(fields, dict):
        raise invalid(f"the request body must be a JSON object, not {_kind(fields)}", None, "invalid_type")
    messages = fields.get("messages")
    if messages is None:
        raise invalid("missing required parameter: 'messages'", "messages", "missing_required_parameter")
    if not isinstance(messages, list):
        raise invalid(
            f"messages must be a list of message objects, not {_kind(messages)}", "messages", "invalid_type"
        )
    if not messages:
        raise invalid("messages must hold at least one message", "messages")
    if len(messages) > max_messages:
        raise _too_many(len(messages), max_messages)
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(
                f"messages[{index}] must be a message object, not {_kind(message)}",
                f"messages[{index}]",
                "invalid_type",
            )
    model = fields.get("model")
    if model is None:
        model = DEFAULT_MODEL
    elif not isinstance(model, str):
        raise invalid(f"model must be a string, not {_kind(model)}", "model", "invalid_type")
    stream = fields.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise invalid(f"stream must be a boolean, not {_kind(stream)}", "stream", "invalid_type")
    options = fields.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid(
            f"stream_options must be an object, not {_kind(options)}", "stream_options", "invalid_type"
        )
    include_usage = stream and options is not None and options.get("include_usage") is True
    return Chat.from_openai(fields, body, model, stream, include_usage)
