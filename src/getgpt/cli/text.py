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
        "cli.command_metavar": "COMMAND",
        "cli.arguments": "arguments",
        "cli.options": "options",
        "cli.help": "show this help and exit",
        "cli.version": "print the version and exit",
        "cli.lang": "the language of messages: en or ru "
        "(default: the locale's, from LC_ALL, LC_MESSAGES or LANG)",
        "cli.error": "{prog}: error: {message}",
        "cli.interrupted": "{prog}: interrupted",
        "argparse.argument": "argument {name}: {message}",
        "argparse.required": "the following arguments are required: {names}",
        "argparse.unrecognized": "unrecognized arguments: {values}",
        "argparse.one_of": "one of the arguments {names} is required",
        "argparse.ambiguous": "ambiguous option: {option} could match {matches}",
        "argparse.choice": "invalid choice: {value} (choose from {choices})",
        "argparse.value": "invalid {kind} value: {value}",
        "argparse.one_value": "expected one argument",
        "argparse.at_most_one": "expected at most one argument",
        "argparse.at_least_one": "expected at least one argument",
        "argparse.not_with": "not allowed with argument {name}",
        "argparse.ignored": "ignored explicit argument {value}",
        "argparse.not_number": "'{value}' is not a number",
        "argparse.not_whole": "'{value}' is not a whole number",
        "argparse.not_positive": "'{value}' must be more than 0",
        "argparse.between": "'{value}' is not from {least} to {most}",
        "argparse.at_least": "'{value}' is less than {least}",
        "argparse.at_most": "'{value}' is more than {most}",
        "chat.help": "chat with a GetGpt server",
        "chat.description": "Send MESSAGE and stream the reply; without MESSAGE, an interactive session that "
        "keeps the conversation, with commands (/help lists them) and the input history of earlier runs. "
        "MESSAGE '-' reads it from stdin.",
        "chat.metavar": "MESSAGE",
        "chat.message": "the message to send ('-': read it from stdin); without it, an interactive session",
        "chat.base_url": "the server (default: $GETGPT_BASE_URL, else {url}, where 'getgpt serve' listens)",
        "chat.model_metavar": "NAME",
        "chat.model": "model name (default: the protocol's, gpt-3.5-turbo)",
        "chat.system_metavar": "TEXT",
        "chat.system": "a system prompt",
        "chat.temperature": "from 0 to 2",
        "chat.max_tokens": "the most tokens in the reply (at least 1)",
        "chat.no_stream": "ask for the whole reply at once",
        "chat.timeout": "seconds to wait for data (default 600)",
        "chat.retries": "retries before the first byte (default 2)",
        "chat.plain": "plain text even on a terminal (NO_COLOR set does the same)",
        "chat.api_key_env": "the environment variable holding the server's API key, sent as "
        "Authorization: Bearer (default GETGPT_API_KEY)",
        "chat.empty": "the message is empty: nothing to send (leave MESSAGE out for a session)",
        "chat.bad_url": "{url} is no server address: give one as http://host:port/ or https://host/",
        "demo.help": "start a local echo server and chat with it over real HTTP",
        "demo.description": "Start the server in this process on a free loopback port with the echo backend, "
        "send MESSAGE through the real client and print the reply.",
        "demo.metavar": "MESSAGE",
        "demo.message": "the message to send (default: a greeting)",
        "demo.delay": "seconds between echoed pieces (default 0.02)",
        "demo.note": "getgpt demo: server with the echo backend on {url}; sending {message}",
        "demo.not_started": "the demo server did not start",
        "demo.server_extra": "this needs the server extra: pip install -e '.[server]' ({detail})",
        "serve.help": "run the server",
        "check.help": "check that a server speaks the protocol right",
        "check.description": "Run a battery of conformance checks against the server at URL, a line a "
        "check as each ends, with the evidence for each failure and a hint where its cause is a usual "
        "mistake. Each request is small and asks for few tokens. Exit status 0 only when every required "
        "check passes.",
        "check.url": "the server (default: $GETGPT_BASE_URL, else {url})",
        "check.protocol": "getgpt: POST URL/api/chat/stream with the envelope; openai: POST "
        "URL/chat/completions (give URL with its /v1) (default getgpt)",
        "check.json": "print the results as JSON, for CI",
        "check.model": "the model to ask for (default gpt-3.5-turbo)",
        "check.timeout": "seconds to wait for data, and for a response's head in all (default 30)",
        "check.max_time": "seconds the whole run may take (default 300)",
        "check.burst": "the most requests sent to meet a 429 (default 30)",
        "check.names_metavar": "NAMES",
        "check.only": "run only these checks (comma-separated names, repeatable)",
        "check.skip": "run all but these checks (comma-separated names, repeatable)",
        "check.api_key_env": "the environment variable holding the server's API key (default GETGPT_API_KEY)",
        "check.insecure": "do not verify TLS certificates",
        "keys.help": "make, list, revoke and rotate the API keys of the store (serve --db)",
        "usage.help": "requests and tokens from the usage ledger, added up",
        "db.help": "the store's schema: 'db upgrade' applies its migrations",
        "session.intro": "chatting with {url}; /help lists the commands, /exit or Ctrl-D leaves",
        "session.you": "you",
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
        "save.system": "System prompt",
        "save.user": "You",
        "save.assistant": "Assistant",
        "save.reasoning": "Reasoning",
        "save.stopped": "Stopped: the rest of the reply was not received.",
        "save.cut": "The reply reached the token limit (max tokens) and was cut short.",
        "reply.waiting": "waiting for the reply…",
        "reply.retry_asked": "the server asks to wait (429): trying again in {seconds} s",
        "reply.retry_status": "the server answered {status}: trying again in {seconds} s",
        "reply.retry_connect": "no connection yet: trying again in {seconds} s",
        "reply.reasoning": "reasoning",
        "reply.tool_call": "tool call: {name}({arguments})",
        "reply.cut": "the reply reached the token limit (--max-tokens) and was cut short",
        "error.refused": "connection to {url} refused: is a server running there? "
        "('getgpt serve' starts one)",
        "error.connect": "could not connect to {url}: check the address (its host name and port)",
        "error.timeout": "{url} did not answer in time (--timeout sets how long to wait)",
        "error.need_key": "the server wants an API key ({status}): put it in the environment variable {env} "
        "(--api-key-env names another)",
        "error.bad_key": "the server refused the API key in {env} ({status})",
        "error.rate_limited": "the server asks to slow down (429): try again later",
        "error.rate_limited_for": "the server asks to slow down (429): try again in {seconds} s",
        "error.status": "the server answered {status}",
        "error.v1": "{url} has no GetGpt route (404): a GetGpt server's base URL has no /v1 "
        "(that path is OpenAI's API); try --base-url {fixed}",
        "error.not_found": "{url} has no GetGpt route (404): is it a GetGpt server's base URL?",
        "error.not_getgpt": "{url} answers HTTP, but not as a GetGpt server ({status}): "
        "is it the right address? ('getgpt serve' runs a GetGpt server)",
        "error.cloudflare": "{url} is behind a Cloudflare challenge page ({status}): "
        "a program cannot pass it",
        "error.incomplete": "the reply broke off: the server closed the stream before it was complete",
        "error.protocol": "the server broke the protocol",
        "error.remote": "the server reported an error in the middle of the reply",
        "error.invalid": "invalid request",
        "error.details": "details",
        "error.server_said": "the server said",
    },
    "ru": {
        "cli.description": "Протокол чата GetGpt: общайтесь с сервером, запустите свой "
        "или посмотрите, как они работают вместе.",
        "cli.usage": "использование: ",
        "cli.commands": "команды",
        "cli.command_metavar": "КОМАНДА",
        "cli.arguments": "аргументы",
        "cli.options": "параметры",
        "cli.help": "показать эту справку и выйти",
        "cli.version": "показать версию и выйти",
        "cli.lang": "язык сообщений: en или ru (по умолчанию — язык локали из LC_ALL, LC_MESSAGES или LANG)",
        "cli.error": "{prog}: ошибка: {message}",
        "cli.interrupted": "{prog}: прервано",
        "argparse.argument": "аргумент {name}: {message}",
        "argparse.required": "не хватает обязательных аргументов: {names}",
        "argparse.unrecognized": "непонятные аргументы: {values}",
        "argparse.one_of": "нужен один из аргументов {names}",
        "argparse.ambiguous": "неоднозначный параметр: {option} подходит к {matches}",
        "argparse.choice": "недопустимое значение: {value} (можно: {choices})",
        "argparse.value": "неверное значение ({kind}): {value}",
        "argparse.one_value": "нужно одно значение",
        "argparse.at_most_one": "нужно не больше одного значения",
        "argparse.at_least_one": "нужно хотя бы одно значение",
        "argparse.not_with": "нельзя вместе с аргументом {name}",
        "argparse.ignored": "лишнее значение {value}",
        "argparse.not_number": "'{value}' — не число",
        "argparse.not_whole": "'{value}' — не целое число",
        "argparse.not_positive": "'{value}' должно быть больше 0",
        "argparse.between": "'{value}' — не от {least} до {most}",
        "argparse.at_least": "'{value}' меньше {least}",
        "argparse.at_most": "'{value}' больше {most}",
        "chat.help": "чат с сервером GetGpt",
        "chat.description": "Отправляет СООБЩЕНИЕ и выводит ответ по мере прихода; без СООБЩЕНИЯ — "
        "диалог, который помнит разговор, с командами (/help покажет их) и историей ввода прошлых "
        "запусков. СООБЩЕНИЕ '-' читается из stdin.",
        "chat.metavar": "СООБЩЕНИЕ",
        "chat.message": "сообщение ('-' — прочитать из stdin); без него — диалог",
        "chat.base_url": "сервер (по умолчанию $GETGPT_BASE_URL, иначе {url}, где слушает 'getgpt serve')",
        "chat.model_metavar": "ИМЯ",
        "chat.model": "имя модели (по умолчанию — из протокола, gpt-3.5-turbo)",
        "chat.system_metavar": "ТЕКСТ",
        "chat.system": "системный промпт",
        "chat.temperature": "от 0 до 2",
        "chat.max_tokens": "наибольшее число токенов в ответе (не меньше 1)",
        "chat.no_stream": "получить ответ целиком, а не по частям",
        "chat.timeout": "сколько секунд ждать данных (по умолчанию 600)",
        "chat.retries": "сколько раз повторить запрос до первого байта ответа (по умолчанию 2)",
        "chat.plain": "простой текст даже в терминале (то же делает заданная NO_COLOR)",
        "chat.api_key_env": "переменная окружения с ключом API сервера, он уходит в заголовке "
        "Authorization: Bearer (по умолчанию GETGPT_API_KEY)",
        "chat.empty": "сообщение пустое, отправлять нечего (без СООБЩЕНИЯ начнётся диалог)",
        "chat.bad_url": "{url} — не адрес сервера: укажите его как http://хост:порт/ или https://хост/",
        "demo.help": "запустить локальный эхо-сервер и поговорить с ним по настоящему HTTP",
        "demo.description": "Запускает сервер в этом процессе на свободном локальном порту с эхо-бэкендом, "
        "отправляет СООБЩЕНИЕ настоящим клиентом и выводит ответ.",
        "demo.metavar": "СООБЩЕНИЕ",
        "demo.message": "сообщение (по умолчанию — приветствие)",
        "demo.delay": "пауза между частями эха в секундах (по умолчанию 0.02)",
        "demo.note": "getgpt demo: сервер с эхо-бэкендом на {url}; отправляем {message}",
        "demo.not_started": "демо-сервер не запустился",
        "demo.server_extra": "для этого нужна серверная часть: pip install -e '.[server]' ({detail})",
        "serve.help": "запустить сервер",
        "check.help": "проверить, верно ли сервер говорит на протоколе",
        "check.description": "Прогоняет набор проверок соответствия протоколу на сервере по адресу URL, "
        "по строке на проверку по мере их окончания, с доказательством каждой ошибки и подсказкой, "
        "если её причина — частая оплошность. Каждый запрос мал и просит немного токенов. Код выхода "
        "0 — только если пройдены все обязательные проверки.",
        "check.url": "сервер (по умолчанию $GETGPT_BASE_URL, иначе {url})",
        "check.protocol": "getgpt: POST URL/api/chat/stream с конвертом; openai: POST "
        "URL/chat/completions (URL с его /v1) (по умолчанию getgpt)",
        "check.json": "вывести результаты в JSON, для CI",
        "check.model": "какую модель просить (по умолчанию gpt-3.5-turbo)",
        "check.timeout": "сколько секунд ждать данных и заголовка ответа целиком (по умолчанию 30)",
        "check.max_time": "сколько секунд может занять весь прогон (по умолчанию 300)",
        "check.burst": "сколько запросов самое большее отправить, чтобы встретить 429 (по умолчанию 30)",
        "check.names_metavar": "ИМЕНА",
        "check.only": "выполнить только эти проверки (имена через запятую, можно повторять)",
        "check.skip": "выполнить все проверки, кроме этих (имена через запятую, можно повторять)",
        "check.api_key_env": "переменная окружения с ключом API сервера (по умолчанию GETGPT_API_KEY)",
        "check.insecure": "не проверять сертификаты TLS",
        "keys.help": "создать, показать, отозвать и заменить API-ключи хранилища (serve --db)",
        "usage.help": "запросы и токены из журнала использования, с итогами",
        "db.help": "схема хранилища: 'db upgrade' применяет её миграции",
        "session.intro": "чат с {url}; /help — список команд, /exit или Ctrl-D — выход",
        "session.you": "вы",
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
        "save.system": "Системный промпт",
        "save.user": "Вы",
        "save.assistant": "Ассистент",
        "save.reasoning": "Рассуждение",
        "save.stopped": "Остановлено: остаток ответа не получен.",
        "save.cut": "Ответ упёрся в лимит токенов (максимум токенов) и обрезан.",
        "reply.waiting": "ждём ответа…",
        "reply.retry_asked": "сервер просит подождать (429): новая попытка через {seconds} с",
        "reply.retry_status": "сервер ответил {status}: новая попытка через {seconds} с",
        "reply.retry_connect": "соединения пока нет: новая попытка через {seconds} с",
        "reply.reasoning": "рассуждение",
        "reply.tool_call": "вызов инструмента: {name}({arguments})",
        "reply.cut": "ответ упёрся в лимит токенов (--max-tokens) и обрезан",
        "error.refused": "соединение с {url} отклонено: сервер там запущен? (его запускает 'getgpt serve')",
        "error.connect": "не удалось соединиться с {url}: проверьте адрес (имя хоста и порт)",
        "error.timeout": "{url} не ответил вовремя (сколько ждать, задаёт --timeout)",
        "error.need_key": "серверу нужен ключ API ({status}): задайте его в переменной окружения {env} "
        "(другую переменную называет --api-key-env)",
        "error.bad_key": "сервер не принял ключ API из {env} ({status})",
        "error.rate_limited": "сервер просит не спешить (429): попробуйте позже",
        "error.rate_limited_for": "сервер просит не спешить (429): попробуйте через {seconds} с",
        "error.status": "сервер ответил {status}",
        "error.v1": "у {url} нет пути GetGpt (404): в базовом адресе сервера GetGpt нет /v1 "
        "(этот путь — API OpenAI); попробуйте --base-url {fixed}",
        "error.not_found": "у {url} нет пути GetGpt (404): это точно базовый адрес сервера GetGpt?",
        "error.not_getgpt": "{url} отвечает по HTTP, но не как сервер GetGpt ({status}): адрес верный? "
        "(сервер GetGpt запускает 'getgpt serve')",
        "error.cloudflare": "{url} закрыт страницей проверки Cloudflare ({status}): программе её не пройти",
        "error.incomplete": "ответ оборвался: сервер закрыл поток, не закончив ответ",
        "error.protocol": "сервер нарушил протокол",
        "error.remote": "сервер сообщил об ошибке посреди ответа",
        "error.invalid": "неверный запрос",
        "error.details": "подробности",
        "error.server_said": "ответ сервера",
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
