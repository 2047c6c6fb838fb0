"""ServerConfig from defaults, GETGPT_* variables and overrides; the app with middleware installed."""

from __future__ import annotations

import httpx
import pytest
from starlette.middleware.cors import CORSMiddleware

import getgpt
from getgpt.server import ServerConfig, create_app

from ..support.servers import serve


def test_defaults_are_safe_and_offline() -> None:
    config = ServerConfig()
    assert config.host == "127.0.0.1"
    assert config.backend == "echo"
    assert config.max_body_bytes == 1 << 20
    assert config.echo_delay == 0


def test_environment_then_overrides() -> None:
    env = {
        "GETGPT_BACKEND": "getgpt",
        "GETGPT_UPSTREAM": "http://127.0.0.1:9/",
        "GETGPT_MAX_STREAMS": "7",
        "GETGPT_ECHO_DELAY": "0.25",
        "GETGPT_MODELS": "a, b",
        "GETGPT_BODY_TIMEOUT": " ",  # blank means unset
    }
    config = ServerConfig.from_env(env, max_streams=9, echo_piece_chars=None)
    assert config.backend == "getgpt"
    assert config.upstream == "http://127.0.0.1:9/"
    assert config.max_streams == 9  # the override wins
    assert config.echo_delay == 0.25
    assert config.echo_piece_chars == 4  # None leaves the value alone
    assert config.models == ("a", "b")
    assert config.body_timeout == 10.0


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        ({"GETGPT_PORT": "eighty"}, {}, "GETGPT_PORT='eighty' is not a valid int"),
        ({}, {"backend": "magic"}, "backend must be one of"),
        ({}, {"max_streams": 0}, "max_streams must be at least 1"),
        ({}, {"body_timeout": 0.0}, "body_timeout must be a positive"),
        ({}, {"echo_delay": -1.0}, "echo_delay must not be negative"),
        ({"GETGPT_BACKEND": "openai"}, {}, "needs an upstream URL"),
    ],
)
def test_bad_settings_are_clear_errors(
    env: dict[str, str], overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig.from_env(env, **overrides)


def test_unknown_override_is_refused() -> None:
    with pytest.raises(TypeError, match="colour"):
        ServerConfig.from_env({}, colour="blue")


def test_chat_endpoints_go_through_added_middleware() -> None:
    app = create_app(ServerConfig())
    app.add_middleware(CORSMiddleware, allow_origins=["http://example.test"], allow_methods=["POST"])
    with serve(app) as url:
        with getgpt.Client(url, headers={"Origin": "http://example.test"}) as client:
            assert client.complete([{"role": "user", "content": "через middleware"}]) == "через middleware"
        response = httpx.post(
            url + "v1/chat/completions",
            json={"messages": [{"role": "user", "content": "x"}]},
            headers={"Origin": "http://example.test"},
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://example.test"
        preflight = httpx.options(
            url + "api/chat/stream",
            headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert httpx.get(url + "healthz").json()["active_streams"] == 0
