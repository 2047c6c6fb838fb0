"""``getgpt chat`` as a session: its commands, the input history kept between runs, Ctrl-C, API keys.

Sessions run on a pseudo-terminal (tests/support/terminal.py) where a person would see them; the
commands' effect on what is sent is also checked with piped input, which needs no terminal timing.
"""

# ruff: noqa: RUF001  (Russian text on purpose: Cyrillic letters that look Latin)

from __future__ import annotations

import io
import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from getgpt import decrypt
from getgpt.cli.output import Output, Received
from getgpt.cli.text import Texts
from getgpt.protocol.request import ChatRequest, parse_request
from getgpt.server import ServerConfig, create_app
from getgpt.server.chat.request import Chat

from ..support.command import getgpt
from ..support.scripted import REASONING, TOOL_CALLS, reasoning_stream, tool_call_stream
from ..support.servers import health, serve, wait_until
from ..support.terminal import Terminal

KEY = "k-7f3a"


def recording_server(config: ServerConfig) -> tuple[object, list[ChatRequest]]:
    app = create_app(config)
    seen: list[ChatRequest] = []

    async def record(scope: Scope, chat: Chat) -> None:
        seen.append(chat.request)

    app.state.chat_checks.append(record)
    return app, seen


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[ChatRequest]]]:
    app, seen = recording_server(ServerConfig())
    with serve(app) as url:
        yield url, seen


@pytest.fixture(scope="module")
def slow() -> Iterator[tuple[str, list[ChatRequest]]]:
    """An echo of 4 characters every 50 ms: a long message takes long enough to interrupt."""
    app, seen = recording_server(ServerConfig(echo_delay=0.05))
    with serve(app) as url:
        yield url, seen


def sent(request: ChatRequest) -> list[tuple[str, str]]:
    return [(m.role, str(m.content)) for m in request.messages]


