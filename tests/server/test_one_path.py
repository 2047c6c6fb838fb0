"""Every request takes one path, whatever middleware is installed: the middleware, then the POST
endpoints called directly by path (never through Starlette's routing), the rest routed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from getgpt.server import ServerConfig, create_app
from getgpt.server.chat.request import Chat

from ..support.processes import SSL_CONTEXT
from ..support.servers import serve

ORIGIN = "https://chat.example"
KEY = "k"
CONFIGS = {
    "no middleware": ServerConfig(),
    "CORS": ServerConfig(cors_origins=(ORIGIN,)),
    "keys": ServerConfig(api_keys=(KEY,)),
    "keys, CORS, replay guard": ServerConfig(api_keys=(KEY,), cors_origins=(ORIGIN,), replay_window=60),
}


class Seen:
    """ASGI middleware of the caller's own: notes each request's path as it passes."""

    def __init__(self, app: ASGIApp, paths: list[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("own_middleware", [False, True], ids=["", "and the caller's"])
def test_the_chat_endpoints_are_reached_the_same_way_with_or_without_middleware(
    name: str, own_middleware: bool
) -> None:
    app = create_app(CONFIGS[name])
    routed: list[bool] = []  # for each chat request: did Starlette's routing match it?

    async def note(scope: Scope, chat: Chat) -> None:
        routed.append("endpoint" in scope or "path_params" in scope)

    app.state.chat_checks.append(note)
    passed: list[str] = []
    if own_middleware:
        app.add_middleware(Seen, paths=passed)
    headers = {"Authorization": f"Bearer {KEY}", "Origin": ORIGIN}
    body = {"messages": [{"role": "user", "content": "path"}], "stream": True}
    with serve(app) as url:
        answer = httpx.post(
            url + "v1/chat/completions", json=body, headers=headers, timeout=10, verify=SSL_CONTEXT
        )
        assert answer.status_code == 200 and '"content":"path"' in answer.text
        assert answer.headers["x-request-id"]
        health = httpx.get(url + "healthz", headers=headers, timeout=10, verify=SSL_CONTEXT)
        wrong_method = httpx.get(url + "v1/chat/completions", headers=headers, timeout=10, verify=SSL_CONTEXT)
    assert routed == [False]
    assert health.status_code == 200
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == 405
    cors = "access-control-allow-origin"
    if CONFIGS[name].cors_origins:
        assert answer.headers[cors] == ORIGIN and health.headers[cors] == ORIGIN
    else:
        assert cors not in answer.headers
    if own_middleware:
        assert passed == ["/v1/chat/completions", "/healthz", "/v1/chat/completions"]


def test_middleware_cannot_be_added_once_the_app_has_served() -> None:
    app = create_app(ServerConfig())
    with serve(app) as url:
        assert httpx.get(url + "healthz", timeout=10, verify=SSL_CONTEXT).status_code == 200
        with pytest.raises(RuntimeError):
            app.add_middleware(Seen, paths=[])


def test_a_bug_in_a_check_costs_one_request_alike_with_or_without_middleware() -> None:
    for config in (ServerConfig(), ServerConfig(cors_origins=(ORIGIN,))):
        app = create_app(config)

        async def broken(scope: Any) -> None:
            raise RuntimeError("a bug")

        app.state.request_checks.append(broken)
        with serve(app) as url:
            body = {"messages": [{"role": "user", "content": "x"}]}
            answer = httpx.post(
                url + "v1/chat/completions", json=body, headers={"Origin": ORIGIN}, verify=SSL_CONTEXT
            )
            assert answer.status_code == 500
            assert answer.json()["error"]["code"] == "internal"
            assert (ORIGIN in answer.headers.get("access-control-allow-origin", "")) == bool(
                config.cors_origins
            )
