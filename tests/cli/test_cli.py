"""The ``getgpt`` command, run as a real subprocess (``python -m getgpt``) against real servers."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Scope

from getgpt.protocol.request import ChatRequest
from getgpt.server import ServerConfig, create_app
from getgpt.server.chat.request import Chat

from ..support.command import getgpt
from ..support.hostile import queued
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve, run_getgpt
from ..support.servers import free_port, serve

TEXT = "Привет, мир! 👋🏽"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[ChatRequest]]]:
    """An echo server that records every chat request it receives."""
    app = create_app(ServerConfig())
    seen: list[ChatRequest] = []

    async def record(scope: Scope, chat: Chat) -> None:
        seen.append(chat.request)

    app.state.chat_checks.append(record)
    with serve(app) as url:
        yield url, seen


def test_demo_runs_the_main_job() -> None:
    result = getgpt("demo", "hi", fresh=True)  # a new interpreter, as a user runs it (the rest: forks)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    assert "echo backend" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_default_message_with_cyrillic_and_emoji() -> None:
    result = getgpt("demo", "--delay", "0", fresh=True)  # the output's encoding is set at start
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from getgpt! Привет! 👋\n"


def test_help_lists_the_commands_and_loads_no_heavy_module() -> None:
    result = getgpt("--help")
    assert result.returncode == 0
    for command in ("chat", "demo", "serve"):
        assert command in result.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom getgpt.cli.commands import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'starlette', 'uvicorn', 'rich', "
            "'msgspec', 'cryptography', 'anyio'}), file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stderr.strip() == "[]"
    for command in ("chat", "demo", "serve"):
        sub = getgpt(command, "--help")
        assert sub.returncode == 0 and "usage: getgpt " + command in sub.stdout


def test_chat_one_message_piped_is_plain(server: tuple[str, list[ChatRequest]]) -> None:
    url, seen = server
    result = getgpt(
        "chat", TEXT, "--base-url", url, "--model", "m1", "--temperature", "0.5", "--max-tokens", "9"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == TEXT + "\n"
    assert "\x1b[" not in result.stdout
    request = seen[-1]
    assert (request.model, request.temperature, request.max_tokens, request.stream) == ("m1", 0.5, 9, True)


def test_chat_no_stream_system_and_stdin_message(server: tuple[str, list[ChatRequest]]) -> None:
    url, seen = server
    result = getgpt(
        "chat", "-", "--no-stream", "--system", "be brief", stdin="from stdin", env={"GETGPT_BASE_URL": url}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from stdin\n"
    request = seen[-1]
    assert request.stream is False
    assert [(m.role, m.content) for m in request.messages] == [("system", "be brief"), ("user", "from stdin")]


def test_interactive_session_keeps_the_history(server: tuple[str, list[ChatRequest]]) -> None:
    url, seen = server
    before = len(seen)
    result = getgpt("chat", "--base-url", url, stdin="first\nвторое 🙂\n\n/reset\nthird\n")  # noqa: RUF001
    assert result.returncode == 0, result.stderr
    assert result.stdout == "first\nвторое 🙂\nthird\n"  # noqa: RUF001
    turns = [[(m.role, m.content) for m in r.messages] for r in seen[before:]]
    assert turns == [
        [("user", "first")],
        [("user", "first"), ("assistant", "first"), ("user", "второе 🙂")],
        [("user", "third")],
    ]


def test_connection_error_is_one_line_and_nonzero_exit() -> None:
    port = free_port()  # nothing listens there
    result = getgpt("chat", "hi", "--base-url", f"http://127.0.0.1:{port}/", "--retries", "0")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("getgpt: error: connection to ")
    assert "Traceback" not in result.stderr


def test_a_server_error_is_a_sentence_and_the_servers_own_words_on_a_line_of_their_own() -> None:
    with serve(create_app(ServerConfig(max_messages=1))) as url:
        result = getgpt("chat", "two messages", "--base-url", url, "--system", "s")
    assert result.returncode == 1
    sentence, detail = result.stderr.splitlines()
    assert sentence == "getgpt: error: the server answered 400"
    assert detail.startswith("  the server said: ") and "messages" in detail


def test_a_value_out_of_range_is_refused_before_anything_is_sent(
    server: tuple[str, list[ChatRequest]],
) -> None:
    url, seen = server
    before = len(seen)
    result = getgpt("chat", "hi", "--base-url", url, "--temperature", "7")
    assert result.returncode == 2
    assert (
        result.stderr.splitlines()[-1] == "getgpt chat: error: argument --temperature: '7' is not from 0 to 2"
    )
    assert len(seen) == before


def test_bad_serve_configuration_is_one_line() -> None:
    result = run_getgpt("serve", "--backend", "openai")
    assert result.returncode == 1
    assert result.stderr.strip() == "getgpt: error: the openai backend needs an upstream URL (--upstream)"
    result = run_getgpt("serve", env={"GETGPT_MAX_STREAMS": "many"})
    assert result.returncode == 1
    assert "GETGPT_MAX_STREAMS='many' is not a valid int" in result.stderr
    result = run_getgpt("serve", "--backend", "nope")
    assert result.returncode == 2  # argparse's usage error


def test_serve_runs_a_server_that_env_and_flags_configure() -> None:
    env = {"GETGPT_MAX_MESSAGES": "1", "GETGPT_ECHO_PIECE_CHARS": "2"}
    with getgpt_serve("--max-messages", "2", "--log-level", "warning", env=env) as server:
        url = server.url
        assert httpx.get(url + "healthz", verify=SSL_CONTEXT).json()["status"] == "ok"
        two = [{"role": "user", "content": "a"}, {"role": "user", "content": "bc"}]
        result = httpx.post(
            url + "v1/chat/completions", json={"messages": two, "stream": True}, verify=SSL_CONTEXT
        )
        assert result.status_code == 200  # the flag's 2 beat the environment's 1
        contents = [line for line in result.text.splitlines() if '"content":"' in line]
        assert len(contents) == 2  # the role chunk and one 2-character piece
        three = [*two, {"role": "user", "content": "d"}]
        assert (
            httpx.post(url + "v1/chat/completions", json={"messages": three}, verify=SSL_CONTEXT).status_code
            == 400
        )
        result = getgpt("chat", "через serve", "--base-url", url)
        assert result.stdout == "через serve\n"
        output = server.stop()
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status still tells of the signal.
    assert server.process.returncode in (0, -15)
    assert "Traceback" not in output


def test_serve_queues_a_burst_of_connections_as_large_as_its_stream_limit() -> None:
    # uvicorn's own backlog is 2,048: more connections than that arriving while the server is
    # busy (here: stopped) would have their handshakes dropped, and be retried only a second
    # later by the client's kernel. getgpt serve asks for one place per admitted stream.
    burst = 2600
    with getgpt_serve("--max-streams", "3000") as server:
        server.process.send_signal(signal.SIGSTOP)
        try:
            assert queued(server.address, burst) == burst  # none dropped
        finally:
            server.process.send_signal(signal.SIGCONT)


def test_terminal_output_is_pretty_and_complete(server: tuple[str, list[ChatRequest]]) -> None:
    url, _ = server
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "getgpt", "chat", TEXT, "--base-url", url],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm-256color", "PYTHONIOENCODING": "utf-8"},
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            output += data
        elif process.poll() is not None:
            break
    os.close(leader)
    assert process.wait(10) == 0
    text = output.decode("utf-8", "replace")
    assert "\x1b[" in text  # rich styled it for the terminal
    assert TEXT in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