def test_commands_change_what_is_sent_and_save_the_conversation(
    server: tuple[str, list[ChatRequest]], tmp_path: Path
) -> None:
    url, seen = server
    before = len(seen)
    lines = [
        "/system be brief",
        "hello",
        "/model m-2",
        "/model",
        "again",
        f"/save {tmp_path / 'chat.json'}",
        f"/save {tmp_path / 'chat.md'}",
        "/save",
        "/reset",
        "third",
        "/system",
        "/system -",
        "/system",
        "fourth",
        "/nope",
        "/help",
    ]
    result = getgpt("chat", "--base-url", url, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nagain\nthird\nfourth\n"  # notes go to stderr, replies alone to stdout
    requests = seen[before:]
    assert [sent(r) for r in requests] == [
        [("system", "be brief"), ("user", "hello")],
        [("system", "be brief"), ("user", "hello"), ("assistant", "hello"), ("user", "again")],
        [("system", "be brief"), ("user", "third")],
        [("user", "third"), ("assistant", "third"), ("user", "fourth")],
    ]
    assert [r.model for r in requests] == ["gpt-3.5-turbo", "m-2", "m-2", "m-2"]
    notes = result.stderr.splitlines()
    assert notes[:4] == [
        "system prompt set",
        "model: m-2",
        "model: m-2",
        f"wrote 4 messages to {tmp_path / 'chat.json'}",
    ]
    assert notes[4:9] == [
        f"wrote 4 messages to {tmp_path / 'chat.md'}",
        "/save needs a file name: /save chat.md or /save chat.json",
        "forgot the conversation: 4 messages",
        "system prompt: be brief",
        "system prompt removed",
    ]
    assert notes[9:11] == [
        "no system prompt; /system TEXT sets one",
        "unknown command /nope; /help lists the commands",
    ]
    assert notes[11] == "commands:"
    assert any(line.startswith("  /save FILE") for line in notes)

    saved = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert saved["format"] == "getgpt.conversation"
    assert saved["system"] == "be brief"
    assert saved["messages"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "again"},
    ]
    markdown = (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert markdown.startswith(
        "# hello\n\n> **System prompt**\n>\n> be brief\n\n## You\n\nhello\n\n## Assistant\n\nhello\n"
    )


def test_a_session_in_russian_on_a_terminal(server: tuple[str, list[ChatRequest]], tmp_path: Path) -> None:
    url, seen = server
    with Terminal(
        "chat", "--base-url", url, env={"LANG": "ru_RU.UTF-8", "XDG_STATE_HOME": str(tmp_path)}
    ) as term:
        term.wait_for(r"чат с .*; /help — список команд")
        term.wait_for(r"вы> ")
        term.type("привет\r")
        term.wait_for(r"\nпривет\n.*вы> ", after=0)
        term.type("/reset\r")
        term.wait_for("разговор забыт: 2 сообщения")
        term.type("/model\r")
        term.wait_for(r"модель: gpt-3\.5-turbo \(по умолчанию в протоколе\)")
        term.type("/help\r")
        term.wait_for("Ctrl-C в приглашении — выход")
        term.type("/exit\r")
        assert term.wait_exit() == 0
        screen = term.text()
    assert "Traceback" not in screen
    assert sent(seen[-1]) == [("user", "привет")]


def test_input_history_is_kept_between_two_runs(
    server: tuple[str, list[ChatRequest]], tmp_path: Path
) -> None:
    url, seen = server
    env = {"XDG_STATE_HOME": str(tmp_path)}
    with Terminal("chat", "--base-url", url, env=env) as term:
        term.wait_for("you> ")
        term.type("a line worth keeping\r")
        term.wait_for(r"a line worth keeping\n(.|\n)*you> ")
        term.type("\x04")  # Ctrl-D: leaves, and is no line of the history
        assert term.wait_exit() == 0
    history = tmp_path / "getgpt" / "chat_history"
    assert "a line worth keeping" in history.read_text(encoding="utf-8")

    before = len(seen)
    with Terminal("chat", "--base-url", url, env=env) as term:
        term.wait_for("you> ")
        term.type("\x1b[A")  # the Up arrow brings back the last run's line
        mark = len(term.wait_for("you> a line worth keeping"))
        term.type("\r")
        wait_until(lambda: len(seen) > before, 20)
        term.wait_for(WAITING, after=mark)
        term.wait_for("you> ", after=mark)  # Ctrl-D at the prompt, not into the reply
        term.type("\x04")
        assert term.wait_exit() == 0
    assert sent(seen[before]) == [("user", "a line worth keeping")]


def test_the_history_and_saved_files_are_the_users_alone(
    server: tuple[str, list[ChatRequest]], tmp_path: Path
) -> None:
    # Every prompt and /system text is in them: they were created 0644 in a 0755 directory.
    url, _ = server
    state = tmp_path / "state"
    older = state / "getgpt"  # as an earlier version left them
    older.mkdir(parents=True, mode=0o755)
    (older / "chat_history").write_text("an old line\n", encoding="utf-8")
    (older / "chat_history").chmod(0o644)
    with Terminal("chat", "--base-url", url, env={"XDG_STATE_HOME": str(state)}) as term:
        term.wait_for("you> ")
        term.type("a private line\r")
        term.wait_for(r"a private line\n(.|\n)*you> ")
        term.type(f"/save {tmp_path / 'chat.md'}\r")
        term.wait_for("you> ", after=len(term.text()))
        term.type("\x04")
        assert term.wait_exit() == 0
    assert "a private line" in (older / "chat_history").read_text(encoding="utf-8")
    assert stat.S_IMODE(older.stat().st_mode) == 0o700
    assert stat.S_IMODE((older / "chat_history").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "chat.md").stat().st_mode) == 0o600

    fresh = tmp_path / "fresh"
    with Terminal("chat", "--base-url", url, env={"XDG_STATE_HOME": str(fresh)}) as term:
        term.wait_for("you> ")
        term.type("first line\r")
        term.wait_for(r"first line\n(.|\n)*you> ")
        term.type("\x04")
        assert term.wait_exit() == 0
    assert stat.S_IMODE((fresh / "getgpt").stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh / "getgpt" / "chat_history").stat().st_mode) == 0o600
    saved = tmp_path / "chat.json"
    result = getgpt("chat", "--base-url", url, stdin=f"hello\n/save {saved}\n")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


