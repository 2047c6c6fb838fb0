"""``getgpt serve`` explains itself: its help in groups, variable names that are what the help says,
a bad boolean refused by name, a taken port said before anything starts, a start log naming the
backend, its upstream and the page's URL, ``--quiet``/``--verbose``, and HTTPS of its own."""

from __future__ import annotations

import dataclasses
import re
import socket
import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from getgpt.cli.serve import DESCRIPTION
from getgpt.server.config import FLAG_GROUPS, ServerConfig, env_name

from ..support.command import getgpt
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import ServeProcess, getgpt_serve, run_getgpt
from ..support.servers import free_port, wait_until


def test_the_help_is_in_groups_and_every_flag_is_in_one() -> None:
    result = getgpt("serve", "--help")
    assert result.returncode == 0
    titles = [line[:-1] for line in result.stdout.splitlines() if re.fullmatch(r"[a-z][a-z :,]+:", line)]
    assert titles == ["options", *(title for title, _ in FLAG_GROUPS)]
    grouped = {name for _, names in FLAG_GROUPS for name in names}
    flagged = {
        f.name
        for f in dataclasses.fields(ServerConfig)
        if not f.metadata.get("env_only") and not f.metadata.get("file_only")
    }
    assert flagged == grouped, "put each setting in a group of FLAG_GROUPS (server/config.py)"
    logs = result.stdout[result.stdout.index("\nlogs:") :]
    assert "-q, --quiet" in logs and "-v, --verbose" in logs
    assert "(default: True" not in result.stdout
    assert "(default: true; GETGPT_UPSTREAM_USAGE)" in " ".join(result.stdout.split())


def test_every_variable_the_help_names_is_the_one_that_sets_its_option() -> None:
    result = getgpt("serve", "--help")
    named = set(re.findall(r"GETGPT_[A-Z_]+", " ".join(result.stdout.split())))
    real = {env_name(f) for f in dataclasses.fields(ServerConfig)}
    assert named <= real, named - real
    assert set(re.findall(r"GETGPT_[A-Z_]+", DESCRIPTION)) <= real
    # Each flag's help line ends naming its variable, and that variable sets the option.
    for item in dataclasses.fields(ServerConfig):
        if item.metadata.get("env_only") or item.metadata.get("file_only"):
            continue
        assert f"; {env_name(item)})" in " ".join(result.stdout.split()), item.name
    config = ServerConfig.from_env(
        {
            "GETGPT_MODELS": "a,b",
            "GETGPT_CORS_ORIGINS": "https://x.example",
            "GETGPT_REDIS_URL": "redis://h:1/0",
        }
    )
    assert (config.models, config.cors_origins, config.redis_url) == (
        ("a", "b"),
        ("https://x.example",),
        "redis://h:1/0",
    )


@pytest.mark.parametrize("value", ["maybe", "2", "yes please"])
def test_a_boolean_that_is_not_one_is_refused_at_start_with_its_name(value: str) -> None:
    result = run_getgpt("serve", "--port", str(free_port()), env={"GETGPT_UPSTREAM_USAGE": value})
    assert result.returncode == 1
    assert result.stderr == (
        f"getgpt: error: GETGPT_UPSTREAM_USAGE={value!r} is not a boolean: expected true or false "
        "(1/true/yes/on or 0/false/no/off)\n"
    )
    flag = run_getgpt("serve", "--upstream-usage", value)
    assert flag.returncode == 2 and "argument --upstream-usage: --upstream-usage=" in flag.stderr


@pytest.mark.parametrize(("value", "read"), [("TRUE", True), ("off", False), ("0", False), (" yes ", True)])
def test_booleans_read_in_any_case(value: str, read: bool) -> None:
    assert ServerConfig.from_env({"GETGPT_UPSTREAM_USAGE": value}).upstream_usage is read


