"""Turning a request body into a :class:`~getgpt.server.chat.request.Chat`, for both chat endpoints.

``/api/chat/stream`` carries the GetGpt envelope, ``{"signature": ...}``, around the protocol's own
request, which is validated whole. ``/v1/chat/completions`` carries OpenAI's request, which is
checked only for what makes it a chat request at all (a JSON object with a list of message
objects) and for the server's own limits: the rest is the upstream's to judge, or the backend's
(:attr:`Chat.request` validates it when a backend needs the GetGpt form). Every refusal is a 400
``invalid_request_error`` naming the ``param`` at fault, as OpenAI answers.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ...protocol import envelope
from ...protocol.errors import SignatureError, ValidationError
from ...protocol.request import DEFAULT_MODEL, parse_request
from ...protocol.untrusted import NOT_JSON, decode_json
from ..api_error import ApiError
from .request import Chat, invalid

__all__ = ["parse_envelope", "parse_openai", "refuse_repeated_keys", "repeated_key"]


class _Envelope(msgspec.Struct):
    signature: str


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
# The top level of an object, each value left as its JSON bytes (nothing below it is built).
_decode_top = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def repeated_key(body: bytes) -> str | None:
    """A key the JSON object ``body`` gives twice at its top level, or None.

    Decoders keep one of the two (msgspec and Python's the last, others the first), so a server
    and its upstream can read different values from the same bytes. The test counts quotes: one
    only stands in a string, so the object holds at least two per key it keeps (more for a key
    that writes a quote of its own as ``\\"``) and those of the values it keeps -- and a pair
    dropped as a repeat adds two more at least: the count is exact only with no repeat. 1 us on
    a small request; a decode of the top level on a large one. Raises what decoding raises for
    what is no JSON object, and RecursionError when the key must be named the slow way (a
    repeat, or a key with a quote of its own) and the object nests too deeply for it.
    """
    return _repeated(body, _decode_top(body))


def _repeated(body: bytes, top: dict[str, msgspec.Raw]) -> str | None:
    """:func:`repeated_key`, given ``body``'s top level already decoded."""
    quotes = 2 * len(top) + sum(bytes(value).count(b'"') for value in top.values())
    if body.count(b'"') == quotes:
        return None
    # A repeat (or a key with a quote of its own): which key, read the slow way.
    seen: set[str] = set()
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> None:
        # Called for every object, innermost first: the top level's is the last call.
        repeated.clear()
        seen.clear()
        for key, _ in items:
            if key in seen and not repeated:
                repeated.append(key)
            seen.add(key)

    json.loads(body, object_pairs_hook=pairs)
    return repeated[0] if repeated else None


def refuse_repeated_keys(body: bytes) -> None:
    """A 400 for a JSON object ``body`` that gives a top-level key twice; anything else passes."""
    try:
        top = _decode_top(body)
    except NOT_JSON:
        return  # not a JSON object: whoever reads it says so
    try:
        name = _repeated(body, top)
    except (RecursionError, ValueError):
        # Past the quick test, too deep for the slow one: refused rather than let through unseen.
        raise invalid(
            "the request gives a top-level key more than once, or nests too deeply to tell",
            None,
            "duplicate_key",
        ) from None
    if name is not None:
        raise invalid(
            f"the request gives the key {name!r} more than once: which one counts is not defined "
            "(servers disagree), so it is refused",
            name,
            "duplicate_key",
        )


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
        fields: Any = decode_json(body)
    except msgspec.DecodeError as exc:
        raise _out_of_range(exc) or _not_json(exc) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise _undecodable(exc) from None
    if not isinstance(fields, dict):
        raise invalid(f"the request body must be a JSON object, not {_kind(fields)}", None, "invalid_type")
    refuse_repeated_keys(body)
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
