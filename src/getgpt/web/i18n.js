// @ts-check
// The page's words in English and Russian: one catalogue, the language chosen from the browser
// (navigator.languages) until the user picks one with the switch, which is remembered.
//
// A plain entry is a string; one that counts is an object of plural forms named after
// Intl.PluralRules' categories (Russian needs one/few/many: 1 ответ, 2 ответа, 5 ответов, and
// `other` for fractions). `{name}` in a text is replaced by the value given for it.

/** @typedef {"en" | "ru"} Language */
/** @typedef {string | Partial<Record<Intl.LDMLPluralRule, string>>} Entry */

/** @type {readonly Language[]} */
export const LANGUAGES = Object.freeze(["en", "ru"]);
export const LANGUAGE_KEY = "getgpt.language.v1";

/** The plural categories each language's texts must provide. */
export const PLURAL_FORMS = Object.freeze({ en: ["one", "other"], ru: ["one", "few", "many", "other"] });

/** @type {Record<Language, Record<string, Entry>>} */
export const CATALOGUE = {
  en: {
    "page.title": "GetGpt chat",
    "page.titleOf": "{title} · GetGpt chat",
    "sidebar.label": "Conversations and settings",
    "sidebar.open": "Open conversations and settings",
    "sidebar.close": "Close menu",
    "sidebar.resize": "Sidebar width",
    "chat.new": "New chat",
    "chat.untitled": "New chat",
    "chat.list": "Conversations",
    "chat.delete": "Delete conversation: {title}",
    "chat.deleted": "Deleted “{title}”.",
    "chat.restored": "Restored “{title}”.",
    "chat.undo": "Undo",
    "chat.replies": { one: "{count} reply", other: "{count} replies" },
    "chat.system": "System prompt",
    "chat.import": "Import JSON…",
    "chat.imported": "Imported “{title}”.",
    "chat.importFailed": "Could not import {name}: {reason}",
    "chat.importNotJson": "it is not JSON.",
    "chat.importNotConversation": "it is not a conversation exported from this page.",
    "chat.importEmpty": "it holds no messages.",
    "chat.exportMarkdown": "Export as Markdown",
    "chat.exportJson": "Export as JSON",
    "chat.export": "Export",
    "chat.messages": "Messages",
    "chat.saveFailed": "Could not save the conversation in this browser: {message}",
    "settings.title": "Settings",
    "settings.close": "Close settings",
    "settings.done": "Done",
    "settings.model": "Model",
    "settings.models": { one: "The server offers {count} model.", other: "The server offers {count} models." },
    "settings.temperature": "Temperature",
    "settings.temperatureHint": "From 0 to 2.",
    "settings.maxTokens": "Max tokens",
    "settings.maxTokensHint": "A whole number, 1 or more.",
    "settings.system": "System prompt",
    "settings.systemPlaceholder": "You are a helpful assistant.",
    "settings.systemHint": "New conversations start with it; each keeps the one it started with.",
    "settings.apiKey": "API key",
    "settings.apiKeyPlaceholder": "only if the server asks for one",
    "settings.remember": "Remember the key on this device",
    "settings.apiKeyHint": "Sent as Authorization: Bearer. Kept for this tab only unless remembered.",
    "settings.usage": "This key, last 30 days: requests {requests}, tokens {tokens}.",
    "settings.budget.day": "Budget: {spent} of {tokens} tokens today (UTC).",
    "settings.budget.month": "Budget: {spent} of {tokens} tokens this month (UTC).",
    "settings.budget.total": "Budget: {spent} of {tokens} tokens in all.",
    "settings.language": "Language",
    "theme.label": "Theme",
    "theme.light": "Light",
    "theme.dark": "Dark",
    "theme.system": "System",
    "banner.close": "Dismiss",
    "banner.openSettings": "Open settings",
    "backend.echo": "Offline echo: replies repeat your message.",
    "empty.title": "GetGpt chat",
    "empty.hint": "Replies stream in as they are written; conversations stay in this browser.",
    "composer.label": "Message",
    "composer.placeholder": "Ask anything",
    "composer.hint": "Enter sends, Shift+Enter starts a new line.",
    "composer.send": "Send",
    "composer.stop": "Stop",
    "message.user": "You",
    "message.assistant": "Assistant",
    "message.edit": "Edit",
    "message.editLabel": "Edit the message; sending starts a new branch of the conversation",
    "message.editSend": "Send as a new branch",
    "message.editCancel": "Cancel",
    "message.regenerate": "Regenerate",
    "message.versions": "Reply versions",
    "message.previous": "Previous version",
    "message.next": "Next version",
    "message.version": "Version {n} of {count}",
    "message.reasoning": "Reasoning",
    "message.toolCall": "Tool call: {name}",
    "message.stats": "first token in {ttft} s · {cps} characters/s",
    "message.statsFirst": "first token in {ttft} s",
    "message.copy": "Copy",
    "message.copyMessage": "Copy message",
    "message.copied": "Copied",
    "message.copyFailed": "Copy failed",
    "note.stopped": "Stopped.",
    "note.length": "The reply reached the token limit (max tokens) and was cut short.",
    "note.finish": "The reply ended early: {reason}.",
    "check.temperature": "Temperature must be a number from 0 to 2.",
    "check.maxTokens": "Max tokens must be a whole number, 1 or more.",
    "check.model": "The model's name must be at most 256 characters.",
    "check.notSent": "Not sent. {problem} Change it under Settings → {field}.",
    "error.field": "The server refused the value of “{field}”. Change it under Settings → {field} and send again.",
    "error.param": "The server refused the request's “{param}” field.",
    "error.messages":
      "The server refused the conversation: it holds more messages than the server accepts. " +
      "Start a new chat, or edit an earlier message to branch off.",
    "error.status": "The server answered with an error ({status}).",
    "error.remote": "The server reported an error during the reply.",
    "error.detail": "Details",
    "error.incomplete": "Incomplete reply: the server closed the stream before the reply was complete.",
    "error.protocol": "The server's reply broke the protocol.",
    "error.unreachable": "Network error: could not reach the server.",
    "error.broken": "Network error: the connection broke during the reply.",
    "error.other": "Something went wrong in the page.",
    "error.needKey": "The server needs an API key (401). Enter it under Settings → API key, then send again.",
    "error.badKey": "The server refused this API key (401). Check it under Settings → API key, then send again.",
    "error.insecure":
      "This page cannot send: its encryption (WebCrypto) needs a secure context. " +
      "Open it over HTTPS, or at http://127.0.0.1 or http://localhost.",
  },
  ru: {
    "page.title": "Чат GetGpt",
    "page.titleOf": "{title} · чат GetGpt",
    "sidebar.label": "Разговоры и настройки",
    "sidebar.open": "Открыть разговоры и настройки",
    "sidebar.close": "Закрыть меню",
    "sidebar.resize": "Ширина боковой панели",
    "chat.new": "Новый чат",
    "chat.untitled": "Новый чат",
    "chat.list": "Разговоры",
    "chat.delete": "Удалить разговор: {title}",
    "chat.deleted": "Разговор «{title}» удалён.",
    "chat.restored": "Разговор «{title}» восстановлен.",
    "chat.undo": "Вернуть",
    "chat.replies": { one: "{count} ответ", few: "{count} ответа", many: "{count} ответов", other: "{count} ответа" },
    "chat.system": "Системный промпт",
    "chat.import": "Импорт из JSON…",
    "chat.imported": "Разговор «{title}» загружен.",
    "chat.importFailed": "Не удалось загрузить {name}: {reason}",
    "chat.importNotJson": "это не JSON.",
    "chat.importNotConversation": "это не разговор, выгруженный с этой страницы.",
    "chat.importEmpty": "в нём нет ни одного сообщения.",
    "chat.exportMarkdown": "Экспорт в Markdown",
    "chat.exportJson": "Экспорт в JSON",
    "chat.export": "Экспорт",
    "chat.messages": "Сообщения",
    "chat.saveFailed": "Не удалось сохранить разговор в этом браузере: {message}",
    "settings.title": "Настройки",
    "settings.close": "Закрыть настройки",
    "settings.done": "Готово",
    "settings.model": "Модель",
    "settings.models": {
      one: "Сервер предлагает {count} модель.",
      few: "Сервер предлагает {count} модели.",
      many: "Сервер предлагает {count} моделей.",
      other: "Сервер предлагает {count} модели.",
    },
    "settings.temperature": "Температура",
    "settings.temperatureHint": "От 0 до 2.",
    "settings.maxTokens": "Максимум токенов",
    "settings.maxTokensHint": "Целое число, 1 или больше.",
    "settings.system": "Системный промпт",
    "settings.systemPlaceholder": "Ты — полезный помощник.",
    "settings.systemHint": "С ним начинаются новые разговоры; каждый хранит тот, с которым начат.",
    "settings.apiKey": "Ключ API",
    "settings.apiKeyPlaceholder": "только если сервер его требует",
    "settings.remember": "Запомнить ключ на этом устройстве",
    "settings.apiKeyHint":
      "Отправляется в заголовке Authorization: Bearer. Хранится только в этой вкладке, если не запомнить.",
    "settings.usage": "Этот ключ за 30 дней: запросов — {requests}, токенов — {tokens}.",
    "settings.budget.day": "Бюджет: {spent} из {tokens} токенов за сегодня (UTC).",
    "settings.budget.month": "Бюджет: {spent} из {tokens} токенов за этот месяц (UTC).",
    "settings.budget.total": "Бюджет: {spent} из {tokens} токенов всего.",
    "settings.language": "Язык",
    "theme.label": "Тема",
    "theme.light": "Светлая",
    "theme.dark": "Тёмная",
    "theme.system": "Как в системе",
    "banner.close": "Закрыть",
    "banner.openSettings": "Открыть настройки",
    "backend.echo": "Офлайн-эхо: ответы повторяют ваше сообщение.",
    "empty.title": "Чат GetGpt",
    "empty.hint": "Ответы появляются по мере написания; разговоры хранятся в этом браузере.",
    "composer.label": "Сообщение",
    "composer.placeholder": "Спросите что угодно",
    "composer.hint": "Enter отправляет, Shift+Enter начинает новую строку.",
    "composer.send": "Отправить",
    "composer.stop": "Остановить",
    "message.user": "Вы",
    "message.assistant": "Ассистент",
    "message.edit": "Изменить",
    "message.editLabel": "Изменить сообщение; отправка начнёт новую ветку разговора",
    "message.editSend": "Отправить новой веткой",
    "message.editCancel": "Отмена",
    "message.regenerate": "Ответить заново",
    "message.versions": "Версии ответа",
    "message.previous": "Предыдущая версия",
    "message.next": "Следующая версия",
    "message.version": "Версия {n} из {count}",
    "message.reasoning": "Рассуждение",
    "message.toolCall": "Вызов инструмента: {name}",
    "message.stats": "первый токен через {ttft} с · {cps} симв./с",
    "message.statsFirst": "первый токен через {ttft} с",
    "message.copy": "Копировать",
    "message.copyMessage": "Копировать сообщение",
    "message.copied": "Скопировано",
    "message.copyFailed": "Не удалось скопировать",
    "note.stopped": "Остановлено.",
    "note.length": "Ответ упёрся в лимит токенов (максимум токенов) и обрезан.",
    "note.finish": "Ответ закончился раньше времени: {reason}.",
    "check.temperature": "Температура должна быть числом от 0 до 2.",
    "check.maxTokens": "Максимум токенов должен быть целым числом, 1 или больше.",
    "check.model": "Название модели должно быть не длиннее 256 символов.",
    "check.notSent": "Не отправлено. {problem} Исправьте в «Настройки → {field}».",
    "error.field": "Сервер не принял значение поля «{field}». Измените его в «Настройки → {field}» и отправьте снова.",
    "error.param": "Сервер не принял поле запроса «{param}».",
    "error.messages":
      "Сервер не принял разговор: в нём больше сообщений, чем сервер допускает. " +
      "Начните новый чат или измените одно из ранних сообщений, чтобы начать ветку.",
    "error.status": "Сервер ответил ошибкой ({status}).",
    "error.remote": "Сервер сообщил об ошибке посреди ответа.",
    "error.detail": "Подробности",
    "error.incomplete": "Ответ оборван: сервер закрыл поток, не закончив ответ.",
    "error.protocol": "Ответ сервера нарушает протокол.",
    "error.unreachable": "Ошибка сети: не удалось связаться с сервером.",
    "error.broken": "Ошибка сети: соединение оборвалось посреди ответа.",
    "error.other": "Что-то пошло не так на странице.",
    "error.needKey": "Сервер требует ключ API (401). Введите его в «Настройки → Ключ API» и отправьте снова.",
    "error.badKey": "Сервер не принял этот ключ API (401). Проверьте его в «Настройки → Ключ API» и отправьте снова.",
    "error.insecure":
      "Эта страница не может отправлять сообщения: её шифрованию (WebCrypto) нужен защищённый контекст. " +
      "Откройте её по HTTPS или по адресу http://127.0.0.1 или http://localhost.",
  },
};

