"""The command line's words in English and Russian: one catalogue, the language from the locale.

The language is what ``--lang`` says, else the locale's, read the way gettext reads it:
``LC_ALL``, then ``LC_MESSAGES``, then ``LANG`` (the first one set), with GNU's ``LANGUAGE`` list
taking precedence unless that locale is ``C``/``POSIX``. A plain entry is a string; a counted one
holds CLDR plural forms (Russian: ``one`` 1, 21, 101; ``few`` 2-4, 22-24; ``many`` 0, 5-20, 25...).
``{name}`` in a text is replaced by the value given for it.

Only the standard library is imported: ``getgpt --help`` must stay fast.
"""

# ruff: noqa: RUF001  (Russian text on purpose: Cyrillic letters that look Latin)

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = [
    "CATALOGUE",
    "LANGUAGES",
    "PLURAL_FORMS",
    "Texts",
    "language_from_env",
    "language_named",
    "plural_form",
]

Language = Literal["en", "ru"]
Entry = str | dict[str, str]

LANGUAGES: tuple[Language, ...] = ("en", "ru")
PLURAL_FORMS: dict[Language, tuple[str, ...]] = {"en": ("one", "other"), "ru": ("one", "few", "many")}

CATALOGUE: dict[Language, dict[str, Entry]] = {
    "en": {
        "cli.description": "The GetGpt chat protocol: chat with a server, run one, "
        "or see both work together.",
        "cli.usage": "usage: ",
        "cli.commands": "commands",
        "cli.arguments": "arguments",
        "cli.options": "options",
        "cli.help": "show this help and exit",
        "cli.version": "print the version and exit",
        "cli.lang": "the language of messages: en or ru "
        "(default: the locale's, from LC_ALL, LC_MESSAGES or LANG)",
        "cli.error": "{prog}: error: {message}",
        "cli.interrupted": "{prog}: interrupted",
        "chat.help": "chat with a GetGpt server",
        "chat.description": "Send MESSAGE and stream the reply; without MESSAGE, an interactive session that "
        "keeps the conversation, with commands (/help lists them) and the input history of earlier runs. "
        "MESSAGE '-' reads it from stdin.",
        "chat.metavar": "MESSAGE",
        "chat.message": "the message to send ('-': read it from stdin); without it, an interactive session",
        "chat.base_url": "the server (default: $GETGPT_BASE_URL, else {url}, where 'getgpt serve' listens)",
        "chat.model": "model name (default: the protocol's, gpt-3.5-turbo)",
        "chat.system": "a system prompt",
        "chat.temperature": "0..2",
        "chat.max_tokens": "at least 1",
        "chat.no_stream": "ask for the whole reply at once",
        "chat.timeout": "seconds to wait for data (default 600)",
        "chat.retries": "retries before the first byte (default 2)",
        "chat.plain": "plain text even on a terminal",
        "chat.api_key_env": "the environment variable holding the server's API key, sent as "
        "Authorization: Bearer (default GETGPT_API_KEY)",
        "demo.help": "start a local echo server and chat with it over real HTTP",
        "demo.description": "Start the server in this process on a free loopback port with the echo backend, "
        "send MESSAGE through the real client and print the reply.",
        "demo.metavar": "MESSAGE",
        "demo.message": "the message to send (default: a greeting)",
        "demo.delay": "seconds between echoed pieces (default 0.02)",
        "demo.note": "getgpt demo: server with the echo backend on {url}; sending {message}",
        "demo.not_started": "the demo server did not start",
        "demo.server_extra": "this needs the server extra: pip install 'getgpt[server]' ({detail})",
        "serve.help": "run the server",
        "check.help": "check that a server speaks the protocol right",
        "keys.help": "make, list, revoke and rotate the API keys of the store (serve --db)",
        "usage.help": "requests and tokens from the usage ledger, added up",
        "db.help": "the store's schema: 'db upgrade' applies its migrations",
        "session.intro": "chatting with {url}; /help lists the commands, /exit or Ctrl-D leaves",
        "session.you": "you",
        "session.waiting": "waiting for the reply…",
        "session.commands": "commands:\n"
        "  /reset        forget the conversation (the system prompt stays)\n"
        "  /system TEXT  set the system prompt; /system alone shows it, /system - removes it\n"
        "  /model NAME   ask for this model; /model alone shows the one in use\n"
        "  /save FILE    write the conversation to FILE: JSON if it ends in .json "
        "(the web page imports it), else Markdown\n"
        "  /help         this list\n"
        "  /exit         leave (Ctrl-D too)\n"
        "Ctrl-C stops a reply and keeps what arrived; Ctrl-C at the prompt leaves.",
        "session.reset": {
            "one": "forgot the conversation: {count} message",
            "other": "forgot the conversation: {count} messages",
        },
        "session.system": "system prompt: {text}",
        "session.system_set": "system prompt set",
        "session.system_none": "no system prompt; /system TEXT sets one",
        "session.system_removed": "system prompt removed",
        "session.model": "model: {model}",
        "session.model_default": "model: {model} (the protocol's default)",
        "session.saved": {
            "one": "wrote {count} message to {path}",
            "other": "wrote {count} messages to {path}",
        },
        "session.save_usage": "/save needs a file name: /save chat.md or /save chat.json",
        "session.save_failed": "could not write {path}: {reason}",
        "session.unknown": "unknown command {command}; /help lists the commands",
        "session.stopped": "stopped; what arrived is kept. Ctrl-C again leaves",
        "session.stopped_empty": "stopped before any text arrived; the message is not kept",
        "session.no_history": "the input history is not kept: {reason}",
        "reply.reasoning": "reasoning",
        "reply.tool_call": "tool call: {name}({arguments})",
        "error.refused": "connection to {url} refused: is a server running there? "
        "('getgpt serve' starts one)",
        "error.connect": "connection to {url} failed: {detail}",
        "error.timeout": "{url} did not answer in time: {detail}",
        "error.need_key": "the server wants an API key (401): put it in the environment variable {env}",
        "error.bad_key": "the server refused the API key in {env} (401)",
        "error.rate_limited": "the server asks to slow down (429): {message}",
        "error.status": "the server answered {status}: {message}",
        "error.incomplete": "the reply broke off: the server closed the stream before it was complete",
        "error.protocol": "the server broke the protocol: {message}",
        "error.remote": "the server reported an error: {message}",
        "error.invalid": "invalid request: {message}",
    },
    "ru": {
        "cli.description": "Протокол чата GetGpt: общайтесь с сервером, запустите свой "
        "или посмотрите, как они работают вместе.",
        "cli.usage": "использование: ",
        "cli.commands": "команды",
        "cli.arguments": "аргументы",
        "cli.options": "параметры",
        "cli.help": "показать эту справку и выйти",
        "cli.version": "показать версию и выйти",
        "cli.lang": "язык сообщений: en или ru (по умолчанию — язык локали из LC_ALL, LC_MESSAGES или LANG)",
        "cli.error": "{prog}: ошибка: {message}",
        "cli.interrupted": "{prog}: прервано",
        "chat.help": "чат с сервером GetGpt",
        "chat.description": "Отправляет СООБЩЕНИЕ и выводит ответ по мере прихода; без СООБЩЕНИЯ — "
        "диалог, который помнит разговор, с командами (/help покажет их) и историей ввода прошлых "
        "запусков. СООБЩЕНИЕ '-' читается из stdin.",
        "chat.metavar": "СООБЩЕНИЕ",
        "chat.message": "сообщение ('-' — прочитать из stdin); без него — диалог",
        "chat.base_url": "сервер (по умолчанию $GETGPT_BASE_URL, иначе {url}, где слушает 'getgpt serve')",
        "chat.model": "имя модели (по умолчанию — из протокола, gpt-3.5-turbo)",
        "chat.system": "системный промпт",
        "chat.temperature": "от 0 до 2",
        "chat.max_tokens": "не меньше 1",
        "chat.no_stream": "получить ответ целиком, а не по частям",
        "chat.timeout": "сколько секунд ждать данных (по умолчанию 600)",
        "chat.retries": "сколько раз повторить запрос до первого байта ответа (по умолчанию 2)",
        "chat.plain": "простой текст даже в терминале",
        "chat.api_key_env": "переменная окружения с ключом API сервера, он уходит в заголовке "
        "Authorization: Bearer (по умолчанию GETGPT_API_KEY)",
        "demo.help": "запустить локальный эхо-сервер и поговорить с ним по настоящему HTTP",
        "demo.description": "Запускает сервер в этом процессе на свободном локальном порту с эхо-бэкендом, "
        "отправляет СООБЩЕНИЕ настоящим клиентом и выводит ответ.",
        "demo.metavar": "СООБЩЕНИЕ",
        "demo.message": "сообщение (по умолчанию — приветствие)",
        "demo.delay": "пауза между частями эха в секундах (по умолчанию 0.02)",
        "demo.note": "getgpt demo: сервер с эхо-бэкендом на {url}; отправляем {message}",
        "demo.not_started": "демо-сервер не запустился",
        "demo.server_extra": "для этого нужна серверная часть: pip install 'getgpt[server]' ({detail})",
        "serve.help": "запустить сервер",
        "check.help": "проверить, верно ли сервер говорит на протоколе",
        "keys.help": "создать, показать, отозвать и заменить API-ключи хранилища (serve --db)",
        "usage.help": "запросы и токены из журнала использования, с итогами",
        "db.help": "схема хранилища: 'db upgrade' применяет её миграции",
        "session.intro": "чат с {url}; /help — список команд, /exit или Ctrl-D — выход",
        "session.you": "вы",
        "session.waiting": "ждём ответа…",
        "session.commands": "команды:\n"
        "  /reset        забыть разговор (системный промпт остаётся)\n"
        "  /system ТЕКСТ задать системный промпт; /system без текста покажет его, /system - удалит\n"
        "  /model ИМЯ    просить эту модель; /model без имени покажет текущую\n"
        "  /save ФАЙЛ    записать разговор в ФАЙЛ: JSON, если имя кончается на .json "
        "(его загрузит веб-страница), иначе Markdown\n"
        "  /help         этот список\n"
        "  /exit         выход (или Ctrl-D)\n"
        "Ctrl-C останавливает ответ и сохраняет полученное; Ctrl-C в приглашении — выход.",
        "session.reset": {
            "one": "разговор забыт: {count} сообщение",
            "few": "разговор забыт: {count} сообщения",
            "many": "разговор забыт: {count} сообщений",
        },
        "session.system": "системный промпт: {text}",
        "session.system_set": "системный промпт задан",
        "session.system_none": "системного промпта нет; /system ТЕКСТ задаёт его",
        "session.system_removed": "системный промпт удалён",
        "session.model": "модель: {model}",
        "session.model_default": "модель: {model} (по умолчанию в протоколе)",
        "session.saved": {
            "one": "в {path} записано {count} сообщение",
            "few": "в {path} записано {count} сообщения",
            "many": "в {path} записано {count} сообщений",
        },
        "session.save_usage": "команде /save нужно имя файла: /save chat.md или /save chat.json",
        "session.save_failed": "не удалось записать {path}: {reason}",
        "session.unknown": "неизвестная команда {command}; /help покажет список",
        "session.stopped": "остановлено; полученная часть ответа сохранена. Ещё раз Ctrl-C — выход",
        "session.stopped_empty": "остановлено до первого слова ответа; сообщение не сохранено",
        "session.no_history": "история ввода не сохраняется: {reason}",
        "reply.reasoning": "рассуждение",
        "reply.tool_call": "вызов инструмента: {name}({arguments})",
        "error.refused": "соединение с {url} отклонено: сервер там запущен? (его запускает 'getgpt serve')",
        "error.connect": "не удалось соединиться с {url}: {detail}",
        "error.timeout": "{url} не ответил вовремя: {detail}",
        "error.need_key": "серверу нужен ключ API (401): задайте его в переменной окружения {env}",
        "error.bad_key": "сервер не принял ключ API из {env} (401)",
        "error.rate_limited": "сервер просит не спешить (429): {message}",
        "error.status": "сервер ответил {status}: {message}",
        "error.incomplete": "ответ оборвался: сервер закрыл поток, не закончив ответ",
        "error.protocol": "сервер нарушил протокол: {message}",
        "error.remote": "сервер сообщил об ошибке: {message}",
        "error.invalid": "неверный запрос: {message}",
    },
}


