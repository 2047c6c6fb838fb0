"""The ASGI application: the GetGpt endpoint, the OpenAI-compatible gateway, health, the web page.

Routes:

- ``POST /api/chat/stream`` -- the GetGpt protocol: ``{"signature": ...}`` in, an event stream of
  ``chat.completion.chunk`` events out with status 200 (the original service answered 201; clients
  accept any 2xx), or one ``chat.completion`` JSON object when the request says ``"stream": false``.
- ``POST /v1/chat/completions``, ``GET /v1/models`` and ``/v1/models/{id}`` -- OpenAI's API, for the
  openai SDK and friends; ``POST /v1/embeddings``, ``/v1/completions``, ``/v1/responses`` forwarded
  to the upstream as they are (the ``openai`` backend; the others answer 400 naming it).
- ``GET /healthz`` -- ``{"status": "ok", "active_slots": ..., ...}``: the liveness check; with a
  forwarding backend, ``upstreams`` lists each upstream's state (never its URL or key).
- ``GET /readyz`` -- 200 while the process takes requests; 503 once it drains (SIGTERM), while
  the shared state or the database it needs is unreachable under ``--redis-failure closed`` or
  ``--db-failure closed``, or while no upstream is healthy.
- ``GET /v1/usage`` (with ``--db``), ``/admin/keys`` and ``/admin/usage`` (with
  ``GETGPT_ADMIN_KEY``): a key's own usage, the admin API (:mod:`getgpt.server.admission.admin`).
- ``GET /metrics`` -- Prometheus metrics (:mod:`getgpt.server.operations.prometheus`).
- ``GET /openapi.json`` -- the OpenAPI document of these routes.
- ``GET /`` and ``GET /static/<name>`` -- the web chat page from the package's ``web/`` directory.

Every request takes one path, whatever middleware is installed (CORS, the replay guard's, one
of the caller's): that middleware, then the two chat endpoints and the forwarded routes -- plain
ASGI callables, found by path -- called directly; the other routes through Starlette's error
handling and routing as usual.

A response a forwarding backend's upstream answered names it in ``X-Getgpt-Upstream`` (unless
``--expose-upstream false``), and its access-log line names it too.

Building the app is a few named steps (:func:`create_app`): the parts every endpoint shares
(settings, backend, slots, drain, check lists), the endpoints, the routes, the lifespan, what
``app.state`` shows, and the defences the settings switch on.

Request checks (API keys, rate limits, replay refusal) hook in through two lists on ``app.state``,
run before any backend work: ``request_checks`` -- ``async def check(scope) -> None`` -- run before
the body is read (and before ``/v1/models`` asks the backend); ``chat_checks`` -- ``async def
check(scope, chat) -> None`` -- run on the parsed :class:`~getgpt.server.chat.request.Chat` (its
``uuid``, ``model``, ``stream``; ``chat.request`` is the GetGpt form, which a ``/v1`` request gets
only if it has one). A check refuses a request by raising
:class:`~getgpt.server.api_error.ApiError` (its ``headers`` go on the error response). ``model_checks`` --
``async def check(scope, model) -> None`` -- run on the model a chat request or a forwarded
request's body names (the key store's allowed models).

With ``--db`` every request to these endpoints, refused or answered, is settled with the key
store (:class:`~getgpt.server.admission.keys.Keyring`) once its answer has gone: one ledger
record, and its key charged the tokens its slot's outcome reports (or an estimate).
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admission.security import KNOWN_AS
from .admission.security import install as install_security
from .admission.slot import TIMING, Slot, Slots
from .api_error import ApiError
from .backends.base import Backend, ForwardingBackend, make_backend
from .chat.parsing import parse_envelope, parse_openai, refuse_repeated_keys
from .chat.pump import Ending, ReplyOptions, WriteBudget, deliver, pass_on
from .chat.request import Chat, not_served
from .chat.wire import estimate_tokens
from .config import ServerConfig
from .edge.body import BodyBudget, ClientGone, HeldBody, read_json_body
from .edge.responses import STREAM_HEADERS, send_error
from .edge.scope import header
from .operations.counts import Counts
from .operations.drain import Drain
from .operations.logs import REQUEST_ID, UPSTREAM, request_id
from .operations.prometheus import CONTENT_TYPE, PrometheusMetrics, route_of

if TYPE_CHECKING:
    from ..protocol.reply import Usage
    from .admission.keys import Keyring

__all__ = ["ChatCheck", "GetGptApp", "RequestCheck", "create_app"]

log = logging.getLogger("getgpt.server")

RequestCheck = Callable[[Scope], Awaitable[None]]
ChatCheck = Callable[[Scope, Chat], Awaitable[None]]
ModelCheck = Callable[[Scope, "str | None"], Awaitable[None]]
Parser = Callable[[bytes, int], Chat]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_NO_WEB_UI = (
    "<!doctype html><meta charset=utf-8><title>getgpt</title>"
    "<p>getgpt server is running. The web UI is not installed.</p>"
)
#: OpenAI's routes besides chat that the ``openai`` backend forwards as they are.
FORWARDED = ("/embeddings", "/completions", "/responses")
# Where an admitted request's Slot is left in its ASGI scope, for its response's start.
_SLOT = "getgpt.slot"
_object_of = msgspec.json.Decoder(dict[str, Any]).decode


class _Timing:
    """When a request arrived, and what the app's ``send`` saw of its response: the status, and
    when the first bytes of its body went out (a reply slot's record reads them)."""

    __slots__ = ("arrived", "first_body", "status")

    def __init__(self) -> None:
        self.arrived = time.perf_counter()
        self.status = 0
        self.first_body: float | None = None


# The page's own <meta> policy, and what only a header can say: no site may frame the page
# (frame-ancestors is ignored in <meta>), so it cannot be overlaid to trick clicks.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _PageHeaders:
    """ASGI middleware for the page's files: adds :data:`PAGE_HEADERS` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(name.lower().encode(), value.encode()) for name, value in PAGE_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, add_headers)


@dataclass
class _Parts:
    """What every POST endpoint of one app shares."""

    config: ServerConfig
    backend: Backend
    slots: Slots
    budget: WriteBudget
    bodies: BodyBudget
    drain: Drain
    request_checks: list[RequestCheck]
    chat_checks: list[ChatCheck]
    model_checks: list[ModelCheck]
    #: The key store and the usage ledger (--db), else None.
    keyring: Keyring | None = None


class _Endpoint:
    """A POST endpoint that takes a JSON body and a reply slot: the chat endpoints and the
    forwarded routes alike. Admission -- request checks, the body, the slot -- is written once
    here; :meth:`_admit` and :meth:`_respond` are each endpoint's own."""

    def __init__(self, parts: _Parts, route: str) -> None:
        self.parts = parts
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The body's share of the body budget, held until the request is answered: its decoded
        # form lives as long (edge/body.py).
        held = self.parts.bodies.hold()
        try:
            await self._serve(scope, receive, send, held)
        except Exception:
            # A bug must cost one request, never the process, and never show the client a traceback.
            log.exception("request to %s failed", self.route)
            # If the response had already begun this fails, and the client sees the stream cut short.
            with contextlib.suppress(Exception):
                await send_error(
                    send, ApiError(500, "internal server error", type="server_error", code="internal")
                )
        finally:
            held.release()

    async def _serve(self, scope: Scope, receive: Receive, send: Send, held: HeldBody) -> None:
        parts = self.parts
        config, slots = parts.config, parts.slots
        try:
            for check in parts.request_checks:
                await check(scope)
            try:
                body = await read_json_body(scope, receive, config.max_body_bytes, config.body_timeout, held)
            except ApiError as exc:
                slots.refuse(exc)
                await send_error(send, exc, close=True)  # the rest of the body is unread
                return
            admitted = await self._admit(scope, body)
            slot = slots.take(self.route, scope[TIMING], model=self._model(admitted), key=scope.get(KNOWN_AS))
            scope[_SLOT] = slot  # for the response's start: the upstream its outcome names
        except ClientGone:
            return
        except ApiError as exc:
            slots.refuse(exc)
            await send_error(send, exc)
            if parts.keyring is not None:
                await parts.keyring.settle(scope, self.route, None)
            return
        if parts.keyring is not None:
            slot.prompt_chars = self._prompt_chars(admitted)
            slot.charge = functools.partial(parts.keyring.charge, scope, slot)
        with slot:
            await self._respond(receive, send, admitted, slot)
        if parts.keyring is not None:
            await parts.keyring.settle(scope, self.route, slot)

    def _prompt_chars(self, admitted: Any) -> int:
        """Characters of the request's prompt, for an estimate when no usage is reported."""
        return 0

    async def _admit(self, scope: Scope, body: bytes) -> Any:
        """What the reply needs from ``body``, or an :class:`ApiError` refusing it."""
        raise NotImplementedError

    def _model(self, admitted: Any) -> str | None:
        """The model the admitted request asks for, if it names one."""
        return None

    async def _respond(self, receive: Receive, send: Send, admitted: Any, slot: Slot) -> None:
        """Send the response, releasing ``slot`` with how it ended (``with slot`` releases it otherwise)."""
        raise NotImplementedError


class _Chat(_Endpoint):
    """One chat endpoint: its parser, the chat checks and the backend's check, then the reply."""

    def __init__(self, parts: _Parts, route: str, parse: Parser) -> None:
        super().__init__(parts, route)
        self.parse = parse

    async def _admit(self, scope: Scope, body: bytes) -> Chat:
        parts = self.parts
        chat = self.parse(body, parts.config.max_messages)
        for model_check in parts.model_checks:
            await model_check(scope, chat.model)
        for chat_check in parts.chat_checks:
            await chat_check(scope, chat)
        parts.backend.check(chat)
        return chat

    def _model(self, chat: Chat) -> str:
        return chat.model

    def _prompt_chars(self, chat: Chat) -> int:
        if chat.raw is not None:
            return len(chat.raw)
        request = chat.request
        return sum(len(str(message.content or "")) for message in request.messages) if request else 0

    async def _respond(self, receive: Receive, send: Send, chat: Chat, slot: Slot) -> None:
        parts = self.parts
        log.debug("chat: model=%s stream=%s", chat.model, chat.stream)
        reply = ReplyOptions(
            model=chat.model,
            stream=chat.stream,
            include_usage=chat.include_usage,
            passthrough=parts.backend.passthrough,
        )
        pieces: AsyncIterator[Any] = parts.backend.stream(chat, slot.outcome)
        await deliver(receive, send, pieces, reply, slot, budget=parts.budget, drain=parts.drain)


class _Forward(_Endpoint):
    """One of OpenAI's other routes (``/v1/embeddings``, ``/v1/completions``, ``/v1/responses``):
    the chat endpoints' request checks, body limits and reply slots, then the upstream's response
    passed on as it comes, stopped when the client leaves."""

    def __init__(self, parts: _Parts, route: str, path: str) -> None:
        super().__init__(parts, route)
        self.path = path

    async def _admit(self, scope: Scope, body: bytes) -> bytes:
        parts = self.parts
        backend = parts.backend
        if parts.model_checks:
            try:
                model = _object_of(body).get("model")
            except msgspec.DecodeError:
                model = None  # the upstream says what is wrong with it
            for model_check in parts.model_checks:
                await model_check(scope, model if isinstance(model, str) else None)
        if not backend.forwards_routes:
            raise not_served(backend.name, self.path)
        refuse_repeated_keys(body)
        return body

    def _model(self, body: bytes) -> str | None:
        if self.parts.keyring is None:
            return None  # the body is not looked into
        try:
            model = _object_of(body).get("model")
        except msgspec.DecodeError:
            return None
        return model if isinstance(model, str) else None

    def _prompt_chars(self, body: bytes) -> int:
        return len(body)

    async def _respond(self, receive: Receive, send: Send, body: bytes, slot: Slot) -> None:
        try:
            response = await self.parts.backend.forward(self.path, body, slot.outcome)
        except ApiError as exc:
            slot.release(Ending.ERROR)
            await send_error(send, exc)
            return
        try:
            kind = response.headers.get("content-type", "application/json").encode("latin-1")
            headers = [(b"content-type", kind)]
            if kind.startswith(b"text/event-stream"):
                headers = [(b"content-type", kind), *STREAM_HEADERS[1:]]
            reads = response.reads()
            if self.parts.keyring is not None:
                reads = _Tail(slot, kind.startswith(b"text/event-stream")).keep(reads)
            await pass_on(
                receive,
                send,
                response.status_code,
                headers,
                reads,
                slot=slot,
                budget=self.parts.budget,
                drain=self.parts.drain,
            )
        finally:
            await response.aclose()


class _Tail:
    """The end of a forwarded answer, kept to read its ``usage``: the whole of a JSON body up to
    :data:`WHOLE` bytes, the last :data:`WHOLE` bytes of an event stream. Once the answer has
    ended, its usage goes on the slot and the slot's key is charged -- before the last bytes go
    out, as :func:`pass_on` waits for this to end first."""

    WHOLE = 1 << 20

    def __init__(self, slot: Slot, events: bool) -> None:
        self.slot = slot
        self.is_events = events
        self.reads: list[bytes] = []
        self.size = 0
        self.cut = False
        self.events = 0

    async def keep(self, reads: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for read in reads:
                self.reads.append(read)
                self.size += len(read)
                self.events += read.count(b"data:")
                while self.size > self.WHOLE and len(self.reads) > 1:
                    self.size -= len(self.reads.pop(0))
                    self.cut = True
                yield read
        finally:
            closing = getattr(reads, "aclose", None)
            if closing is not None:
                await closing()
            slot = self.slot
            slot.outcome.usage, slot.sent_tokens = self.usage(self.is_events)
            if slot.charge is not None:
                await slot.charge()

    def usage(self, events: bool) -> tuple[Usage | None, int]:
        """The usage the answer reported, and an estimate of its completion tokens."""
        body = b"".join(self.reads)
        if not events:
            return (None if self.cut else _usage_in(body)), estimate_tokens(self.size)
        for event in reversed(body.split(b"\n\n")):
            if b'"usage"' in event:
                for line in event.split(b"\n"):
                    if line.startswith(b"data:"):
                        found = _usage_in(line[5:].strip())
                        if found is not None:
                            return found, self.events
        return None, self.events


def _usage_in(data: bytes) -> Usage | None:
    """The usage in a forwarded JSON object: chat's and completions' fields, or the Responses
    API's (``input_tokens``/``output_tokens``, also inside ``response``); embeddings report prompt
    tokens only, so their completion is ``total - prompt`` (0)."""
    from ..protocol.reply import Usage

    try:
        value = _object_of(data)
    except msgspec.DecodeError:
        return None
    usage = value.get("usage")
    if not isinstance(usage, dict) and isinstance(value.get("response"), dict):
        usage = value["response"].get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    if completion is None and isinstance(prompt, int) and isinstance(usage.get("total_tokens"), int):
        completion = usage["total_tokens"] - prompt
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    more = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
    return Usage(
        prompt,
        completion,
        prompt + completion,
        details if isinstance(details, dict) else None,
        more if isinstance(more, dict) else None,
    )


class _Pages:
    """The app's GET routes: health, readiness, metrics, models, its OpenAPI document, the page."""

    def __init__(self, parts: _Parts) -> None:
        self.parts = parts

    async def healthz(self, request: Request) -> Response:
        from .. import __version__

        backend = self.parts.backend
        answer: dict[str, Any] = {
            "status": "ok",
            **self.parts.slots.counts.snapshot(),
            "backend": backend.name,
            "version": __version__,
            "pid": os.getpid(),  # which worker answered, with --workers
        }
        if isinstance(backend, ForwardingBackend):
            answer["upstreams"] = backend.health()
        return JSONResponse(answer)

    async def readyz(self, request: Request) -> Response:
        shared = request.app.state.shared
        keyring = self.parts.keyring
        states = {"redis": "off" if shared is None else shared.status}
        if keyring is not None:  # without --db the answer stays what it always was
            states["database"] = keyring.status
        if self.parts.drain.draining:
            return JSONResponse({"status": "draining", **states}, status_code=503)
        down = [part for part in (shared, keyring) if part is not None and not part.available]
        if any(not part.fail_open for part in down):
            return JSONResponse({"status": "unavailable", **states}, status_code=503)
        backend = self.parts.backend
        if isinstance(backend, ForwardingBackend) and not backend.ready():
            return JSONResponse({"status": "no_healthy_upstream", **states}, status_code=503)
        if down:
            return JSONResponse({"status": "degraded", **states})
        return JSONResponse({"status": "ready", **states})

    async def metrics(self, request: Request) -> Response:
        key = self.parts.config.metrics_key
        if key is not None:
            presented = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(presented, b"Bearer " + key.encode()):
                return _error_response(401, "/metrics needs its key", "invalid_request_error", "metrics_key")
        return Response(self.parts.slots.prometheus.exposition(), media_type=CONTENT_TYPE)

    async def _listed(self, request: Request) -> list[dict[str, Any]]:
        """The models, behind the chat routes' request checks: listing them may ask the upstream."""
        parts = self.parts
        try:
            for check in parts.request_checks:
                await check(request.scope)
        except ApiError as exc:
            parts.slots.refuse(exc)
            raise
        return await parts.backend.models()

    async def models(self, request: Request) -> Response:
        try:
            data = await self._listed(request)
        except ApiError as exc:
            return Response(exc.json(), exc.status, exc.headers, media_type="application/json")
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            data = await self._listed(request)
        except ApiError as exc:
            return Response(exc.json(), exc.status, exc.headers, media_type="application/json")
        for item in data:
            if item.get("id") == name:
                return JSONResponse(item)
        missing = ApiError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
        return Response(missing.json(), 404, media_type="application/json")

    async def openapi(self, request: Request) -> Response:
        from .. import __version__
        from .operations.openapi import openapi_document

        keys = self.parts.keyring is not None
        admin = keys and self.parts.config.admin_key is not None
        return JSONResponse(openapi_document(__version__, usage=keys, admin=admin))

    async def index(self, request: Request) -> Response:
        page = WEB_DIR / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
        return HTMLResponse(_NO_WEB_UI, headers=PAGE_HEADERS)


class _Dispatch:
    """Where every HTTP request goes once the installed middleware has seen it: a POST endpoint
    (chat or forwarded) by its path, called directly; anything else through Starlette's own
    error handling and routing (``routed``)."""

    def __init__(self, endpoints: dict[str, _Endpoint], routed: ASGIApp) -> None:
        self.endpoints = endpoints
        self.routed = routed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.routed(scope, receive, send)


class GetGptApp(Starlette):
    """Starlette, with one path for every request whatever middleware is installed: the middleware
    (``add_middleware``, ``middleware=``), then the POST endpoints called directly by path, the
    other routes through Starlette's routing.

    Every HTTP request gets its id (``X-Request-Id``, :mod:`getgpt.server.operations.logs`), is counted by
    route and status, and, while the process drains, is answered with ``Connection: close``.
    """

    def __init__(
        self,
        endpoints: dict[str, _Endpoint],
        *,
        prometheus: PrometheusMetrics,
        drain: Drain,
        expose_upstream: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._endpoints = endpoints
        self._prometheus = prometheus
        self._drain = drain
        self._expose_upstream = expose_upstream

    def build_middleware_stack(self) -> ASGIApp:
        # Starlette puts the installed middleware inside its own error handling, around the router;
        # here it goes around the dispatch, so the endpoints meet it too without paying for
        # Starlette's two wrappers (a Request object per request) on every chat request.
        installed, self.user_middleware = self.user_middleware, []
        try:
            routed = super().build_middleware_stack()
        finally:
            self.user_middleware = installed
        app: ASGIApp = _Dispatch(self._endpoints, routed)
        for middleware, args, kwargs in reversed(installed):
            app = middleware(app, *args, **kwargs)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        rid = request_id(header(scope, b"x-request-id"))
        timing = _Timing()
        scope[TIMING] = timing
        drain = self._drain
        expose = self._expose_upstream

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                timing.status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", rid)]
                if drain.draining:
                    headers.append((b"connection", b"close"))
                slot: Slot | None = scope.get(_SLOT)
                upstream = slot.outcome.upstream if slot is not None else None
                if upstream is not None:
                    UPSTREAM.set(upstream)  # for the access line uvicorn writes in send()
                    if expose:
                        headers.append((b"x-getgpt-upstream", upstream.encode()))
                message = {**message, "headers": headers}
            elif timing.first_body is None and message.get("body"):
                timing.first_body = time.perf_counter()
            await send(message)

        token = REQUEST_ID.set(rid.decode("ascii"))
        upstream_token = UPSTREAM.set(None)
        try:
            await super().__call__(scope, receive, send_marked)
        finally:
            UPSTREAM.reset(upstream_token)
            REQUEST_ID.reset(token)
            self._prometheus.request(route_of(scope["path"]), timing.status)


def _error_response(status: int, message: str, kind: str, code: str | int | None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}, status_code=status
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = _error_response(exc.status_code, exc.detail, "invalid_request_error", exc.status_code)
    response.headers.update(exc.headers or {})  # Allow, on a 405
    return response


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("request to %s failed", request.url.path, exc_info=exc)
    return _error_response(500, "internal server error", "server_error", "internal")


def create_app(config: ServerConfig | None = None) -> GetGptApp:
    """The server as an ASGI app; run it with uvicorn (``getgpt serve`` does)."""
    config = config or ServerConfig()
    parts = _parts(config)
    endpoints = _endpoints(parts)
    app = GetGptApp(
        endpoints,
        prometheus=parts.slots.prometheus,
        drain=parts.drain,
        expose_upstream=config.expose_upstream,
        routes=_routes(_Pages(parts), endpoints),
        lifespan=_lifespan(parts),
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    # Starlette answers "/static" or "/healthz/" with a redirect to an absolute URL built from
    # the request's Host header, which a client (or a poisoned cache in front) chooses: 404 instead.
    app.router.redirect_slashes = False
    _expose(app, parts)
    install_security(app, config)
    keyring = app.state.keyring
    if keyring is not None:
        from .admission.admin import routes as admin_routes

        parts.keyring = keyring
        for admin_route in admin_routes(keyring, config.admin_key):
            app.router.routes.insert(len(app.router.routes) - 2, admin_route)  # before the page's
    return app


def _parts(config: ServerConfig) -> _Parts:
    """What one app's endpoints and pages share, made from ``config``."""
    prometheus = PrometheusMetrics()
    backend = make_backend(config, prometheus)
    slots = Slots(config.max_streams, Counts(), prometheus)
    budget = WriteBudget(config.write_budget_bytes, config.stream_buffer_bytes, prometheus)
    bodies = BodyBudget(config.body_budget)
    bodies.on_change = prometheus.budget("bodies", config.body_budget, lambda: bodies.used)
    bodies.on_refusal = functools.partial(prometheus.budget_refused, "bodies")
    return _Parts(config, backend, slots, budget, bodies, Drain(config.shutdown_grace), [], [], [])


def _endpoints(parts: _Parts) -> dict[str, _Endpoint]:
    """The POST endpoints by path: the two chat endpoints and OpenAI's forwarded routes."""
    endpoints: dict[str, _Endpoint] = {
        path: _Chat(parts, path, parse)
        for path, parse in (("/api/chat/stream", parse_envelope), ("/v1/chat/completions", parse_openai))
    }
    for route in FORWARDED:
        endpoints["/v1" + route] = _Forward(parts, "/v1" + route, route)
    return endpoints


def _routes(pages: _Pages, endpoints: dict[str, _Endpoint]) -> list[BaseRoute]:
    """Starlette's routes. The POST endpoints are reached by the dispatch before routing; their
    routes are here for what routing says of another method (405) and for the route list."""
    return [
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in endpoints.items()),
        Route("/v1/models", pages.models, methods=["GET"]),
        Route("/v1/models/{name:path}", pages.model, methods=["GET"]),
        Route("/healthz", pages.healthz, methods=["GET"]),
        Route("/readyz", pages.readyz, methods=["GET"]),
        Route("/metrics", pages.metrics, methods=["GET"]),
        Route("/openapi.json", pages.openapi, methods=["GET"]),
        Route("/", pages.index, methods=["GET"]),
        Mount("/static", _PageHeaders(StaticFiles(directory=WEB_DIR, check_dir=False)), name="static"),
    ]


def _lifespan(parts: _Parts) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Start the shared state (Redis) with the app, and a forwarding backend's probes (sharing its
    cooldowns through Redis when there is one); close them and the backend when the app stops."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        shared = app.state.shared
        backend = parts.backend
        keyring = parts.keyring
        if shared is not None:
            await shared.start()
        if keyring is not None:
            await keyring.start()
        if isinstance(backend, ForwardingBackend):
            if shared is not None:
                from .admission.shared_state import SharedCooldowns

                backend.share(SharedCooldowns(shared))
            await backend.start()
        try:
            yield
        finally:
            # The ledger's last records are written before anything it may need is closed.
            if keyring is not None:
                await keyring.aclose()
            if shared is not None:
                await shared.aclose()
            await parts.backend.aclose()

    return lifespan


def _expose(app: GetGptApp, parts: _Parts) -> None:
    """What others read from ``app.state``: the request and chat check lists (see the module
    docstring), the settings, the backend, the counts, the drain; ``shared`` (Redis) is set by
    the security install when it needs one."""
    state = app.state
    state.config = parts.config
    state.backend = parts.backend
    state.slots = parts.slots
    state.counts = parts.slots.counts
    state.prometheus = parts.slots.prometheus
    state.drain = parts.drain
    state.shared = None
    state.keyring = None
    state.request_checks = parts.request_checks
    state.chat_checks = parts.chat_checks
    state.model_checks = parts.model_checks
