"""What ``getgpt`` says when something needs saying, on a terminal as a person sees it, in English
and in Russian: the usual mistakes with their remedy (a ``/v1`` in a GetGpt base URL, a missing
key, no server there, a web server that is not a GetGpt server), a rate limit's wait counted
down, argparse's own errors, an empty message, a reply cut by the token limit; and ``NO_COLOR``.
"""

# ruff: noqa: RUF001  (Russian text on purpose: Cyrillic letters that look Latin)

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from getgpt.server import ServerConfig, create_app

from ..support.servers import free_port, serve
from ..support.terminal import Terminal

LANGUAGES = {"en": {"LANG": "en_US.UTF-8"}, "ru": {"LANG": "ru_RU.UTF-8"}}
CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)


def on_terminal(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """``getgpt ARGS`` run to its end on a pseudo-terminal: its status, the lines left on the screen
    (what a spinner drew and erased gone), the bytes written to it."""
    with Terminal(*args, env=env) as term:
        status = term.wait_exit(60)
        return status, "\n".join(term.screen()), term.output


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    with serve(create_app(ServerConfig())) as url:
        yield url


@pytest.fixture(scope="module")
def plain_web_server() -> Iterator[str]:
    """Python's own static file server: it answers a POST with 501 and an HTML page."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


HINTS = {
    "v1": {
        "en": "getgpt: error: {url}v1/ has no GetGpt route (404): a GetGpt server's base URL has no /v1 "
        "(that path is OpenAI's API); try --base-url {url}\n  the server said: Not Found",
        "ru": "getgpt: ошибка: у {url}v1/ нет пути GetGpt (404): в базовом адресе сервера GetGpt нет /v1 "
        "(этот путь — API OpenAI); попробуйте --base-url {url}\n  ответ сервера: Not Found",
    },
    "key": {
        "en": "getgpt: error: the server wants an API key (401): put it in the environment variable "
        "GETGPT_API_KEY (--api-key-env names another)",
        "ru": "getgpt: ошибка: серверу нужен ключ API (401): задайте его в переменной окружения "
        "GETGPT_API_KEY (другую переменную называет --api-key-env)",
    },
    "refused": {
        "en": "getgpt: error: connection to {url} refused: is a server running there? "
        "('getgpt serve' starts one)",
        "ru": "getgpt: ошибка: соединение с {url} отклонено: сервер там запущен? "
        "(его запускает 'getgpt serve')",
    },
    "web": {
        "en": "getgpt: error: {url} answers HTTP, but not as a GetGpt server (501): is it the right "
        "address? ('getgpt serve' runs a GetGpt server)",
        "ru": "getgpt: ошибка: {url} отвечает по HTTP, но не как сервер GetGpt (501): адрес верный? "
        "(сервер GetGpt запускает 'getgpt serve')",
    },
}


def screen_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_v1_in_a_getgpt_base_url_is_said_with_the_url_that_works(echo: str, language: str) -> None:
    status, screen, _ = on_terminal("chat", "hi", "--base-url", echo + "v1", env=LANGUAGES[language])
    assert status == 1
    assert "\n".join(screen_lines(screen)) == HINTS["v1"][language].format(url=echo)


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_missing_key_is_said_with_the_variable_to_set_and_the_servers_words(language: str) -> None:
    with serve(create_app(ServerConfig(api_keys=("k-1",)))) as url:
        status, screen, _ = on_terminal("chat", "hi", "--base-url", url, env=LANGUAGES[language])
    assert status == 1
    sentence, detail = screen_lines(screen)
    assert sentence == HINTS["key"][language]
    label = "the server said" if language == "en" else "ответ сервера"
    assert detail == f"  {label}: this server needs an API key: send Authorization: Bearer <key>"


@pytest.mark.parametrize("language", ["en", "ru"])
def test_no_server_there_is_one_line_that_says_how_to_start_one(language: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    status, screen, _ = on_terminal(
        "chat", "hi", "--base-url", url, "--retries", "0", env=LANGUAGES[language]
    )
    assert status == 1
    assert screen_lines(screen) == [HINTS["refused"][language].format(url=url)]


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_plain_web_server_is_said_with_a_short_excerpt_of_its_page(
    plain_web_server: str, language: str
) -> None:
    status, screen, _ = on_terminal("chat", "hi", "--base-url", plain_web_server, env=LANGUAGES[language])
    assert status == 1
    sentence, detail = screen_lines(screen)
    assert sentence == HINTS["web"][language].format(url=plain_web_server)
    assert "<" not in detail and "Unsupported method ('POST')" in detail and len(detail) < 250


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_failed_connection_names_the_server_once_and_keeps_the_systems_words(language: str) -> None:
    # TLS to a plain HTTP port: the connection fails, not refused. It used to say
    # "connection to X failed: connection to X/api/chat/stream failed: ..."
    with serve(create_app(ServerConfig())) as url:
        https = url.replace("http://", "https://")
        status, screen, _ = on_terminal(
            "chat", "hi", "--base-url", https, "--retries", "0", env=LANGUAGES[language]
        )
    assert status == 1
    sentence, detail = screen_lines(screen)
    assert sentence.count("127.0.0.1") == 1 and "127.0.0.1" not in detail
    assert (
        sentence
        == {
            "en": f"getgpt: error: could not connect to {https}: check the address (its host name and port)",
            "ru": f"getgpt: ошибка: не удалось соединиться с {https}: проверьте адрес (имя хоста и порт)",
        }[language]
    )
    assert detail.startswith({"en": "  details: ", "ru": "  подробности: "}[language])
    assert "SSL" in detail


def limited_once(seconds: int) -> Any:
    """An echo server that answers the first chat request with 429 and ``Retry-After: seconds``."""
    app = create_app(ServerConfig())
    refused: list[int] = []

    async def limited(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/chat/stream" and not refused:
            refused.append(1)
            body = json.dumps({"error": {"message": "slow down", "type": "rate_limit_exceeded"}}).encode()
            headers = [(b"content-type", b"application/json"), (b"retry-after", str(seconds).encode())]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return limited


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_rate_limit_wait_is_counted_down_on_a_terminal(language: str) -> None:
    words = {
        "en": "the server asks to wait (429): trying again in {} s",
        "ru": "сервер просит подождать (429): новая попытка через {} с",
    }[language]
    with (
        serve(limited_once(2)) as url,
        Terminal("chat", "привет", "--base-url", url, env=LANGUAGES[language]) as term,
    ):
        term.wait_for(re.escape(words.format(2)))
        term.wait_for(re.escape(words.format(1)))  # the seconds left, counted down as they pass
        term.wait_for("привет")
        assert term.wait_exit() == 0


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_rate_limit_wait_is_said_once_when_piped(language: str) -> None:
    from ..support.command import getgpt

    with serve(limited_once(1)) as url:
        result = getgpt("chat", "hi", "--base-url", url, env=LANGUAGES[language])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    assert (
        result.stderr
        == {
            "en": "the server asks to wait (429): trying again in 1 s\n",
            "ru": "сервер просит подождать (429): новая попытка через 1 с\n",
        }[language]
    )


ARGPARSE = [
    (
        ["chat", "--temperature", "abc", "hi"],
        "getgpt chat: error: argument --temperature: 'abc' is not a number",
        "getgpt chat: ошибка: аргумент --temperature: 'abc' — не число",
    ),
    (
        ["chat", "--max-tokens", "0", "hi"],
        "getgpt chat: error: argument --max-tokens: '0' is less than 1",
        "getgpt chat: ошибка: аргумент --max-tokens: '0' меньше 1",
    ),
    (
        ["chta"],
        "getgpt: error: argument COMMAND: invalid choice: 'chta' "
        "(choose from 'chat', 'demo', 'serve', 'check', 'keys', 'usage', 'db')",
        "getgpt: ошибка: аргумент КОМАНДА: недопустимое значение: 'chta' (можно: 'chat', 'demo', 'serve', "
        "'check', 'keys', 'usage', 'db')",
    ),
    (
        ["chat", "--model"],
        "getgpt chat: error: argument --model: expected one argument",
        "getgpt chat: ошибка: аргумент --model: нужно одно значение",
    ),
    (
        ["demo", "--nope"],
        "getgpt: error: unrecognized arguments: --nope",
        "getgpt: ошибка: непонятные аргументы: --nope",
    ),
]


@pytest.mark.parametrize(("args", "english", "russian"), ARGPARSE)
@pytest.mark.parametrize("language", ["en", "ru"])
def test_argparses_own_errors_are_in_the_users_language(
    args: list[str], english: str, russian: str, language: str
) -> None:
    status, screen, _ = on_terminal(*args, env=LANGUAGES[language])
    assert status == 2
    lines = screen_lines(screen)
    assert lines[0].startswith("usage: getgpt" if language == "en" else "использование: getgpt")
    assert lines[-1] == (english if language == "en" else russian)


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("message", ["", "   \n"])
def test_an_empty_message_is_refused_with_a_message(echo: str, language: str, message: str) -> None:
    status, screen, _ = on_terminal("chat", message, "--base-url", echo, env=LANGUAGES[language])
    assert status == 2
    assert screen_lines(screen) == [
        {
            "en": "getgpt: error: the message is empty: nothing to send (leave MESSAGE out for a session)",
            "ru": "getgpt: ошибка: сообщение пустое, отправлять нечего (без СООБЩЕНИЯ начнётся диалог)",
        }[language]
    ]


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_reply_cut_by_the_token_limit_gets_a_note(echo: str, language: str) -> None:
    status, screen, _ = on_terminal(
        "chat", "a longer message", "--max-tokens", "1", "--base-url", echo, env=LANGUAGES[language]
    )
    assert status == 0
    assert screen_lines(screen)[-2:] == [
        "a lo",
        {
            "en": "the reply reached the token limit (--max-tokens) and was cut short",
            "ru": "ответ упёрся в лимит токенов (--max-tokens) и обрезан",
        }[language],
    ]


@pytest.mark.parametrize("language", ["en", "ru"])
def test_save_writes_headings_in_the_sessions_language_and_marks_a_cut_reply(
    echo: str, language: str, tmp_path: Path
) -> None:
    from ..support.command import getgpt

    markdown, document = tmp_path / "chat.md", tmp_path / "chat.json"
    lines = f"first message\n/save {markdown}\n/save {document}\n"
    result = getgpt("chat", "--max-tokens", "2", "--base-url", echo, stdin=lines, env=LANGUAGES[language])
    assert result.returncode == 0, result.stderr
    you, assistant, cut = {
        "en": ("You", "Assistant", "The reply reached the token limit (max tokens) and was cut short."),
        "ru": ("Вы", "Ассистент", "Ответ упёрся в лимит токенов (максимум токенов) и обрезан."),
    }[language]
    assert markdown.read_text(encoding="utf-8") == (
        f"# first message\n\n## {you}\n\nfirst message\n\n## {assistant}\n\nfirst me\n\n*{cut}*\n"
    )
    saved = json.loads(document.read_text(encoding="utf-8"))["messages"]
    assert saved[1] == {"role": "assistant", "content": "first me", "finishReason": "length"}


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--delay", "0", "привет"],
        ["chat", "привет"],
        ["chat", "привет", "--max-tokens", "1"],
        ["check"],
    ],
)
def test_no_color_leaves_no_escape_byte_and_its_absence_leaves_the_styles(echo: str, args: list[str]) -> None:
    args = [*args, "--burst", "2", echo] if args == ["check"] else [*args, "--base-url", echo]
    if args[0] == "demo":
        args = args[: args.index("--base-url")]
    status, screen, raw = on_terminal(*args, env={"NO_COLOR": "1"})
    assert status == 0, screen
    assert b"\x1b" not in raw, raw
    assert "прив" in screen or "PASS" in screen
    status, _, styled = on_terminal(*args)
    assert status == 0
    assert b"\x1b[" in styled  # a terminal without NO_COLOR still gets rich's styles and spinner


def test_no_color_in_a_session_leaves_no_escape_byte(echo: str, tmp_path: Path) -> None:
    env = {"NO_COLOR": "1", "XDG_STATE_HOME": str(tmp_path)}
    with Terminal("chat", "--base-url", echo, env=env) as term:
        term.wait_for("you> ")
        term.type("привет\r")
        term.wait_for(r"привет\n(.|\n)*you> ")
        term.type("/exit\r")
        assert term.wait_exit() == 0
        assert b"\x1b" not in term.output, term.output


@pytest.mark.parametrize("language", ["en", "ru"])
def test_check_shows_each_check_as_it_runs_on_a_terminal(echo: str, language: str) -> None:
    with Terminal("check", echo, "--burst", "2", env=LANGUAGES[language]) as term:
        checking = {
            "en": "checking unicode: text survives intact",
            "ru": "проверяю unicode: текст доходит целым",
        }
        term.wait_for(re.escape(checking[language]))  # the spinner names the check running
        assert term.wait_exit() == 0
        lines = term.screen()
    last = lines[-1]
    assert last.endswith({"en": "-- conforms", "ru": "— соответствует протоколу"}[language])
    marks = [line.split()[0] for line in lines if line.startswith("  ")]
    assert marks.count({"en": "PASS", "ru": "ВЕРНО"}[language]) >= 11


def test_check_takes_the_key_from_the_variable_named_and_the_checks_named() -> None:
    from ..support.command import getgpt

    with serve(create_app(ServerConfig(api_keys=("k-1",)))) as url:
        named = getgpt(
            "check", url, "--api-key-env", "MY_KEY", "--only", "envelope,done", env={"MY_KEY": "k-1"}
        )
        missing = getgpt(
            "check", url, "--api-key-env", "MY_KEY", "--skip", "retry-after", env=LANGUAGES["ru"]
        )
        unknown = getgpt("check", url, "--only", "nope")
    assert named.returncode == 0, named.stdout
    assert [line.split()[1] for line in named.stdout.splitlines() if line.startswith("  ")] == [
        "envelope",
        "done",
    ]
    assert missing.returncode == 1
    assert "подсказка: серверу нужен ключ API: задайте его в переменной окружения MY_KEY" in missing.stdout
    assert "retry-after" not in missing.stdout.replace("--skip retry-after", "")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("getgpt: error: unknown check name(s): nope; the checks are: envelope, ")


@pytest.mark.parametrize("language", ["en", "ru"])
def test_an_address_that_is_no_url_is_said_with_the_form_that_works(language: str) -> None:
    from ..support.command import getgpt

    chat = getgpt("chat", "hi", "--base-url", "localhost:8000", env=LANGUAGES[language])
    check = getgpt("check", "localhost:8000", env=LANGUAGES[language])
    said = {
        "en": "error: localhost:8000 is no server address: give one as http://host:port/ or https://host/",
        "ru": "ошибка: localhost:8000 — не адрес сервера: укажите его как http://хост:порт/ или https://хост/",
    }[language]
    assert chat.returncode == check.returncode == 2
    assert chat.stderr.splitlines()[0] == "getgpt: " + said
    assert check.stderr == "getgpt: " + said + "\n"