/**
 * The first of the browser's preferred languages that the page speaks; English otherwise.
 * @param {readonly string[]} preferred
 * @returns {Language}
 */
export function languageFor(preferred) {
  for (const tag of preferred) {
    const base = tag.toLowerCase().split("-")[0];
    if (base === "en" || base === "ru") return base;
  }
  return "en";
}

/**
 * The remembered choice if any, else the browser's.
 * @param {Storage} storage
 * @returns {Language}
 */
export function initialLanguage(storage) {
  let saved = null;
  try {
    saved = storage.getItem(LANGUAGE_KEY);
  } catch {
    // storage refused (private mode): the browser's language it is
  }
  if (saved === "en" || saved === "ru") return saved;
  return languageFor(navigator.languages?.length ? navigator.languages : [navigator.language ?? "en"]);
}

/** @type {Language} */
let current = "en";

/** @returns {Language} */
export function language() {
  return current;
}

/** @param {Language} lang */
export function setLanguage(lang) {
  current = lang;
  document.documentElement.lang = lang;
}

/**
 * The text for `key` in the current language, with `{name}` replaced by `vars.name`.
 * A counted entry picks its plural form from `vars.count`.
 * @param {string} key
 * @param {Record<string, string | number>} [vars]
 * @returns {string}
 */
