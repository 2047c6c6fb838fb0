"""The config file (``getgpt serve --config FILE``): its format is a contract, checked whole at start.

Every rule is a start-up error naming the key (issue 19, "How it is checked" (8)): an unknown key,
a wrong type, an upstream without a URL, a model routed nowhere, a fallback cycle. A flag or a
``GETGPT_*`` variable overrides the file; ``--check-config FILE`` checks only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from getgpt.server.config import ROUTED, ServerConfig, add_flags
from getgpt.server.config_file import load_settings, reread_routing, settings_of

from ..support.fleet import write_config
from ..support.serve_process import run_getgpt

A = {"name": "a", "url": "http://127.0.0.1:9/v1", "models": ["llama3"]}
B = {"name": "b", "url": "http://127.0.0.1:9/", "kind": "getgpt", "models": {"llama3": "llama-3-8b"}}
# One upstream, "a", as a file spells it; the rules below add to it.
UP = '[[upstreams]]\nname = "a"\nurl = "http://h/v1"\n'
SERVES = UP + 'models = ["llama3"]\n'


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return parser.parse_args(list(argv))


def _written(tmp_path: Path, text: str) -> str:
    path = tmp_path / "getgpt.toml"
    path.write_text(text)
    return str(path)


def test_a_complete_file_gives_the_settings_and_the_routing_table(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "getgpt.toml",
        [
            {**A, "api-key": "env:VLLM_KEY", "weight": 2, "max-in-flight": 256},
            B,
            {"name": "any", "url": "https://api.example.test/v1", "models": ["*"], "api-key": "sk-literal"},
        ],
        settings={
            "port": 8100,
            "max-streams": 64,
            "model": ["x", "y"],
            "upstream-timeout": 30,
            "workers": "auto",
        },
        routing={
            "strategy": "weighted",
            "attempts": 2,
            "cooldown": 12.5,
            "failures-to-cool": 1,
            "health-interval": 0,
        },
        aliases={"gpt-3.5-turbo": "llama3"},
        fallbacks={"gpt-4o": ["llama3"]},
    )
    config = load_settings(path=str(path), environ={"VLLM_KEY": "sk-from-env"})
    assert (config.port, config.max_streams, config.models, config.upstream_timeout) == (
        8100,
        64,
        ("x", "y"),
        30.0,
    )
    assert config.workers >= 1 and config.backend == ROUTED and config.config_file == str(path)
    routing = config.routing
    assert routing is not None
    first, second, third = routing.upstreams
    assert (first.name, first.kind, first.weight, first.max_in_flight) == ("a", "openai", 2, 256)
    assert first.api_key == "sk-from-env" and third.api_key == "sk-literal"
    assert second.kind == "getgpt" and second.models == (("llama3", "llama-3-8b"),)
    assert (routing.strategy, routing.attempts, routing.cooldown, routing.failures_to_cool) == (
        "weighted",
        2,
        12.5,
        1,
    )
    assert routing.health_interval == 0 and routing.aliases == (("gpt-3.5-turbo", "llama3"),)
    assert routing.fallbacks == (("gpt-4o", ("llama3",)),)
    assert "sk-from-env" not in repr(config) and "sk-literal" not in repr(config)  # never shown


@pytest.mark.parametrize(
    ("text", "named"),
    [
        # An unknown key: at the top, in an upstream, in [routing], in [models].
        ('colour = "blue"\n', "colour: unknown key"),
        (UP + 'wieght = 2\n', "upstreams[0].wieght: unknown key"),
        (UP + '[routing]\nstrategy = "least-in-flight"\nretries = 2\n',
         "routing.retries: unknown key"),
        (UP + '[models.alias]\nx = "y"\n', "models.alias: unknown key"),
        ('config = "other.toml"\n', "config: unknown key"),
        # A wrong type.
        ('max-streams = "many"\n', "max-streams: expected an integer, got a string"),
        ("upstream-usage = 1\n", "upstream-usage: expected a boolean, got an integer"),
        ('model = "one"\n', "model: expected an array of strings, got a string"),
        (UP + 'weight = 1.5\n', "upstreams[0].weight: expected an integer"),
        (UP + 'models = "llama3"\n', "upstreams[0].models: expected an array"),
        (UP + '[routing]\ncooldown = "30s"\n', "routing.cooldown: expected a number"),
        ('log-level = "loud"\n', "log-level: must be one of"),
        (UP + 'kind = "vllm"\n', "upstreams[0].kind: must be one of openai, getgpt"),
        (UP + '[routing]\nstrategy = "random"\n', "routing.strategy: must be one of"),
        (UP + '[routing]\nattempts = 0\n', "routing.attempts: must be at least 1"),
        # An upstream with no URL (or no name, or a name twice).
        ('[[upstreams]]\nname = "a"\nmodels = ["x"]\n', "upstreams[0].url: missing"),
        ('[[upstreams]]\nurl = "http://h/v1"\n', "upstreams[0].name: missing"),
        ('[[upstreams]]\nname = "vllm ä"\nurl = "http://h/v1"\n',
         "upstreams[0].name: 'vllm ä' is not a usable name"),
        ('[[upstreams]]\nname = "a"\nurl = "ftp://h/v1"\n', "upstreams[0].url: 'ftp://h/v1' is not an http"),
        (UP + '[[upstreams]]\nname = "a"\nurl = "http://i/v1"\n',
         "upstreams[1].name: 'a' is already upstreams[0]'s"),
        # A model routed nowhere: an alias's or a fallback's.
        (SERVES + '[models.aliases]\n"gpt-4" = "gpt-4o"\n',
         "models.aliases.gpt-4: the model 'gpt-4o' is routed nowhere"),
        (SERVES + '[models.fallbacks]\nllama3 = ["mistral"]\n',
         "models.fallbacks.llama3[0]: the model 'mistral' is routed nowhere"),
        (SERVES + '[models.fallbacks]\nqwen = ["llama3"]\n',
         "models.fallbacks.qwen: the model 'qwen' is routed nowhere"),
        # A fallback cycle, direct or through another model.
        (UP + 'models = ["x", "y", "z"]\n[models.fallbacks]\n'
         'x = ["y"]\ny = ["z"]\nz = ["x"]\n', "the fallbacks lead back in a cycle (x -> y -> z -> x)"),
        (UP + 'models = ["x"]\n[models.fallbacks]\nx = ["x"]\n',
         "models.fallbacks.x: the fallbacks lead back in a cycle (x -> x)"),
        # Routing tables with nothing to route, and --upstream's settings beside [[upstreams]].
        ('[routing]\nattempts = 2\n', "routing: there are no [[upstreams]] to route among"),
        ('upstream = "http://h/v1"\n' + UP, "upstream: not with [[upstreams]]"),
        # A key in the environment that holds none.
        (UP + 'api-key = "env:NOT_SET_HERE"\n',
         "upstreams[0].api-key: the environment variable NOT_SET_HERE holds no value"),
        ("api-keys = []\n", "api-keys: holds no value"),
    ],
)  # fmt: skip
def test_each_rule_is_an_error_naming_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = _written(tmp_path, text)
    with pytest.raises(ValueError) as raised:
        load_settings(path=path, environ={})
    assert named in str(raised.value)
    assert str(raised.value).startswith(path)  # and the file


def test_a_file_that_is_not_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = _written(tmp_path, "port = 80\n[[upstreams]\n")
    with pytest.raises(ValueError, match=r"is not valid TOML: .*line 2"):
        load_settings(path=path, environ={})


def test_a_flag_and_a_variable_override_the_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "g.toml", [A], settings={"max-streams": 64, "body-timeout": 3, "port": 8100}
    )
    config = load_settings(_flags("--config", str(path), "--max-streams", "7"), {"GETGPT_BODY_TIMEOUT": "9"})
    assert (config.max_streams, config.body_timeout, config.port) == (7, 9.0, 8100)
    from_variable = load_settings(None, {"GETGPT_CONFIG_FILE": str(path)})
    assert from_variable.max_streams == 64 and from_variable.routing is not None


def test_flag_aliases_join_the_files_and_win_over_it(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "g.toml", [{**A, "models": ["llama3", "qwen"]}], aliases={"fast": "llama3", "big": "qwen"}
    )
    config = load_settings(_flags("--config", str(path), "--model-alias", "fast=qwen"), {})
    assert config.routing is not None
    assert dict(config.routing.aliases) == {"fast": "qwen", "big": "qwen"}
    with pytest.raises(ValueError, match=r"models\.aliases\.small: the model 'tiny' is routed nowhere"):
        load_settings(_flags("--config", str(path), "--model-alias", "small=tiny"), {})


def test_upstream_from_a_flag_beside_upstreams_in_the_file_is_refused_naming_both(tmp_path: Path) -> None:
    path = write_config(tmp_path / "g.toml", [A])
    with pytest.raises(
        ValueError, match=r"--upstream / GETGPT_UPSTREAM is set, but the config file .* lists"
    ):
        load_settings(_flags("--config", str(path), "--upstream", "http://h/v1"), {})
    with pytest.raises(ValueError, match="--backend / GETGPT_BACKEND is set"):
        load_settings(_flags("--config", str(path)), {"GETGPT_BACKEND": "openai"})


def test_a_file_of_settings_alone_keeps_the_flags_backend(tmp_path: Path) -> None:
    path = _written(tmp_path, 'backend = "openai"\nupstream = "http://127.0.0.1:9/v1"\nmax-streams = 5\n')
    config = load_settings(path=path, environ={})
    assert (config.backend, config.upstream, config.max_streams, config.routing) == (
        "openai",
        "http://127.0.0.1:9/v1",
        5,
        None,
    )
    table = config.routing_table()  # --upstream alone: one upstream, one try, never cooled
    assert table is not None and len(table.upstreams) == 1 and table.attempts == 1 and table.cooldown == 0


def test_rereading_takes_the_new_tables_and_refuses_a_broken_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "g.toml", [A], settings={"max-streams": 64})
    config = load_settings(path=str(path), environ={})
    write_config(path, [A, B], settings={"max-streams": 9})
    again = reread_routing(config, {})
    assert again.routing is not None and [entry.name for entry in again.routing.upstreams] == ["a", "b"]
    assert again.max_streams == 64  # only the routing tables: the rest at the next start
    path.write_text('[[upstreams]]\nname = "a"\n')
    with pytest.raises(ValueError, match=r"upstreams\[0\].url: missing"):
        reread_routing(again, {})
    with pytest.raises(ValueError, match="without --config"):
        reread_routing(ServerConfig(), {})


def test_every_flag_is_a_key_of_the_file_by_the_same_name() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    flags = [
        option for action in parser._actions for option in action.option_strings if option.startswith("--")
    ]
    for flag in flags:
        key = flag.removeprefix("--")
        if key in ("help", "config"):
            continue
        with pytest.raises(ValueError) as raised:
            settings_of({key: object()}, {})
        assert "unknown key" not in str(raised.value), f"{key} is not a key of the file"
        assert str(raised.value).startswith(f"{key}: expected")


def test_getgpt_serve_refuses_to_start_with_a_broken_file_and_names_the_key(tmp_path: Path) -> None:
    path = _written(
        tmp_path,
        UP + 'models = ["x"]\n[models.fallbacks]\nx = ["x"]\n',
    )
    done = run_getgpt("serve", "--config", path, "--port", "0")
    assert done.returncode != 0
    assert "models.fallbacks.x: the fallbacks lead back in a cycle" in done.stderr


def test_check_config_says_ok_or_names_the_key_and_never_serves(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.toml", [A, B], aliases={"gpt-3.5-turbo": "llama3"})
    done = run_getgpt("serve", "--check-config", str(good))
    assert done.returncode == 0, done.stderr
    assert f"{good}: ok: 2 upstream(s) (a, b) serving llama3" in done.stdout
    bad = _written(tmp_path, UP + 'weight = "heavy"\n')
    done = run_getgpt("serve", "--check-config", bad)
    assert done.returncode != 0
    assert "upstreams[0].weight: expected an integer, got a string ('heavy')" in done.stderr


def test_the_readmes_example_is_a_valid_config_file(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Many upstreams\n") :]
    example = section[section.index("```toml\n") + 8 : section.index("\n```", section.index("```toml"))]
    path = _written(tmp_path, example)
    config = load_settings(path=path, environ={"VLLM_KEY": "k1", "OPENAI_API_KEY": "k2"})
    assert config.routing is not None
    assert [entry.name for entry in config.routing.upstreams] == ["vllm-a", "vllm-b", "chain", "openai"]
    assert config.routing.fallbacks == (("gpt-4o", ("llama3",)),)
