"""The command line in English and Russian: the language from the locale or ``--lang``, errors in
it, Russian plurals, and a catalogue where no key is missing, untranslated or unused."""

# ruff: noqa: RUF001  (Russian text on purpose: Cyrillic letters that look Latin)

from __future__ import annotations

import re
from pathlib import Path

import pytest

from getgpt.cli.text import CATALOGUE, LANGUAGES, PLURAL_FORMS, Texts, language_from_env

from ..support.catalogue_keys import keys_named
from ..support.command import getgpt
from ..support.servers import free_port, serve

SOURCES = sorted((Path(__file__).resolve().parents[2] / "src" / "getgpt" / "cli").glob("*.py"))
CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)
# Names that stay as they are in any language: commands, a header, a stream, the product, protocols.
NAMES = {"stdin", "Authorization", "Bearer", "GetGpt", "HTTP", "gpt", "turbo", "getgpt", "openai"} | {
    "chat",
    "demo",
    "serve",
    "check",
    "keys",
    "usage",
}


def test_a_refused_connection_is_one_russian_line_and_exit_1() -> None:
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/"
    result = getgpt("chat", "привет", "--base-url", url, "--retries", "0", env={"LANG": "ru_RU.UTF-8"})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"getgpt: ошибка: соединение с {url} отклонено: сервер там запущен? (его запускает 'getgpt serve')\n"
    )
    # Outside the URL and the command it names, every word is Russian.
    words = re.findall(
        r"[^\W\d_]+", result.stderr.replace(url, "").replace("getgpt serve", "").replace("getgpt:", "")
    )
    assert words and all(CYRILLIC.search(word) for word in words), words


def test_a_server_error_is_described_in_russian() -> None:
    from getgpt.server import ServerConfig, create_app

    with serve(create_app(ServerConfig(max_messages=1))) as url:
        result = getgpt(
            "chat",
            "-",
            "--base-url",
            url,
            "--system",
            "s",
            stdin="два сообщения",
            env={"LANG": "ru_RU.UTF-8"},
        )
    assert result.returncode == 1
    sentence, detail = result.stderr.splitlines()
    assert sentence == "getgpt: ошибка: сервер ответил 400"
    assert detail.startswith("  ответ сервера: ")  # then the server's own words


@pytest.mark.parametrize(
    ("env", "args", "usage"),
    [
        ({"LANG": "ru_RU.UTF-8"}, [], "использование:"),
        ({"LANG": "en_US.UTF-8"}, [], "usage:"),
        ({"LANG": "C.UTF-8"}, [], "usage:"),
        ({"LANG": "de_DE.UTF-8"}, [], "usage:"),  # a language the CLI does not speak: English
        ({"LANG": "ru_RU.UTF-8", "LC_ALL": "en_US.UTF-8"}, [], "usage:"),  # LC_ALL wins
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "ru_RU.UTF-8"}, [], "использование:"),
        ({"LANG": "ru_RU.UTF-8"}, ["--lang", "en"], "usage:"),  # --lang wins over the locale
        ({"LANG": "C.UTF-8"}, ["--lang=ru"], "использование:"),
    ],
)
def test_the_language_follows_lang_lc_all_lc_messages_and_the_lang_option(
    env: dict[str, str], args: list[str], usage: str
) -> None:
    result = getgpt("chat", "--help", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(usage + " getgpt chat")


def test_the_russian_help_has_no_english_left_in_chat_demo_and_check() -> None:
    for command in ([], ["chat"], ["demo"], ["check"]):
        result = getgpt(*command, "--help", env={"LANG": "ru_RU.UTF-8"})
        assert result.returncode == 0
        lines = result.stdout.splitlines()
        for line in lines[lines.index("") + 1 :]:
            prose = re.sub(r"\{[^}]*\}|--?[\w-]+|/\w+|[A-Z_]{2,}|\$\w+|https?://\S+|'[^']*'", "", line)
            words = re.findall(r"[^\W\d_]{3,}", prose)
            english = [w for w in words if not CYRILLIC.search(w) and w not in NAMES]
            assert english == [], line


def test_language_from_env_reads_the_locale_as_gettext_does() -> None:
    assert language_from_env({}) == "en"
    assert language_from_env({"LANG": "ru_RU.UTF-8"}) == "ru"
    assert language_from_env({"LANG": "ru_UA"}) == "ru"
    assert language_from_env({"LANG": "ru_RU.UTF-8", "LC_ALL": "C"}) == "en"
    assert language_from_env({"LANG": "de_DE.UTF-8", "LANGUAGE": "de:ru:en"}) == "ru"
    assert language_from_env({"LANG": "C.UTF-8", "LANGUAGE": "ru"}) == "en"  # LANGUAGE is ignored under C
    assert language_from_env({"LC_MESSAGES": "ru_RU.UTF-8", "LANG": "en_GB.UTF-8"}) == "ru"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "разговор забыт: 0 сообщений"),
        (1, "разговор забыт: 1 сообщение"),
        (2, "разговор забыт: 2 сообщения"),
        (4, "разговор забыт: 4 сообщения"),
        (5, "разговор забыт: 5 сообщений"),
        (11, "разговор забыт: 11 сообщений"),
        (14, "разговор забыт: 14 сообщений"),
        (21, "разговор забыт: 21 сообщение"),
        (22, "разговор забыт: 22 сообщения"),
        (111, "разговор забыт: 111 сообщений"),
        (1001, "разговор забыт: 1001 сообщение"),
    ],
)
def test_russian_plurals_agree_with_the_number(count: int, text: str) -> None:
    assert Texts("ru")("session.reset", count=count) == text


def test_english_plurals() -> None:
    texts = Texts("en")
    assert [texts("session.saved", count=n, path="f") for n in (0, 1, 2)] == [
        "wrote 0 messages to f",
        "wrote 1 message to f",
        "wrote 2 messages to f",
    ]


def used_keys() -> set[str]:
    """Every catalogue key the CLI's code names (a dotted string in the first argument of texts())."""
    keys: set[str] = set()
    for path in SOURCES:
        keys |= keys_named(path.read_text(), "texts")
    return keys


def test_every_key_is_in_both_languages_translated_and_used() -> None:
    assert set(CATALOGUE) == set(LANGUAGES)
    assert CATALOGUE["en"].keys() == CATALOGUE["ru"].keys()
    assert used_keys() == set(CATALOGUE["en"]), "a key is used but missing, or kept but unused"
    for key in CATALOGUE["en"]:
        placeholders = []
        for language in LANGUAGES:
            entry = CATALOGUE[language][key]
            forms = entry if isinstance(entry, dict) else {"": entry}
            if isinstance(entry, dict):
                assert tuple(sorted(entry)) == tuple(sorted(PLURAL_FORMS[language])), (language, key)
            for text in forms.values():
                assert text.strip(), (language, key)
                if language == "ru":
                    assert CYRILLIC.search(text), f"{key} is not translated: {text!r}"
            placeholders.append({name for text in forms.values() for name in re.findall(r"\{(\w+)\}", text)})
        assert placeholders[0] == placeholders[1], f"{key}: the two languages fill in different values"