export function t(key, vars = {}) {
  const entry = CATALOGUE[current][key] ?? CATALOGUE.en[key];
  if (entry === undefined) throw new Error(`no text for ${key}`);
  let text;
  if (typeof entry === "string") text = entry;
  else {
    const count = Number(vars.count ?? 0);
    const form = new Intl.PluralRules(current).select(count);
    text = entry[form] ?? entry.other ?? "";
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    vars[name] === undefined ? whole : typeof vars[name] === "number" ? formatNumber(vars[name]) : vars[name],
  );
}

/**
 * A number written the current language's way (a decimal comma in Russian), with exactly
 * `digits` decimals when given.
 * @param {number} value
 * @param {number} [digits]
 */
export function formatNumber(value, digits) {
  const options = digits === undefined ? {} : { maximumFractionDigits: digits, minimumFractionDigits: digits };
  return new Intl.NumberFormat(current, options).format(value);
}

/**
 * Put the current language's words into the page's static markup: `data-i18n` names the key of
 * an element's text, `data-i18n-<attribute>` the key of that attribute.
 * @param {ParentNode} root
 */
export function translatePage(root) {
  for (const node of root.querySelectorAll("*")) {
    if (!(node instanceof HTMLElement)) continue;
    for (const [name, key] of Object.entries(node.dataset)) {
      if (!key || !name.startsWith("i18n")) continue;
      if (name === "i18n") node.textContent = t(key);
      else node.setAttribute(name.slice(4).replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()).slice(1), t(key));
    }
  }
}