LONG = " ".join(f"word{i}" for i in range(300))  # ~2,100 characters: ~26 s at 4 per 50 ms
WAITING = "waiting for the reply…"


def reply_shown(screen: str) -> str:
    """The reply's text on the screen: after the spinner's line, without the ^C the terminal echoed
    (a piece being written when Ctrl-C came is still written whole, after the echo)."""
    return screen.rsplit(WAITING, 1)[1].replace("^C", "").strip()


def test_ctrl_c_stops_the_reply_keeps_its_text_and_a_second_ctrl_c_leaves(
    slow: tuple[str, list[ChatRequest]], tmp_path: Path
) -> None:
    url, seen = slow
    before = len(seen)
    with Terminal("chat", "--base-url", url, env={"XDG_STATE_HOME": str(tmp_path)}) as term:
        term.wait_for("you> ")
        term.type(LONG + "\r")
        # Ctrl-C only once the reply is coming: typed earlier, it would be a Ctrl-C at the prompt.
        start = term.wait_for(WAITING).rindex(WAITING)
        term.wait_for(r"word0 word1 word2 word3 word4", after=start)
        term.type("\x03")
        screen = term.wait_for(r"stopped; what arrived is kept\. Ctrl-C again leaves")
        wait_until(lambda: health(url)["active_streams"] == 0, 10)  # the request was closed
        partial = reply_shown(screen.partition("stopped; what arrived")[0])
        assert LONG.startswith(partial) and len(partial) < len(LONG)
        mark = len(screen)
        term.wait_for("you> ", after=mark - 5)
        term.type("and then?\r")
        wait_until(lambda: len(seen) == before + 2, 20)
        term.wait_for(r"and then\?\n(.|\n)*you> ", after=mark)
        for name in ("stopped.md", "stopped.json"):
            mark = len(term.text())
            term.type(f"/save {tmp_path / name}\r")
            term.wait_for(r"wrote 4 messages to(.|\n)*you> ", after=mark)  # rich wraps a long note
        term.type("\x03")  # at the prompt: leave
        assert term.wait_exit() == 0
    # What /save writes marks the stopped reply.
    markdown = (tmp_path / "stopped.md").read_text(encoding="utf-8")
    assert "\n\n*Stopped: the rest of the reply was not received.*\n\n## You\n\nand then?" in markdown
    saved = json.loads((tmp_path / "stopped.json").read_text(encoding="utf-8"))["messages"]
    assert saved[1]["stopped"] is True and "stopped" not in saved[3]
    # The stopped reply stays in the conversation as far as it came.
    roles, contents = zip(*sent(seen[before + 1]), strict=True)
    assert roles == ("user", "assistant", "user")
    assert contents[0] == LONG
    assert contents[1].strip() == partial
    assert len(partial) >= len("word0 word1 word2 word3 word4")


def test_ctrl_c_in_a_one_shot_chat_keeps_what_was_printed(slow: tuple[str, list[ChatRequest]]) -> None:
    url, _ = slow
    with Terminal("chat", LONG, "--base-url", url) as term:
        start = term.wait_for(WAITING).rindex(WAITING)
        term.wait_for("word0 word1 word2", after=start)
        term.type("\x03")
        assert term.wait_exit() == 130
        screen = term.text()
    assert "Traceback" not in screen
    printed, interrupted, _ = screen.partition("getgpt: interrupted")
    assert interrupted
    shown = reply_shown(printed)
    assert LONG.startswith(shown) and len("word0 word1 word2") <= len(shown) < len(LONG)