def plural_form(language: Language, count: int) -> str:
    """The CLDR plural category of a whole number in ``language``."""
    if language == "ru":
        if count % 10 == 1 and count % 100 != 11:
            return "one"
        if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
            return "few"
        return "many"
    return "one" if count == 1 else "other"


_SPOKEN: dict[str, Language] = {language: language for language in LANGUAGES}


def language_named(name: str | None) -> Language | None:
    """The language ``name`` is (``en`` or ``ru``), or None."""
    return _SPOKEN.get(name or "")


def _language_of(tag: str) -> Language | None:
    """``ru`` for ``ru_RU.UTF-8``, ``ru-RU`` or ``ru@latin``; None for a language not spoken here."""
    return language_named(tag.replace("-", "_").partition(".")[0].partition("@")[0].partition("_")[0].lower())


def language_from_env(environ: Mapping[str, str]) -> Language:
    """The language the locale asks for, as gettext reads it; English when it asks for neither."""
    locale = next((environ[name] for name in ("LC_ALL", "LC_MESSAGES", "LANG") if environ.get(name)), "")
    if locale and locale not in ("C", "POSIX") and not locale.startswith(("C.", "POSIX.")):
        for tag in environ.get("LANGUAGE", "").split(":"):
            found = _language_of(tag) if tag else None
            if found:
                return found
    return _language_of(locale) or "en"


class Texts:
    """The catalogue in one language: ``texts("key", name=value)``."""

    def __init__(self, language: Language) -> None:
        self.language = language
        self._entries = CATALOGUE[language]

    def __call__(self, key: str, **values: object) -> str:
        entry = self._entries[key]
        if isinstance(entry, dict):
            count = values.get("count", 0)
            entry = entry[plural_form(self.language, count if isinstance(count, int) else 0)]
        return entry.format_map(_Values(values)) if values else entry


class _Values(dict[str, object]):
    """Leaves a ``{name}`` nobody gave as it is, rather than failing on it."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
