"""What ``getgpt check`` says, in English and Russian: each check's title, the evidence of a
failure, the hints for the usual mistakes, the table and its summary.

``{name}`` in a text is replaced by the value given for it. Numbers stand after a colon or as a
position ("event 3", "запрос 12"), never counted with a noun, so neither language needs plural
forms here. The values quoted -- bytes, headers, what the server sent -- stay as they were.
"""

# ruff: noqa: RUF001  (Russian text on purpose: Cyrillic letters that look Latin)

from __future__ import annotations

__all__ = ["LANGUAGES", "WORDS", "Words"]

LANGUAGES = ("en", "ru")

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title.envelope": "a valid chat request is answered 2xx",
        "title.request": "a valid chat request is answered 2xx",
        "title.content-type": "the stream is text/event-stream",
        "title.framing": "every event is a chat.completion.chunk in well-formed SSE, in UTF-8",
        "title.done": "the stream ends with data: [DONE] and nothing after it",
        "title.finish-reason": "exactly one known finish_reason, after the last text",
        "title.unicode": "text survives intact: no split characters, no U+FFFD",
        "title.whole-reply": '"stream": false gives one chat.completion with usage',
        "title.usage": "usage arrives when asked (stream_options.include_usage)",
        "title.bad-json": "a body that is not JSON gets 400 and a JSON error",
        "title.bad-signature": "a signature that is not one gets 400 and a JSON error",
        "title.invalid-request": "a request without messages gets 400/422 and a JSON error",
        "title.disconnect": "a client that leaves mid-stream ends the reply on the server",
        "title.error-event": 'an error in a stream is {"error": {"message"}} then [DONE]',
        "title.retry-after": "every 429 and 503 carries a valid Retry-After",
        "evidence.status": "HTTP {status}: {excerpt}",
        "evidence.unreachable": "no connection to {origin}: {reason}",
        "evidence.status_expected": "HTTP {status}, expected {expected}: {excerpt}",
        "evidence.content_type": "Content-Type: {value}",
        "evidence.content_type_body": "Content-Type: {value}: {excerpt}",
        "evidence.no_done": "no data: [DONE]; the last event was {last}",
        "evidence.after_done": "events after [DONE]: {count}; the first: {first}",
        "evidence.stream_faulty": "the stream this check read is not well-formed: {problems}",
        "evidence.echo_differs": "the echo differs from the message sent at character {at}: "
        "sent {sent}, received {received}",
        "evidence.echo_short": "the echo stops at character {at} of {length}, after {received}",
        "evidence.echo_compared": "compared with the message sent (the server echoes)",
        "evidence.no_text": "the reply holds no text",
        "evidence.event": "event {at}: {fault}",
        "evidence.not_completion": "not a chat.completion with choices[0].message: {excerpt}",
        "evidence.no_content": "choices[0].message has no content: {message}",
        "evidence.unknown_finish": "finish_reason {reason} is not one of {known}",
        "evidence.nine_fields": "the server takes only the seed's nine fields (HTTP {status})",
        "evidence.ended_in_error": "the stream ended in an error event (judged by error-event)",
        "evidence.no_usage": "asked for usage, the stream carried none",
        "evidence.usage_many": "events carrying usage: {count}; one should",
        "evidence.usage_early": "usage (event {at}) comes before the finish_reason (event {finish})",
        "evidence.no_usage_object": "no usage object: {usage}",
        "evidence.usage_not_whole": "usage counts are not whole numbers: {counts}",
        "evidence.usage_total": "total_tokens is not prompt_tokens + completion_tokens: {counts}",
        "evidence.no_healthz": "the server reports no active_slots (or active_streams) at /healthz to watch",
        "evidence.long_refused": "the long request was refused: HTTP {status}",
        "evidence.ended_early": "the reply had ended before the checker could leave it",
        "evidence.still_streaming": "replies in progress at /healthz: {before}, {during} during the "
        "reply, still {after} {within} s after the client left",
        "evidence.error_shape": 'event {at} is not {{"error": {{"message": ...}}}}: {event}',
        "evidence.error_then_more": "event {at} is an error, yet more followed: {later}",
        "evidence.error_no_done": "event {at} is an error, and no data: [DONE] follows it",
        "evidence.no_error_event": "no error event arrived in any stream",
        "evidence.error_events": "error events seen: {count}",
        "evidence.no_retry_after": "HTTP {status} without Retry-After",
        "evidence.bad_retry_after": "HTTP {status} with a Retry-After that is neither seconds nor a "
        "date: {value}",
        "evidence.at_request": "request {sent}: {fault}",
        "evidence.limited": "HTTP {status} at request {sent}; Retry-After: {asked}",
        "evidence.no_429": "no 429 in a burst of {burst} requests",
        "evidence.body_not_json": "the body is not JSON: {excerpt}",
        "evidence.not_error_object": 'the body is not {{"error": {{"message": ...}}}}: {excerpt}',
        "evidence.no_finish": "no event carries a finish_reason",
        "evidence.many_finish": "more than one finish_reason: {reasons}",
        "evidence.text_after_finish": "text after the finish_reason (event {at}): {text}",
        "stream.not_utf8": "the body is not UTF-8: {reason} at byte {at} ({around})",
        "stream.unclosed": "the last event is not closed by a blank line, so an EventSource drops it: {tail}",
        "stream.not_json": "event {at} is not JSON ({error}): {data}",
        "stream.not_object": "event {at} is JSON but not an object: {data}",
        "stream.wrong_object": 'event {at} has "object": {kind}, not "chat.completion.chunk"',
        "stream.no_choices": 'event {at} has no "choices" list: {data}',
        "stream.no_delta": 'event {at} has a choice without a "delta" object: {data}',
        "stream.content_not_text": "event {at} has content that is not a string: {content}",
        "stream.no_event": "the body holds no event at all",
        "stream.surrogate": "a lone surrogate U+{code} at character {at} of {text}",
        "stream.replacement": "U+FFFD (a replaced undecodable byte) at character {at} of {text}",
        "hint.refused": "is a server running there? 'getgpt serve' starts one",
        "hint.connect": "check the address: its host name and port",
        "hint.need_key": "the server wants an API key: put it in the environment variable {env} "
        "(--api-key-env names another)",
        "hint.bad_key": "the server refused the API key in {env}",
        "hint.v1_getgpt": "a GetGpt server's base URL has no /v1 (that path is OpenAI's API): "
        "try {fixed}, or --protocol openai",
        "hint.v1_openai": "OpenAI-compatible servers answer under /v1: try {fixed}",
        "hint.not_found": "is {url} the server's base URL?",
        "hint.not_chat": "{url} answers HTTP, but not as a chat server: is it the right address?",
        "table.header": "getgpt check {url} --protocol {protocol}",
        "table.pass": "PASS",
        "table.fail": "FAIL",
        "table.n/a": "N/A",
        "table.optional": "(optional)",
        "table.hint": "hint: {hint}",
        "table.same_cause": "{ids}: the same cause",
        "table.summary": "{passed} passed, {failed} failed, {na} not applicable -- {verdict}",
        "table.conforms": "conforms",
        "table.does_not_conform": "does not conform: {failed}",
        "table.checking": "checking {id}: {title}…",
        "settings.unknown_checks": "unknown check name(s): {names}; the checks are: {known}",
    },
    "ru": {
        "title.envelope": "на верный запрос чата приходит ответ 2xx",
        "title.request": "на верный запрос чата приходит ответ 2xx",
        "title.content-type": "поток приходит как text/event-stream",
        "title.framing": "каждое событие — chat.completion.chunk в правильном SSE, в UTF-8",
        "title.done": "поток кончается строкой data: [DONE], и после неё ничего нет",
        "title.finish-reason": "ровно один известный finish_reason, после всего текста",
        "title.unicode": "текст доходит целым: без разрезанных символов и U+FFFD",
        "title.whole-reply": '"stream": false даёт один chat.completion со сведениями о токенах',
        "title.usage": "сведения о токенах приходят по запросу (stream_options.include_usage)",
        "title.bad-json": "на тело не в JSON приходят 400 и ошибка в JSON",
        "title.bad-signature": "на негодную подпись приходят 400 и ошибка в JSON",
        "title.invalid-request": "на запрос без сообщений приходят 400/422 и ошибка в JSON",
        "title.disconnect": "ушедший посреди потока клиент прекращает ответ на сервере",
        "title.error-event": 'ошибка в потоке — это {"error": {"message"}}, а за ней [DONE]',
        "title.retry-after": "у каждого ответа 429 и 503 верный Retry-After",
        "evidence.status": "HTTP {status}: {excerpt}",
        "evidence.unreachable": "нет соединения с {origin}: {reason}",
        "evidence.status_expected": "HTTP {status}, а ожидался {expected}: {excerpt}",
        "evidence.content_type": "Content-Type: {value}",
        "evidence.content_type_body": "Content-Type: {value}: {excerpt}",
        "evidence.no_done": "нет data: [DONE]; последним было событие {last}",
        "evidence.after_done": "событий после [DONE]: {count}; первое: {first}",
        "evidence.stream_faulty": "поток, прочитанный этой проверкой, построен неверно: {problems}",
        "evidence.echo_differs": "эхо расходится с отправленным сообщением на символе {at}: "
        "отправлено {sent}, получено {received}",
        "evidence.echo_short": "эхо обрывается на символе {at} из {length}, после {received}",
        "evidence.echo_compared": "сверено с отправленным сообщением (сервер отвечает эхом)",
        "evidence.no_text": "в ответе нет текста",
        "evidence.event": "событие {at}: {fault}",
        "evidence.not_completion": "это не chat.completion с choices[0].message: {excerpt}",
        "evidence.no_content": "в choices[0].message нет содержимого: {message}",
        "evidence.unknown_finish": "finish_reason {reason} — не из известных: {known}",
        "evidence.nine_fields": "сервер принимает только девять полей исходного протокола (HTTP {status})",
        "evidence.ended_in_error": "поток кончился событием-ошибкой (её судит проверка error-event)",
        "evidence.no_usage": "сведения о токенах запрошены, но в потоке их нет",
        "evidence.usage_many": "событий со сведениями о токенах: {count}, а должно быть одно",
        "evidence.usage_early": "сведения о токенах (событие {at}) пришли раньше finish_reason "
        "(событие {finish})",
        "evidence.no_usage_object": "нет объекта usage: {usage}",
        "evidence.usage_not_whole": "счётчики usage — не целые числа: {counts}",
        "evidence.usage_total": "total_tokens не равен prompt_tokens + completion_tokens: {counts}",
        "evidence.no_healthz": "сервер не сообщает active_slots (или active_streams) на /healthz, "
        "следить не за чем",
        "evidence.long_refused": "длинный запрос отклонён: HTTP {status}",
        "evidence.ended_early": "ответ кончился раньше, чем проверка успела от него уйти",
        "evidence.still_streaming": "ответов в работе по /healthz было {before}, во время ответа "
        "{during}, и всё ещё {after} через {within} с после ухода клиента",
        "evidence.error_shape": 'событие {at} — не {{"error": {{"message": ...}}}}: {event}',
        "evidence.error_then_more": "событие {at} — ошибка, но за ним пришло ещё: {later}",
        "evidence.error_no_done": "событие {at} — ошибка, и за ним нет data: [DONE]",
        "evidence.no_error_event": "ни в одном потоке не было события-ошибки",
        "evidence.error_events": "событий-ошибок: {count}",
        "evidence.no_retry_after": "HTTP {status} без Retry-After",
        "evidence.bad_retry_after": "HTTP {status} с Retry-After, который не число секунд и не дата: {value}",
        "evidence.at_request": "запрос {sent}: {fault}",
        "evidence.limited": "HTTP {status} на запросе {sent}; Retry-After: {asked}",
        "evidence.no_429": "ни одного ответа 429 (отправлено запросов подряд: {burst})",
        "evidence.body_not_json": "тело — не JSON: {excerpt}",
        "evidence.not_error_object": 'тело — не {{"error": {{"message": ...}}}}: {excerpt}',
        "evidence.no_finish": "ни в одном событии нет finish_reason",
        "evidence.many_finish": "finish_reason больше одного: {reasons}",
        "evidence.text_after_finish": "текст после finish_reason (событие {at}): {text}",
        "stream.not_utf8": "тело — не UTF-8: {reason} на байте {at} ({around})",
        "stream.unclosed": "последнее событие не закрыто пустой строкой, и EventSource его отбросит: {tail}",
        "stream.not_json": "событие {at} — не JSON ({error}): {data}",
        "stream.not_object": "событие {at} — JSON, но не объект: {data}",
        "stream.wrong_object": 'у события {at} "object": {kind}, а не "chat.completion.chunk"',
        "stream.no_choices": 'в событии {at} нет списка "choices": {data}',
        "stream.no_delta": 'в событии {at} есть вариант без объекта "delta": {data}',
        "stream.content_not_text": "в событии {at} содержимое — не строка: {content}",
        "stream.no_event": "в теле нет ни одного события",
        "stream.surrogate": "одинокий суррогат U+{code} на символе {at} в {text}",
        "stream.replacement": "U+FFFD (замена неразобранного байта) на символе {at} в {text}",
        "hint.refused": "сервер там запущен? Его запускает 'getgpt serve'",
        "hint.connect": "проверьте адрес: имя хоста и порт",
        "hint.need_key": "серверу нужен ключ API: задайте его в переменной окружения {env} "
        "(другую переменную называет --api-key-env)",
        "hint.bad_key": "сервер не принял ключ API из {env}",
        "hint.v1_getgpt": "в базовом адресе сервера GetGpt нет /v1 (этот путь — API OpenAI): "
        "попробуйте {fixed} или --protocol openai",
        "hint.v1_openai": "серверы, совместимые с OpenAI, отвечают по пути /v1: попробуйте {fixed}",
        "hint.not_found": "{url} — точно базовый адрес сервера?",
        "hint.not_chat": "{url} отвечает по HTTP, но это не сервер чата: адрес верный?",
        "table.header": "getgpt check {url} --protocol {protocol}",
        "table.pass": "ВЕРНО",
        "table.fail": "ОШИБКА",
        "table.n/a": "Н/П",
        "table.optional": "(необязательная)",
        "table.hint": "подсказка: {hint}",
        "table.same_cause": "{ids}: по той же причине",
        "table.summary": "пройдено: {passed}, не пройдено: {failed}, неприменимо: {na} — {verdict}",
        "table.conforms": "соответствует протоколу",
        "table.does_not_conform": "не соответствует: {failed}",
        "table.checking": "проверяю {id}: {title}…",
        "settings.unknown_checks": "неизвестные проверки: {names}; проверки такие: {known}",
    },
}


class Words:
    """The checker's words in one language: ``words("key", name=value)``."""

    def __init__(self, language: str = "en") -> None:
        if language not in WORDS:
            raise ValueError(f"unknown language {language!r}: expected {' or '.join(LANGUAGES)}")
        self.language = language
        self._entries = WORDS[language]

    def __call__(self, key: str, **values: object) -> str:
        return self._entries[key].format_map(values) if values else self._entries[key]
