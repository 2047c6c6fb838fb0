"""Faults: upstreams that die, hang, refuse or lie, and clients that walk away."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import getgpt
from tests.conftest import serve


def test_error_body_nested_past_the_json_limit_is_a_status_error() -> None:
    # Regression: the client read the error message with a generic JSON decode, which raised
    # RecursionError on a body nested ~1000 levels deep instead of the typed StatusError.
    async def nested(request: Request) -> Response:
        return Response(b"[" * 5000, status_code=500, media_type="application/json")

    app = Starlette(routes=[Route("/api/chat/stream", nested, methods=["POST"])])
    with serve(app) as url, getgpt.Client(url, max_retries=0) as client:
        try:
            client.complete([{"role": "user", "content": "hi"}])
        except getgpt.StatusError as exc:
            assert exc.status_code == 500
            assert exc.body.startswith("[[[")
        else:
            raise AssertionError("a 500 must raise StatusError")


def test_error_body_with_invalid_utf8_is_a_status_error() -> None:
    # Regression: msgspec raised UnicodeDecodeError reading the error message of such a body.
    async def garbled(request: Request) -> Response:
        return Response(b'{"error":{"message":"\xff"}}', status_code=400, media_type="application/json")

    app = Starlette(routes=[Route("/api/chat/stream", garbled, methods=["POST"])])
    with serve(app) as url, getgpt.Client(url, max_retries=0) as client:
        try:
            client.complete([{"role": "user", "content": "hi"}])
        except getgpt.StatusError as exc:
            assert exc.status_code == 400
        else:
            raise AssertionError("a 400 must raise StatusError")
