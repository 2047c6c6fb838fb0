"""A chat request as one of the two chat endpoints received it, and the forms the backends need.

``/api/chat/stream`` gives a validated :class:`~getgpt.protocol.request.ChatRequest` (the seed's nine
fields, then any OpenAI field). ``/v1/chat/completions`` gives OpenAI's request object, kept as
the client's own bytes and decoded once, fields in the client's order, and checked no further
than the server must: a gateway forwards what its upstream accepts, not what this server would.
Each form is made from the other only when a backend asks for it:

- :meth:`Chat.openai_body` -- the JSON to send an OpenAI-compatible upstream: from ``/v1`` the
  client's bytes untouched unless the server owns a change (the model, ``stream_options``);
- :attr:`Chat.request` -- the GetGpt request, for the echo and the chain; from ``/v1`` it is
  validated then, so an invalid request is refused with 400 naming the field.
"""

from __future__ import annotations

import uuid as _uuid
from typing import Any

import msgspec

from ...protocol.errors import ValidationError
from ...protocol.request import ChatRequest, request_from
from ..api_error import ApiError

__all__ = ["Chat", "invalid", "not_served"]

_encode = msgspec.json.encode
# The protocol's defaults mean "no preference": an OpenAI upstream gets its own defaults instead.
_NO_PREFERENCE: dict[str, object] = {
    "frequency_penalty": 0,
    "max_tokens": 4000,
    "presence_penalty": 0,
    "temperature": 1,
    "top_p": 1,
}
_ADD_USAGE = b',"stream_options":{"include_usage":true}}'


def invalid(message: str, param: str | None, code: str = "invalid_request") -> ApiError:
    """A 400 for a request the server cannot take, naming the field at fault as OpenAI does."""
    return ApiError(400, message, code=code, param=param)


def not_served(backend: str, path: str) -> ApiError:
    """A 400 for a route of OpenAI's API that only an OpenAI-compatible upstream can serve."""
    return ApiError(
        400,
        f"the {backend} backend does not serve POST /v1{path}: a server started with --backend openai "
        "--upstream <an OpenAI-compatible /v1 URL> forwards it to its upstream",
        code="unsupported_endpoint",
    )


class Chat:
    """One chat request; see the module docstring."""

    __slots__ = ("_fields", "_request", "_uuid", "include_usage", "model", "raw", "stream", "uuid_sent")

    def __init__(
        self,
        *,
        model: str,
        stream: bool,
        include_usage: bool,
        uuid: str | None,
        request: ChatRequest | None = None,
        fields: dict[str, Any] | None = None,
        raw: bytes | None = None,
        uuid_sent: bool = True,
    ) -> None:
        #: The model the client asked for.
        self.model = model
        self.stream = stream
        #: Whether the client asked for the usage chunk at the end of the stream.
        self.include_usage = include_usage
        self._uuid = uuid
        #: Whether the client's request carried its uuid (one made for it names no request).
        self.uuid_sent = uuid_sent
        #: The client's JSON bytes, from ``/v1``; None from the GetGpt endpoint.
        self.raw = raw
        self._request = request
        self._fields = fields

    @classmethod
    def from_getgpt(cls, request: ChatRequest, *, uuid_sent: bool = True) -> Chat:
        """``uuid_sent``: the request named its uuid (else the protocol's default made one for it)."""
        options = request.extra.get("stream_options") if request.extra else None
        include_usage = request.stream and isinstance(options, dict) and options.get("include_usage") is True
        return cls(
            model=request.model,
            stream=request.stream,
            include_usage=include_usage,
            uuid=request.uuid,
            request=request,
            uuid_sent=uuid_sent,
        )

    @classmethod
    def from_openai(
        cls, fields: dict[str, Any], raw: bytes, model: str, stream: bool, include_usage: bool
    ) -> Chat:
        uuid = fields.get("uuid")  # an OpenAI request has none, unless its client put one in
        sent = isinstance(uuid, str)
        return cls(
            model=model,
            stream=stream,
            include_usage=include_usage,
            # None: made when first asked for (a forwarded request never needs one)
            uuid=uuid if sent else None,
            fields=fields,
            raw=raw,
            uuid_sent=sent,
        )

    @property
    def sent_uuid(self) -> str | None:
        """The uuid the client's request carried, or None: the one a replay would repeat."""
        return self.uuid if self.uuid_sent else None

    @property
    def uuid(self) -> str:
        """The GetGpt request's uuid; for a ``/v1`` request, its ``uuid`` field, or a fresh one."""
        if self._uuid is None:
            self._uuid = str(_uuid.uuid4())
        return self._uuid

    @property
    def fields(self) -> dict[str, Any]:
        """The request as an OpenAI chat request object, fields in order.

        From the GetGpt endpoint: the messages, the nine fields but those at the protocol's
        defaults (which mean "no preference") and the ``uuid``, then the extra fields.
        """
        if self._fields is None:
            request = self._request
            assert request is not None
            fields: dict[str, Any] = {"messages": msgspec.to_builtins(request.messages)}
            for name in ChatRequest.__struct_fields__[1:]:
                value = getattr(request, name)
                if name in ("uuid", "extra") or _NO_PREFERENCE.get(name) == value:
                    continue
                fields[name] = value
            fields.update(request.extra)
            self._fields = fields
        return self._fields

    @property
    def request(self) -> ChatRequest:
        """The request in the GetGpt protocol's form; raises a 400 :class:`ApiError` if it has none."""
        if self._request is None:
            self._request = _as_getgpt(self.fields, self.uuid)
        return self._request

    @property
    def token_limit(self) -> int | None:
        """The most tokens the reply may have, if the client set it (``max_completion_tokens`` first).

        On the GetGpt endpoint ``max_tokens`` always has a value (4000 by default).
        """
        if self.raw is None:
            request = self.request
            limit = request.extra.get("max_completion_tokens")
            if limit is None:
                limit = request.max_tokens
        else:
            fields = self.fields
            limit = fields.get("max_completion_tokens")
            if limit is None:
                limit = fields.get("max_tokens")
        if limit is None:
            return None
        limit = _count_of(limit)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            name = "max_completion_tokens" if "max_completion_tokens" in self.fields else "max_tokens"
            raise invalid(f"{name} must be an integer of at least 1, not {limit!r}", name)
        return limit

    def openai_body(self, model: str | None, add_usage: bool) -> bytes:
        """The JSON for an OpenAI-compatible upstream; ``model`` replaces the client's when given,
        ``add_usage`` asks for the usage chunk (the caller strips it when the client did not)."""
        raw = self.raw
        if raw is not None and model in (None, self.fields.get("model")):
            if not add_usage:
                return raw
            if "stream_options" not in self.fields:
                # The one change, spliced in at the end: every byte the client sent stays as it was.
                end = raw.rstrip()
                return end[:-1] + _ADD_USAGE
        fields = dict(self.fields)
        if model is not None:
            fields["model"] = model
        if add_usage:
            options = fields.get("stream_options")
            fields["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        return _encode(fields)


def _count_of(value: Any) -> Any:
    """An integral float as the int it is (JSON has one number type); anything else as given."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _as_getgpt(fields: dict[str, Any], uuid: str) -> ChatRequest:
    """An OpenAI request object as the GetGpt protocol's request: the nine fields and the rest."""
    value = {"uuid": uuid, **fields}
    if "max_tokens" in value:
        value["max_tokens"] = _count_of(value["max_tokens"])
    try:
        return request_from(value)
    except ValidationError as exc:
        raise invalid(exc.message, exc.param) from None
