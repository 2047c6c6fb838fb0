"""The forwarding backend: one backend for both kinds of upstream (:mod:`.kinds`).

Whatever the kind, the reply comes back through :class:`~getgpt.server.upstreams.relay.EventRelay`:
the upstream's events passed on untouched, its whole JSON reply likewise. The server owns only the
model (``--upstream-model``, ``--model-alias``), the upstream's credentials and, on the ``openai``
kind, ``stream_options.include_usage`` (asked for to count tokens; the usage chunk reaches only
a client that asked for it). An upstream's error keeps its status, body and ``Retry-After``,
but for a 401 (or 407): the client's own credentials were fine, the server's were not, so that
is the server's failure -- 502, with the upstream's message (a 401 passed on would tell the
client, and its SDK, that *its* key is wrong). A Cloudflare challenge page in front of the
upstream is likewise the server's 502, naming it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

import msgspec

from ...client.bodies import DEFAULT_MAX_REPLY_BYTES, aread_body, aread_excerpt
from ...client.statuses import error_message, is_cloudflare_block
from ...client.transport import AsyncResponse, Request
from ...protocol import errors
from ...protocol.reply import ReplyParser
from ..api_error import ApiError
from ..chat.request import Chat, not_served
from ..chat.wire import Outcome
from ..config import ServerConfig
from .kinds import KINDS, timeouts_of, upstream_key
from .relay import EventRelay, bad_upstream, completion_from_events, events_from_completion, usage_of

if TYPE_CHECKING:
    from ..operations.prometheus import PrometheusMetrics

__all__ = ["ForwardingBackend", "configured_models"]

log = logging.getLogger("getgpt.server")

_EXCERPT = 64 * 1024
# Statuses that are the server's own failure, not the client's: its credentials upstream.
_OURS = frozenset({401, 407})
_decode_any = msgspec.json.Decoder().decode


def configured_models(config: ServerConfig) -> list[dict[str, Any]]:
    """The model objects of the server's own ``--model`` names (and ``--upstream-model``)."""
    names = dict.fromkeys([*config.models, *([config.upstream_model] if config.upstream_model else [])])
    return [{"id": name, "object": "model", "created": 0, "owned_by": "getgpt"} for name in names]