def test_api_key_from_the_environment_and_its_absence_explained(tmp_path: Path) -> None:
    app, seen = recording_server(ServerConfig(api_keys=(KEY,)))
    with serve(app) as url:
        result = getgpt("chat", "hi", "--base-url", url)
        assert result.returncode == 1
        assert result.stderr == (
            "getgpt: error: the server wants an API key (401): put it in the environment variable "
            "GETGPT_API_KEY (--api-key-env names another)\n"
            "  the server said: this server needs an API key: send Authorization: Bearer <key>\n"
        )
        result = getgpt(
            "chat", "hi", "--base-url", url, env={"GETGPT_API_KEY": "wrong", "LANG": "ru_RU.UTF-8"}
        )
        assert result.stderr == (
            "getgpt: ошибка: сервер не принял ключ API из GETGPT_API_KEY (401)\n"
            "  ответ сервера: the API key is not valid\n"  # the server's own words, as it said them
        )
        result = getgpt("chat", "hi", "--base-url", url, "--api-key-env", "MY_KEY", env={"MY_KEY": KEY})
        assert result.returncode == 0, result.stderr
        assert result.stdout == "hi\n"
    assert len(seen) == 1


@pytest.fixture(scope="module")
def thinking() -> Iterator[str]:
    """A GetGpt server whose replies carry reasoning ("think") or tool calls ("tools")."""

    async def chat(request: Request) -> Response:
        last = parse_request(decrypt((await request.json())["signature"])).messages[-1].content
        body = tool_call_stream() if last == "tools" else reasoning_stream()
        return Response(body, media_type="text/event-stream")

    with serve(Starlette(routes=[Route("/api/chat/stream", chat, methods=["POST"])])) as url:
        yield url


def test_tool_calls_are_printed_with_the_reply_and_reasoning_is_marked_on_stderr(thinking: str) -> None:
    result = getgpt("chat", "tools", "--base-url", thinking)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        '[tool call: get_weather({"city": "Париж", "unit": "C"})]\n[tool call: get_time({"zone": "CET"})]\n'
    )
    assert result.stderr == "[reasoning] Two tools, then answer.\n"
    result = getgpt("chat", "think", "--base-url", thinking, env={"LANG": "ru_RU.UTF-8"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "It is sunny.\n"
    assert result.stderr == f"[рассуждение] {''.join(REASONING)}\n"


def test_a_session_keeps_tool_calls_in_what_it_saves_and_sends_only_text(
    thinking: str, tmp_path: Path
) -> None:
    saved = tmp_path / "tools.json"
    result = getgpt("chat", "--base-url", thinking, stdin=f"tools\nthink\n/save {saved}\n")
    assert result.returncode == 0, result.stderr
    assert "[tool call: get_time" in result.stdout and "It is sunny." in result.stdout
    messages = json.loads(saved.read_text(encoding="utf-8"))["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "reasoning": "Two tools, then answer.",
        "toolCalls": TOOL_CALLS,
        "finishReason": "tool_calls",
    }


class _InterruptedWhileWriting(io.StringIO):
    """A screen where Ctrl-C comes while one given piece is being written."""

    def __init__(self, at: str) -> None:
        super().__init__()
        self.at = at

    def write(self, text: str) -> int:
        if text == self.at:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler before this write returns
        return super().write(text)


def test_ctrl_c_while_a_piece_is_written_keeps_exactly_the_text_on_the_screen() -> None:
    screen = _InterruptedWhileWriting(at="two ")
    out = Output(screen, pretty=False, texts=Texts("en"))
    received = Received()
    with pytest.raises(KeyboardInterrupt):
        out.reply(iter(["one ", "two ", "three"]), received)
    assert received.text == "one two "
    assert screen.getvalue() == "one two \n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
