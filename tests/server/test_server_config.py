"""ServerConfig from defaults, GETGPT_* variables and overrides; the app with middleware installed."""

from __future__ import annotations

import argparse
import dataclasses

import httpx
import pytest
from starlette.middleware.cors import CORSMiddleware

import getgpt
from getgpt.server import ServerConfig, create_app
from getgpt.server.config import add_flags, from_flags

from ..support.processes import SSL_CONTEXT
from ..support.servers import serve


def test_defaults_are_safe_and_offline() -> None:
    config = ServerConfig()
    assert config.host == "127.0.0.1"
    assert config.backend == "echo"
    assert config.max_body_bytes == 32 << 20
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
            verify=SSL_CONTEXT,
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://example.test"
        preflight = httpx.options(
            url + "api/chat/stream",
            headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"},
            verify=SSL_CONTEXT,
        )
        assert preflight.status_code == 200
        assert httpx.get(url + "healthz", verify=SSL_CONTEXT).json()["active_streams"] == 0


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_flags(parser)
    return parser


def test_every_setting_has_one_declaration_with_help_and_a_flag_or_a_variable() -> None:
    help_text = _serve_parser().format_help()
    for item in dataclasses.fields(ServerConfig):
        assert item.metadata.get("help"), f"{item.name} has no help text"
        variable = "GETGPT_" + item.name.upper()
        if item.metadata["env_only"]:
            assert variable not in help_text  # no flag: a secret on a command line shows in ps
        elif item.metadata["file_only"]:
            assert variable not in help_text  # the config file's tables: neither flag nor variable
        else:
            assert variable in help_text, f"{item.name} has no flag"


def test_flags_are_read_as_their_settings_types_and_override_the_environment() -> None:
    args = _serve_parser().parse_args(
        ["--max-streams", "7", "--echo-delay", "0.5", "--cors-origin", "http://a.test", "--cors-origin",
         "http://b.test", "--backend", "getgpt", "--upstream", "http://127.0.0.1:9/"]
    )  # fmt: skip
    config = from_flags(args, {"GETGPT_MAX_STREAMS": "3", "GETGPT_ECHO_PIECE_CHARS": "2"})
    assert config.max_streams == 7
    assert config.echo_piece_chars == 2
    assert config.echo_delay == 0.5
    assert config.cors_origins == ("http://a.test", "http://b.test")
    assert (config.backend, config.upstream) == ("getgpt", "http://127.0.0.1:9/")


def test_a_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(argparse.ArgumentError, match="--max-streams='many' is not a valid int"):
        _serve_parser().parse_args(["--max-streams", "many"])


def test_api_keys_have_no_flag() -> None:
    _, unknown = _serve_parser().parse_known_args(["--api-keys", "secret"])
    assert unknown == ["--api-keys", "secret"]