class ForwardingBackend:
    """Forwards chat requests to an upstream of ``config.backend``'s kind; see the module docstring."""

    passthrough = True

    def __init__(self, config: ServerConfig, metrics: PrometheusMetrics | None = None) -> None:
        assert config.upstream is not None
        self.name = config.backend
        #: Where upstream latency and failures are counted (``/metrics``), if anywhere.
        self.telemetry = metrics
        # The server's own stream limit bounds the connections open upstream at once.
        self.upstream = KINDS[config.backend](
            config.upstream,
            key=upstream_key(config.upstream_key_env),
            timeouts=timeouts_of(config),
            ask_usage=config.upstream_usage,
        )
        self.forwards_routes = self.upstream.forwards_routes
        self.url = self.upstream.url
        self.model = config.upstream_model
        self.aliases = config.aliases
        self._configured = configured_models(config)
        self._models_ttl = config.models_cache_ttl
        self._models: list[dict[str, Any]] | None = None
        self._models_until = 0.0
        # --upstream-max-duration bounds the whole reply (its deadline).
        self.max_duration = config.upstream_max_duration

    def _deadline(self) -> float:
        """When a reply asked for now must have ended, body included (``time.monotonic()``)."""
        return time.monotonic() + self.max_duration

    def check(self, chat: Chat) -> None:
        self.upstream.check(chat)

    def _model(self, chat: Chat) -> str | None:
        """The model to send instead of the client's, if the server owns one."""
        return self.model or self.aliases.get(chat.model)

    async def stream(self, chat: Chat, outcome: Outcome) -> AsyncIterator[bytes]:
        body, strip_usage = self.upstream.body(chat, self._model(chat))
        response: AsyncResponse | None = None
        telemetry = self.telemetry
        started = time.perf_counter()
        response = await self._answer(
            self.upstream.transport.send(body, deadline=self._deadline()), telemetry
        )
        if telemetry is not None:
            telemetry.upstream(self.name, time.perf_counter() - started)
        try:
            if not 200 <= response.status_code < 300:
                if telemetry is not None:
                    telemetry.upstream_failed(self.name, response.status_code)
                raise await _upstream_status(response)
            kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if not chat.stream:
                yield await _whole(response, kind, chat.model, outcome)
                return
            if kind == "application/json":
                yield events_from_completion(await aread_body(response, DEFAULT_MAX_REPLY_BYTES))
                return
            relay = EventRelay(strip_usage=strip_usage)
            try:
                async for chunk in response.reads():
                    events = relay.feed(chunk)
                    if events:
                        yield events
                    if relay.error is not None or relay.done:
                        break
                else:
                    last = relay.close()
                    if last:
                        yield last
            finally:
                outcome.usage = relay.usage
            if relay.error is not None:
                if telemetry is not None:
                    telemetry.upstream_failed(self.name, "stream_error")
                raise relay.error
        except (errors.TransportError, errors.ProtocolError) as exc:
            if telemetry is not None:
                telemetry.upstream_failed(
                    self.name, "timeout" if isinstance(exc, errors.Timeout) else "protocol"
                )
            raise _broken_off(self.url, exc) from None
        finally:
            # Closing early (the client went away) closes the connection rather than reusing it.
            if response is not None:
                await response.aclose()

    async def _answer(
        self, sending: Awaitable[AsyncResponse], telemetry: PrometheusMetrics | None = None
    ) -> AsyncResponse:
        """The upstream's answer (its head) to a request being sent; no answer is the server's 502
        or 504, counted in ``telemetry`` when given."""
        try:
            return await sending
        except errors.TransportError as exc:
            if telemetry is not None:
                telemetry.upstream_failed(
                    self.name, "timeout" if isinstance(exc, errors.Timeout) else "connect"
                )
            raise _unreachable(self.url, exc) from None
        except errors.ProtocolError as exc:  # a head past the transport's bounds
            if telemetry is not None:
                telemetry.upstream_failed(self.name, "protocol")
            raise _broken_off(self.url, exc) from None

    async def models(self) -> list[dict[str, Any]]:
        """The upstream's models, asked again once ``models_cache_ttl`` has passed, with the aliases."""
        if not self.upstream.lists_models:
            return self._configured
        if self._models is not None and time.monotonic() < self._models_until:
            return self._models
        body = await self._get(self.upstream.base_path + "/models")
        try:
            listed = _decode_any(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            listed = None
        data = listed.get("data") if isinstance(listed, dict) else None
        if not isinstance(data, list):
            raise bad_upstream("its model list is not one")
        models = [model for model in data if isinstance(model, dict)]
        known = {model.get("id"): model for model in models}
        for alias, target in self.aliases.items():
            if alias not in known:
                origin = known.get(target, {})
                models.append(
                    {
                        "id": alias,
                        "object": "model",
                        "created": origin.get("created", 0),
                        "owned_by": origin.get("owned_by", "getgpt"),
                    }
                )
        self._models, self._models_until = models, time.monotonic() + self._models_ttl
        return models

    async def _get(self, target: str) -> bytes:
        response = await self._answer(
            self.upstream.transport.request(
                Request("GET", target, headers={"Accept": "application/json"}), deadline=self._deadline()
            )
        )
        try:
            if not 200 <= response.status_code < 300:
                raise await _upstream_status(response)
            return await aread_body(response, DEFAULT_MAX_REPLY_BYTES)
        except (errors.TransportError, errors.ProtocolError) as exc:
            raise _broken_off(self.url, exc) from None
        finally:
            await response.aclose()

    async def forward(self, path: str, body: bytes) -> AsyncResponse:
        """POST a request of OpenAI's other routes to the upstream as it came (but for an aliased model)."""
        if not self.forwards_routes:
            raise not_served(self.name, path)
        if self.aliases:
            body = _aliased(body, self.aliases)
        response = await self._answer(
            self.upstream.transport.request(
                Request("POST", self.upstream.base_path + path, headers={"Accept": "*/*"}, body=body),
                deadline=self._deadline(),
            )
        )
        if 200 <= response.status_code < 300:
            return response
        try:
            raise await _upstream_status(response)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self.upstream.aclose()


def _aliased(body: bytes, aliases: dict[str, str]) -> bytes:
    """``body`` with its ``model`` replaced when it names an alias; otherwise the bytes as they came."""
    try:
        fields = _decode_any(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return body  # not JSON: the upstream says so
    if isinstance(fields, dict) and isinstance(fields.get("model"), str) and fields["model"] in aliases:
        fields["model"] = aliases[fields["model"]]
        return msgspec.json.encode(fields)
    return body


async def _whole(response: AsyncResponse, kind: str, model: str, outcome: Outcome) -> bytes:
    """A non-streamed reply's body, passed on; a streamed one made whole (a GetGpt upstream may
    stream whatever was asked). Either is held whole, so either is refused past
    ``DEFAULT_MAX_REPLY_BYTES`` as it arrives."""
    if kind != "text/event-stream":
        body = await aread_body(response, DEFAULT_MAX_REPLY_BYTES)
        try:
            outcome.usage = usage_of(_decode_any(body))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            raise bad_upstream("its reply is not JSON") from None
        return body
    parser = ReplyParser()
    read = 0
    try:
        async for chunk in response.reads():
            read += len(chunk)
            if read > DEFAULT_MAX_REPLY_BYTES:
                raise errors.LimitExceeded(
                    f"the streamed reply, made whole, is larger than {DEFAULT_MAX_REPLY_BYTES >> 20} MiB"
                )
            parser.feed(chunk)
        parser.close()
    except errors.RemoteError as exc:
        raise ApiError(
            502, f"upstream: {exc.message}", type=exc.type or "upstream_error", code=exc.code
        ) from None
    except errors.ProtocolError as exc:
        raise bad_upstream(exc.message) from None
    outcome.usage = parser.usage
    return completion_from_events(parser, model)


async def _upstream_status(response: AsyncResponse) -> ApiError:
    """An upstream's refusal as the server's answer: its status, body and Retry-After, mostly."""
    excerpt = await aread_excerpt(response, _EXCERPT)
    status = response.status_code
    headers = {"Retry-After": response.headers["retry-after"]} if "retry-after" in response.headers else {}
    detail = _upstream_message(excerpt) or response.reason_phrase or "no detail"
    if is_cloudflare_block(response, excerpt):
        return ApiError(
            502,
            f"the upstream answered HTTP {status} with a Cloudflare challenge page, not its API",
            type="upstream_error",
            code="upstream_blocked",
        )
    if status in _OURS:
        log.warning("the upstream refused the server's credentials: HTTP %s", status)
        return ApiError(
            502,
            f"the upstream refused this server's credentials (HTTP {status}): {detail}",
            type="upstream_error",
            code="upstream_unauthorized",
        )
    try:
        whole = isinstance(_decode_any(excerpt), dict)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        whole = False
    return ApiError(
        status,
        f"upstream answered HTTP {status}: {detail}",
        type="upstream_error",
        code=status,
        headers=headers,
        body=excerpt if whole else None,
    )


def _upstream_message(body: bytes) -> str | None:
    message = error_message(body)
    if message is not None:
        return message[:500]
    text = body.decode("utf-8", "replace").strip()
    return text[:200] if text and not text.startswith(("<", "{", "[")) else None


def _broken_off(url: str, exc: Exception) -> ApiError:
    """A transport failure once the upstream had begun its reply."""
    if isinstance(exc, errors.Timeout):
        return _unreachable(url, exc)
    log.warning("upstream %s broke off its reply: %s", url, type(exc).__name__)
    return bad_upstream(f"its reply broke off ({type(exc).__name__}: {exc})")


def _unreachable(url: str, exc: Exception) -> ApiError:
    timed_out = isinstance(exc, errors.Timeout)
    what = "timed out" if timed_out else "failed"
    log.warning("upstream %s %s: %s", url, what, type(exc).__name__)
    return ApiError(
        504 if timed_out else 502,
        f"upstream {what} ({type(exc).__name__})",
        type="upstream_error",
        code="upstream_timeout" if timed_out else "upstream_unreachable",
    )