def test_a_taken_port_is_said_before_anything_starts_with_the_flag_to_change_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A fresh interpreter, as a user starts it (the other tests here fork one: support/forkserver.py).
        result = run_getgpt("serve", "--port", str(port), fresh=True)
    assert result.returncode == 1
    assert result.stderr == (
        f"getgpt: error: cannot listen on 127.0.0.1:{port}: address already in use: another server "
        "listens there; --port N (or GETGPT_PORT) picks another\n"
    )
    assert "startup complete" not in result.stdout + result.stderr


def test_the_start_log_names_the_backend_and_where_the_page_and_the_apis_are() -> None:
    with getgpt_serve(fresh=True) as server:  # a fresh interpreter, as a user starts it
        log = _wait(server)
    base = f"http://127.0.0.1:{server.port}/"
    assert "getgpt serve: the echo backend (offline: each reply repeats the last user message)" in log
    assert f"getgpt serve: the chat page: {base}\n" in log
    assert f"the OpenAI-compatible API: {base}v1 ; the GetGpt protocol: {base}api/chat/stream" in log


def test_the_start_log_names_the_upstream_of_a_forwarding_backend() -> None:
    upstream = "http://127.0.0.1:9/v1"
    with getgpt_serve("--backend", "openai", "--upstream", upstream) as server:
        log = _wait(server)
    assert f"getgpt serve: the openai backend, forwarding to {upstream}" in log


def _wait(server: ServeProcess) -> str:
    """What the server printed once its start log is out (it may come after /healthz answers)."""
    return server.wait_for_output("the GetGpt protocol:")


def test_quiet_leaves_warnings_only_and_verbose_adds_debugging() -> None:
    with getgpt_serve("--quiet") as server:
        httpx.get(server.url + "healthz", verify=SSL_CONTEXT)
        quiet = server.output()
    assert "INFO" not in quiet and "getgpt serve:" not in quiet
    with getgpt_serve("--verbose") as server:
        httpx.post(
            server.url + "v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            verify=SSL_CONTEXT,
        )
        wait_until(lambda: "chat: model=" in server.output(), 10)  # logged at DEBUG only
        verbose = _wait(server)
    assert "getgpt serve: the chat page" in verbose
    both = run_getgpt("serve", "--quiet", "--log-level", "info")
    assert both.returncode == 2
    assert both.stderr == "getgpt: error: --quiet and --log-level say different things: give one\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1 from a throwaway CA: its chain, its key, the CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    where = tmp_path_factory.mktemp("serve-tls")
    chain, key, authority = where / "chain.pem", where / "key.pem", where / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(authority))
    return chain, key, authority


def test_tls_flags_serve_https_and_the_start_log_says_so(certificate: tuple[Path, Path, Path]) -> None:
    chain, key, authority = certificate
    trusting = ssl.create_default_context(cafile=str(authority))
    tls = ("--tls-certfile", str(chain), "--tls-keyfile", str(key))
    with getgpt_serve(*tls, tls=trusting) as server:
        # getgpt_serve waited for /healthz over https, trusting only the test's authority.
        assert server.url.startswith("https://")
        server.healthz()  # 200 over https, trusting that authority (server.verify)
        with pytest.raises(httpx.TransportError):
            httpx.get(
                f"http://127.0.0.1:{server.port}/healthz", timeout=2, verify=SSL_CONTEXT
            )  # no plain HTTP on that port
        output = server.stop()
    assert f"getgpt serve: the chat page: {server.url}" in output


def test_tls_files_that_do_not_make_a_pair_are_refused_at_start(certificate: tuple[Path, Path, Path]) -> None:
    chain, _, authority = certificate
    alone = run_getgpt("serve", "--tls-certfile", str(chain))
    assert alone.returncode == 1
    assert alone.stderr == (
        "getgpt: error: tls_certfile and tls_keyfile go together: give both (--tls-certfile, "
        "--tls-keyfile), or neither\n"
    )
    wrong = run_getgpt("serve", "--tls-certfile", str(chain), "--tls-keyfile", str(authority))
    assert wrong.returncode == 1
    assert wrong.stderr.startswith(
        f"getgpt: error: cannot serve TLS with --tls-certfile {chain} and --tls-keyfile"
    )
