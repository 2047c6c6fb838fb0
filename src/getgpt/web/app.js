// @ts-check
// The chat page: conversations, settings, and a reply streamed through the GetGpt protocol.

import * as i18n from "./i18n.js";
import { MarkdownView, plainText, renderMarkdown } from "./markdown.js";
import * as protocol from "./protocol.js";
import {
  ImportError,
  Store,
  exportJson,
  exportMarkdown,
  importConversation,
  prettyJson,
  repliesOf,
  showVersion,
  titleOf,
  versionOf,
} from "./store.js";

/** @typedef {import("./store.js").Conversation} Conversation */
/** @typedef {import("./store.js").Message} Message */
/** @typedef {import("./store.js").Settings} Settings */
/** @typedef {import("./protocol.js").ToolCall} ToolCall */

const { t } = i18n;

/**
 * The element with this id, checked to be of the expected kind.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} kind
 * @returns {T}
 */
function byId(id, kind) {
  const node = document.getElementById(id);
  if (!(node instanceof kind)) throw new Error(`the page has no ${kind.name} #${id}`);
  return node;
}

const ui = {
  app: /** @type {HTMLElement} */ (document.querySelector(".app")),
  sidebar: byId("sidebar", HTMLElement),
  resizer: byId("resizer", HTMLDivElement),
  scrim: byId("scrim", HTMLDivElement),
  list: byId("conversations", HTMLUListElement),
  newChat: byId("new-chat", HTMLButtonElement),
  newChatTop: byId("new-chat-top", HTMLButtonElement),
  openSidebar: byId("open-sidebar", HTMLButtonElement),
  closeSidebar: byId("close-sidebar", HTMLButtonElement),
  title: byId("title", HTMLHeadingElement),
  exportMarkdown: byId("export-md", HTMLButtonElement),
  exportJson: byId("export-json", HTMLButtonElement),
  importButton: byId("import", HTMLButtonElement),
  importFile: byId("import-file", HTMLInputElement),
  messages: byId("messages", HTMLDivElement),
  composer: byId("composer", HTMLFormElement),
  input: byId("input", HTMLTextAreaElement),
  send: byId("send", HTMLButtonElement),
  stop: byId("stop", HTMLButtonElement),
  backendNote: byId("backend-note", HTMLParagraphElement),
  backendText: byId("backend-text", HTMLSpanElement),
  banner: byId("banner", HTMLDivElement),
  bannerText: byId("banner-text", HTMLSpanElement),
  bannerAction: byId("banner-action", HTMLButtonElement),
  bannerClose: byId("banner-close", HTMLButtonElement),
  status: byId("status", HTMLDivElement),
  toast: byId("toast", HTMLDivElement),
  toastText: byId("toast-text", HTMLSpanElement),
  toastUndo: byId("toast-undo", HTMLButtonElement),
  openSettings: byId("open-settings", HTMLButtonElement),
  settings: byId("settings", HTMLDialogElement),
  settingsForm: byId("settings-form", HTMLFormElement),
  closeSettings: byId("close-settings", HTMLButtonElement),
  model: byId("model", HTMLInputElement),
  models: byId("models", HTMLDataListElement),
  modelsNote: byId("models-note", HTMLParagraphElement),
  temperature: byId("temperature", HTMLInputElement),
  maxTokens: byId("max-tokens", HTMLInputElement),
  system: byId("system", HTMLTextAreaElement),
  apiKey: byId("api-key", HTMLInputElement),
  rememberKey: byId("remember-key", HTMLInputElement),
  keyUsage: byId("key-usage", HTMLParagraphElement),
  language: byId("language", HTMLSelectElement),
  themes: /** @type {HTMLInputElement[]} */ ([...document.querySelectorAll('input[name="theme"]')]),
};

const store = new Store();
// WebCrypto exists only in a secure context: HTTPS, or a loopback address such as 127.0.0.1.
const secure = window.isSecureContext && globalThis.crypto?.subtle !== undefined;

/**
 * The reply being streamed, if any.
 * @typedef {object} Active
 * @property {Conversation} conversation
 * @property {Message} message
 * @property {AbortController} controller
 * @property {MarkdownView | null} view
 * @property {HTMLElement | null} node
 */
/** @type {Active | null} */
let active = null;
let renderPending = false;
// Each message's node on screen, kept outside the message so it never reaches storage.
/** @type {WeakMap<Message, HTMLElement>} */
const nodes = new WeakMap();
let lastSave = 0;
const SAVE_EVERY_MS = 500;
// A rate measured over less than this says more about buffering than about the model: an echo
// that sends all its pieces in one write measured 2,666,667 characters/s.
const MIN_RATE_MS = 100;
// The page's timers a test may lengthen (through window.getgpt.timing): undoMs, how long a
// deletion can be undone. An audit or a screenshot of the undo toast on a loaded machine can take
// longer than the six seconds a user gets; a test holds the toast up instead of racing it.
const timing = { undoMs: 6000 };
const THEME_KEY = "getgpt.theme.v1";
const WIDTH_KEY = "getgpt.sidebarWidth.v1";
const WIDTH = Object.freeze({ min: 220, max: 480, initial: 300, step: 16 });
/** The models the server lists at /v1/models; empty until it has answered. @type {string[]} */
let serverModels = [];
/** The server's backend as /healthz names it ("" until known). */
let backend = "";
/**
 * The banner's text and its button, made again when the language changes.
 * @typedef {{text: () => string, action?: {label: () => string, run: () => void}}} Banner
 */
/** @type {Banner | null} */
let banner = null;
/** @type {{text: () => string, undo: () => void, timer: number} | null} */
let toast = null;

/**
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** @param {string} name  an icon of the page's sprite (index.html), without its "i-" */
function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

/**
 * @param {string} className
 * @param {string} text
 * @param {() => void} onClick
 */
function button(className, text, onClick) {
  const node = /** @type {HTMLButtonElement} */ (el("button", className, text));
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

/**
 * A button that shows an icon and is named by `label` (for screen readers, and as its tooltip).
 * @param {string} className
 * @param {string} iconName
 * @param {string} label
 * @param {() => void} onClick
 */
function iconButton(className, iconName, label, onClick) {
  const node = button(`icon-btn ${className}`.trim(), "", onClick);
  node.append(icon(iconName));
  node.setAttribute("aria-label", label);
  node.title = label;
  return node;
}

/** @param {Banner | null} next */
function showBanner(next) {
  banner = next;
  ui.bannerText.textContent = next ? next.text() : "";
  ui.bannerAction.hidden = !next?.action;
  ui.bannerAction.textContent = next?.action ? next.action.label() : "";
  ui.banner.hidden = !next;
}

/** @param {string} text */
function announce(text) {
  ui.status.textContent = text;
}

function save() {
  lastSave = Date.now();
  const problem = store.save();
  if (problem) showBanner({ text: () => problem });
}

// ---- rendering ---------------------------------------------------------------------------

function renderList() {
  ui.list.replaceChildren();
  for (const conversation of store.list()) {
    const title = titleOf(conversation);
    const current = conversation.id === store.currentId;
    const item = el("li", "conversation" + (current ? " current" : ""));
    const open = button("conversation-open", title, () => {
      store.select(conversation.id);
      save();
      renderAll();
      closeSidebar();
    });
    open.title = `${title} · ${t("chat.replies", { count: repliesOf(conversation) })}`;
    if (current) open.setAttribute("aria-current", "true");
    const remove = iconButton("conversation-delete", "trash", t("chat.delete", { title }), () =>
      deleteConversation(conversation),
    );
    item.append(open, remove);
    ui.list.append(item);
  }
}

/** @param {Message} message */
function noteFor(message) {
  if (message.error) {
    const note = el("div", "note error");
    note.setAttribute("role", "alert");
    note.append(el("p", "", message.error));
    if (message.errorDetail) {
      // The server's own words, for whoever needs them: not the page's to translate.
      const detail = el("details", "detail");
      detail.append(el("summary", "", t("error.detail")), el("code", "server-words", message.errorDetail));
      note.append(detail);
    }
    return note;
  }
  if (message.stopped) return el("div", "note stopped", t("note.stopped"));
  if (message.finishReason === "length") return el("div", "note stopped", t("note.length"));
  if (message.finishReason) return el("div", "note stopped", t("note.finish", { reason: message.finishReason }));
  return null;
}

/**
 * Time to first token, and characters a second when the reply streamed long enough to measure
 * one, small, under a finished reply.
 * @param {Message} message
 */
function statsFor(message) {
  const stats = message.stats;
  if (!stats) return null;
  const ttft = i18n.formatNumber(stats.firstMs / 1000, 2);
  const streamed = stats.totalMs - stats.firstMs;
  const text =
    stats.pieces > 1 && streamed >= MIN_RATE_MS
      ? t("message.stats", { ttft, cps: i18n.formatNumber(stats.chars / (streamed / 1000), 0) })
      : t("message.statsFirst", { ttft });
  return el("p", "stats", text);
}

/**
 * Reasoning (collapsed) and tool calls, as collapsible blocks, made or brought up to date in
 * `node` so a block the reader opened stays open while the reply streams.
 * @param {Message} message
 * @param {HTMLElement} node
 */
function renderExtras(message, node) {
  const body = /** @type {HTMLElement} */ (node.querySelector(":scope > .body"));
  if (message.reasoning) {
    let block = node.querySelector(":scope > details.reasoning");
    if (!block) {
      block = el("details", "reasoning");
      const summary = el("summary", "", t("message.reasoning"));
      block.append(summary, el("div", "reasoning-text"));
      body.before(block);
    }
    const text = /** @type {HTMLElement} */ (block.querySelector(".reasoning-text"));
    if (text.textContent !== message.reasoning) text.textContent = message.reasoning;
  }
  const calls = message.toolCalls ?? [];
  let list = node.querySelector(":scope > .tool-calls");
  if (calls.length && !list) {
    list = el("div", "tool-calls");
    body.after(list);
  }
  calls.forEach((call, index) => {
    let block = list?.children[index];
    if (!block) {
      block = el("details", "tool-call");
      const pre = el("pre");
      pre.append(el("code", "language-json"));
      block.append(el("summary"), pre);
      list?.append(block);
    }
    const summary = /** @type {HTMLElement} */ (block.querySelector("summary"));
    const name = t("message.toolCall", { name: call.function.name || "?" });
    if (summary.textContent !== name) summary.textContent = name;
    const code = /** @type {HTMLElement} */ (block.querySelector("code"));
    const args = prettyJson(call.function.arguments);
    if (code.textContent !== args) code.textContent = args;
  });
}

/**
 * @param {Conversation} conversation
 * @param {number} index
 */
function renderMessage(conversation, index) {
  const message = conversation.messages[index];
  const node = el("article", `msg ${message.role}`);
  node.append(el("div", "role", t(message.role === "user" ? "message.user" : "message.assistant")));
  const body = el("div", "body");
  node.append(body);
  const streaming = active !== null && active.message === message;
  if (message.role === "user") {
    body.textContent = message.content; // what the user typed is shown as typed
  } else if (active && streaming) {
    node.classList.add("streaming");
    active.view = new MarkdownView(body);
    active.view.update(message.content);
    active.node = node;
  } else {
    body.append(renderMarkdown(message.content));
  }
  renderExtras(message, node);
  const note = noteFor(message);
  if (note) node.append(note);
  const stats = statsFor(message);
  if (stats) node.append(stats);
  if (!streaming) node.append(actionsFor(conversation, index));
  nodes.set(message, node);
  return node;
}

/**
 * Copy on every message; Edit on the user's; Regenerate, and the versions it made, on the last
 * reply. Only Copy while a reply streams.
 * @param {Conversation} conversation
 * @param {number} index
 */
function actionsFor(conversation, index) {
  const message = conversation.messages[index];
  const actions = el("div", "actions");
  if (message.content) {
    const copy = iconButton("copy", "copy", t("message.copyMessage"), () => copyMessage(message, copy));
    actions.append(copy);
  }
  if (active || !secure) return actions;
  const last = index === conversation.messages.length - 1;
  if (message.role === "user") {
    actions.append(iconButton("edit", "edit", t("message.edit"), () => startEdit(conversation, index)));
  } else if (last && conversation.messages[index - 1]?.role === "user") {
    actions.append(
      iconButton("regenerate", "regenerate", t("message.regenerate"), () => regenerate(conversation)),
    );
    const versions = message.versions ?? [];
    const shown = message.version ?? 0;
    if (versions.length > 1) {
      const pager = el("div", "pager");
      pager.setAttribute("role", "group");
      pager.setAttribute("aria-label", t("message.versions"));
      const previous = iconButton("previous", "previous", t("message.previous"), () =>
        pageVersion(message, -1),
      );
      const next = iconButton("next", "next", t("message.next"), () => pageVersion(message, 1));
      previous.disabled = shown === 0;
      next.disabled = shown === versions.length - 1;
      const where = el("span", "version", `${shown + 1}/${versions.length}`);
      where.title = t("message.version", { n: shown + 1, count: versions.length });
      pager.append(previous, where, next);
      actions.append(pager);
    }
  }
  return actions;
}

function renderConversation() {
  const conversation = store.current();
  const title = conversation ? titleOf(conversation) : t("chat.untitled");
  ui.title.textContent = title;
  ui.title.title = title;
  document.title = conversation ? t("page.titleOf", { title }) : t("page.title");
  const empty = !conversation || conversation.messages.length === 0;
  ui.exportMarkdown.disabled = empty;
  ui.exportJson.disabled = empty;
  const scroll = ui.messages.scrollTop;
  const follow = nearBottom();
  ui.messages.replaceChildren();
  if (!conversation || empty) {
    const intro = el("div", "empty");
    intro.append(el("h2", "", t("empty.title")), el("p", "", t("empty.hint")));
    ui.messages.append(intro);
    return;
  }
  if (conversation.system) {
    const system = el("details", "system-prompt");
    system.append(el("summary", "", t("chat.system")), el("div", "system-text", conversation.system));
    ui.messages.append(system);
  }
  conversation.messages.forEach((_, index) => ui.messages.append(renderMessage(conversation, index)));
  ui.messages.scrollTop = follow ? ui.messages.scrollHeight : scroll;
}

function renderAll() {
  renderList();
  renderConversation();
  updateComposer();
}

function updateComposer() {
  const busy = active !== null;
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  ui.composer.classList.toggle("busy", busy);
  ui.messages.setAttribute("aria-busy", String(busy));
}

function renderBackend() {
  // The echo repeats what it is sent: said, so a newcomer's own words coming back are no surprise.
  ui.backendNote.hidden = backend !== "echo";
  ui.backendText.textContent = backend === "echo" ? t("backend.echo") : "";
}

function nearBottom() {
  return ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
}

// Text arrives faster than the screen refreshes: draw at most once a frame.
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    if (!active || !active.view || !active.node) return;
    const follow = nearBottom();
    active.view.update(active.message.content);
    renderExtras(active.message, active.node);
    if (follow) ui.messages.scrollTop = ui.messages.scrollHeight;
    if (Date.now() - lastSave > SAVE_EVERY_MS) save();
  });
}

// ---- settings ----------------------------------------------------------------------------

/** @returns {Settings} */
function readSettings() {
  const settings = {
    model: ui.model.value.trim(),
    temperature: ui.temperature.value.trim(),
    maxTokens: ui.maxTokens.value.trim(),
    system: ui.system.value,
  };
  store.settings = settings;
  return settings;
}

/**
 * A setting the server would refuse, checked before anything is sent: the same bounds as the
 * server's (src/getgpt/request.py), so the user hears it at once and in the page's language.
 * @typedef {{input: HTMLInputElement, problem: () => string, field: () => string}} Problem
 */

/** @returns {Problem[]} */
function settingsProblems() {
  /** @type {Problem[]} */
  const problems = [];
  const temperature = ui.temperature.value.trim();
  if (ui.temperature.validity.badInput || (temperature !== "" && !(Number(temperature) >= 0 && Number(temperature) <= 2))) {
    problems.push({
      input: ui.temperature,
      problem: () => t("check.temperature"),
      field: () => t("settings.temperature"),
    });
  }
  const maxTokens = ui.maxTokens.value.trim();
  if (ui.maxTokens.validity.badInput || (maxTokens !== "" && !(Number.isInteger(Number(maxTokens)) && Number(maxTokens) >= 1))) {
    problems.push({ input: ui.maxTokens, problem: () => t("check.maxTokens"), field: () => t("settings.maxTokens") });
  }
  if ([...ui.model.value.trim()].length > 256) {
    problems.push({ input: ui.model, problem: () => t("check.model"), field: () => t("settings.model") });
  }
  return problems;
}

/** Each field says what is wrong with it, under it (and to a screen reader, through aria-describedby). */
function markFields() {
  const problems = settingsProblems();
  for (const input of [ui.temperature, ui.maxTokens, ui.model]) {
    const found = problems.find((p) => p.input === input);
    const error = byId(`${input.id}-error`, HTMLParagraphElement);
    error.hidden = !found;
    error.textContent = found ? found.problem() : "";
    if (found) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  return problems;
}

/** @param {HTMLElement} [focus]  the field to put the keyboard on */
function openSettings(focus) {
  markFields();
  closeSidebar(); // on a phone: closing the settings then leads back to the chat
  if (!ui.settings.open) ui.settings.showModal();
  (focus ?? ui.model).focus();
}

function closeSettings() {
  readSettings();
  save();
  ui.settings.close();
}

/**
 * The request parameters, as the user set them (checked by settingsProblems first).
 * @param {Settings} settings
 * @returns {import("./protocol.js").Params}
 */
function paramsOf(settings) {
  /** @type {import("./protocol.js").Params} */
  const params = {};
  const model = settings.model || serverModels[0];
  if (model) params.model = model;
  if (settings.temperature !== "") params.temperature = Number(settings.temperature);
  if (settings.maxTokens !== "") params.max_tokens = Number(settings.maxTokens);
  return params;
}

/**
 * The messages the model is shown for the reply at `upTo`: the conversation's system prompt (or,
 * for one saved before conversations kept theirs, the settings'), then the turns before it.
 * @param {Conversation} conversation
 * @param {Settings} settings
 * @param {number} upTo
 */
function historyOf(conversation, settings, upTo) {
  /** @type {import("./protocol.js").ChatMessage[]} */
  const messages = [];
  const system = conversation.system ?? settings.system;
  if (system.trim()) messages.push({ role: "system", content: system });
  for (const message of conversation.messages.slice(0, upTo)) {
    // A reply that failed before any text is not part of the conversation the model sees.
    if (message.role === "assistant" && !message.content) continue;
    messages.push({ role: message.role, content: message.content });
  }
  return messages;
}

// ---- errors ------------------------------------------------------------------------------

/** The settings field each request parameter comes from, for naming it in an error. */
const FIELDS = /** @type {Record<string, () => string>} */ ({
  temperature: () => t("settings.temperature"),
  max_tokens: () => t("settings.maxTokens"),
  max_completion_tokens: () => t("settings.maxTokens"),
  model: () => t("settings.model"),
});

/**
 * What went wrong, as a sentence in the page's language, and the other side's own words.
 * @param {unknown} err
 * @returns {{text: string, detail?: string}}
 */
function describeError(err) {
  if (err instanceof protocol.RemoteError) {
    const detail = err.message;
    if (err.status === 401) return { text: t(ui.apiKey.value ? "error.badKey" : "error.needKey") };
    if (err.code === "too_many_messages") return { text: t("error.messages"), detail };
    const field = err.param ? Object.hasOwn(FIELDS, err.param) && FIELDS[err.param] : null;
    if (field) return { text: t("error.field", { field: field() }), detail };
    if (err.param) return { text: t("error.param", { param: err.param }), detail };
    if (err.status && err.status >= 400) return { text: t("error.status", { status: String(err.status) }), detail };
    return { text: t("error.remote"), detail };
  }
  if (err instanceof protocol.IncompleteStream) return { text: t("error.incomplete") };
  if (err instanceof protocol.ProtocolError) return { text: t("error.protocol"), detail: err.message };
  if (err instanceof protocol.NetworkError) {
    return { text: t(err.kind === "unreachable" ? "error.unreachable" : "error.broken") };
  }
  return { text: t("error.other"), detail: err instanceof Error ? err.message : String(err) };
}

/** The server wants a key: open the settings at the key's field. */
function askForKey() {
  openSettings(ui.apiKey);
}

// ---- sending -----------------------------------------------------------------------------

/**
 * Stream the assistant's answer: into `reply` (a reply asked for again), or into a new reply at
 * the end of the conversation (whose last message is then the user's).
 * @param {Conversation} conversation
 * @param {Message} [again]
 */
async function answer(conversation, again) {
  const settings = readSettings();
  /** @type {Message} */
  const reply = again ?? { role: "assistant", content: "" };
  const upTo = again ? conversation.messages.indexOf(again) : conversation.messages.length;
  const messages = historyOf(conversation, settings, upTo);
  if (!again) conversation.messages.push(reply);
  store.touch(conversation);
  active = { conversation, message: reply, controller: new AbortController(), view: null, node: null };
  showBanner(null);
  save();
  renderAll();

  const started = performance.now();
  let firstMs = -1;
  let pieces = 0;
  const arrived = () => {
    if (firstMs < 0) firstMs = performance.now() - started;
    scheduleRender();
  };
  let unauthorized = false;
  try {
    const result = await protocol.streamChat(messages, {
      signal: active.controller.signal,
      params: paramsOf(settings),
      apiKey: ui.apiKey.value.trim(),
      onText: (piece) => {
        reply.content += piece;
        pieces++;
        arrived();
      },
      onReasoning: (piece) => {
        reply.reasoning = (reply.reasoning ?? "") + piece;
        arrived();
      },
      onToolCalls: (calls) => {
        reply.toolCalls = structuredClone(calls);
        arrived();
      },
    });
    reply.content = result.text;
    if (result.reasoning) reply.reasoning = result.reasoning;
    if (result.toolCalls.length) reply.toolCalls = result.toolCalls;
    // A reply that ends by calling tools ended as it should: its blocks say so.
    if (result.finishReason && !["stop", "tool_calls"].includes(result.finishReason)) {
      reply.finishReason = result.finishReason;
    }
    if (firstMs >= 0) {
      const totalMs = Math.round(performance.now() - started);
      reply.stats = { firstMs: Math.round(firstMs), totalMs, chars: [...result.text].length, pieces };
    }
  } catch (err) {
    const partial = /** @type {{partial?: unknown}} */ (err)?.partial;
    if (typeof partial === "string" && partial.length > reply.content.length) reply.content = partial;
    if (err instanceof Error && err.name === "AbortError") reply.stopped = true;
    else {
      const { text, detail } = describeError(err);
      reply.error = text;
      if (detail) reply.errorDetail = detail;
    }
    unauthorized = err instanceof protocol.RemoteError && err.status === 401;
  } finally {
    if (reply.versions && reply.version !== undefined) reply.versions[reply.version] = versionOf(reply);
    active = null;
    store.touch(conversation);
    save();
    loadUsage();
    if (store.current() === conversation) renderConversation();
    renderList();
    updateComposer();
  }
  if (unauthorized) askForKey();
}

/** @param {string} text */
async function send(text) {
  if (active || !text.trim() || !secure) return;
  const conversation = store.current() ?? store.create([], readSettings().system);
  conversation.messages.push({ role: "user", content: text });
  await answer(conversation);
}

/**
 * Ask again for the last reply: the new one becomes its latest version, the earlier ones stay.
 * @param {Conversation} conversation
 */
async function regenerate(conversation) {
  const reply = conversation.messages.at(-1);
  if (active || !secure || reply?.role !== "assistant" || settingsBlocked()) return;
  const versions = reply.versions ?? [versionOf(reply)];
  showVersion(reply, { content: "" });
  reply.versions = [...versions, versionOf(reply)];
  reply.version = reply.versions.length - 1;
  ui.input.focus();
  await answer(conversation, reply);
}

/**
 * Show the previous (-1) or next (+1) version of a reply, keeping the keyboard on the pager.
 * @param {Message} reply
 * @param {number} step
 */
function pageVersion(reply, step) {
  const versions = reply.versions;
  const shown = reply.version ?? 0;
  if (active || !versions || !versions[shown + step]) return;
  versions[shown] = versionOf(reply);
  showVersion(reply, versions[shown + step]);
  reply.version = shown + step;
  save();
  renderConversation();
  const pager = nodes.get(reply)?.querySelector(".pager");
  const same = pager?.querySelector(step < 0 ? ".previous" : ".next");
  const other = pager?.querySelector(step < 0 ? ".next" : ".previous");
  const target = same instanceof HTMLButtonElement && !same.disabled ? same : other;
  if (target instanceof HTMLElement) target.focus();
  announce(t("message.version", { n: reply.version + 1, count: versions.length }));
}

/**
 * Turn a user message into a small editor; sending it forks the conversation there.
 * @param {Conversation} conversation
 * @param {number} index
 */
function startEdit(conversation, index) {
  const node = nodes.get(conversation.messages[index]);
  if (!node || active) return;
  const editor = /** @type {HTMLTextAreaElement} */ (el("textarea", "edit-input"));
  editor.value = conversation.messages[index].content;
  editor.rows = Math.min(10, editor.value.split("\n").length + 1);
  editor.setAttribute("aria-label", t("message.editLabel"));
  const cancel = () => renderConversation();
  const submitEdit = () => {
    const text = editor.value;
    if (!text.trim() || active || settingsBlocked()) return;
    const fork = store.fork(conversation, index, text);
    ui.input.focus();
    answer(fork);
  };
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      cancel();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitEdit();
    }
  });
  const actions = el("div", "edit-actions");
  actions.append(
    button("btn primary small", t("message.editSend"), submitEdit),
    button("btn quiet small", t("message.editCancel"), cancel),
  );
  node.querySelector(":scope > .body")?.replaceWith(editor);
  node.querySelector(":scope > .actions")?.replaceWith(actions);
  editor.focus();
}

function stop() {
  active?.controller.abort();
}

/**
 * Copy a message's text (its Markdown, as written) and say so on its button for a moment.
 * @param {Message} message
 * @param {HTMLButtonElement} copy
 */
async function copyMessage(message, copy) {
  let done = false;
  try {
    await navigator.clipboard.writeText(message.content);
    done = true;
  } catch {
    // no clipboard here (an insecure context, a refused permission): said below
  }
  const said = t(done ? "message.copied" : "message.copyFailed");
  announce(said);
  copy.title = said;
  copy.replaceChildren(icon(done ? "check" : "copy"));
  setTimeout(() => {
    copy.title = t("message.copyMessage");
    copy.replaceChildren(icon("copy"));
  }, 2000);
}

/** @param {Conversation} conversation */
function deleteConversation(conversation) {
  if (active && active.conversation === conversation) stop();
  const removed = store.remove(conversation.id);
  if (!removed) return;
  save();
  renderAll();
  const title = titleOf(conversation);
  showToast(
    () => t("chat.deleted", { title }),
    () => {
      store.restore(removed);
      save();
      renderAll();
      announce(t("chat.restored", { title }));
    },
  );
  // The pressed button is gone: the keyboard goes to Undo, the one thing it may want next.
  ui.toastUndo.focus();
}

/**
 * A note at the bottom with an Undo button, for timing.undoMs; a newer one replaces it (and the older
 * deletion is then final).
 * @param {() => string} text
 * @param {() => void} undo
 */
function showToast(text, undo) {
  if (toast) clearTimeout(toast.timer);
  toast = { text, undo, timer: window.setTimeout(hideToast, timing.undoMs) };
  ui.toastText.textContent = text();
  ui.toast.hidden = false;
}

function hideToast() {
  if (toast) clearTimeout(toast.timer);
  toast = null;
  const hadFocus = ui.toast.contains(document.activeElement);
  ui.toast.hidden = true;
  if (hadFocus) (ui.list.querySelector("button") ?? ui.newChat).focus();
}

function newChat() {
  store.startNew();
  save();
  renderAll();
  closeSidebar();
  ui.input.focus();
}

// ---- files -------------------------------------------------------------------------------

/**
 * @param {string} text
 * @param {string} type
 * @param {string} extension
 */
function download(text, type, extension) {
  const conversation = store.current();
  if (!conversation) return;
  const stem = titleOf(conversation).replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "").slice(0, 40);
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = /** @type {HTMLAnchorElement} */ (el("a"));
  link.href = url;
  link.download = `${stem || "conversation"}.${extension}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function importFiles() {
  for (const file of ui.importFile.files ?? []) {
    try {
      const conversation = importConversation(await file.text());
      store.conversations.push(conversation);
      store.select(conversation.id);
      save();
      renderAll();
      announce(t("chat.imported", { title: titleOf(conversation) }));
    } catch (err) {
      const reason = err instanceof ImportError ? err.message : String(err);
      showBanner({ text: () => t("chat.importFailed", { name: file.name, reason }) });
    }
  }
  ui.importFile.value = "";
}

// ---- the server: models, backend, key ----------------------------------------------------

async function loadModels() {
  try {
    const response = await fetch("v1/models", {
      headers: { Accept: "application/json", ...protocol.authHeaders(ui.apiKey.value.trim()) },
    });
    if (!response.ok) return;
    const { data } = await response.json();
    /** @type {string[]} */
    const ids = [];
    for (const model of Array.isArray(data) ? data : []) {
      if (typeof model?.id === "string" && model.id && !ids.includes(model.id)) ids.push(model.id);
    }
    serverModels = ids;
    ui.models.replaceChildren(
      ...ids.map((id) => {
        const option = document.createElement("option");
        option.value = id;
        return option;
      }),
    );
    if (ids.length) ui.model.placeholder = ids[0];
    renderModelsNote();
  } catch {
    // The model list is a convenience; the page works without it.
  }
}

async function loadBackend() {
  try {
    // getgpt serve names its backend at /healthz ("echo", "openai", ...); another server may not.
    const response = await fetch("healthz", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const health = await response.json();
    backend = typeof health?.backend === "string" ? health.backend : "";
    renderBackend();
  } catch {
    // Unknown backend: nothing to say about it.
  }
}

/**
 * The key's own usage, from a server with a key store (GET v1/usage): requests and tokens of the
 * last 30 days, and its budget. Hidden when the server has no store or the key is not one of it.
 * @type {{requests: number, tokens: number, budget: {tokens: number, period: string, spent: number} | null} | null}
 */
let keyUsage = null;

async function loadUsage() {
  const key = ui.apiKey.value.trim();
  keyUsage = null;
  if (key) {
    try {
      const response = await fetch("v1/usage?since=30d&by=day", {
        headers: { Accept: "application/json", ...protocol.authHeaders(key) },
      });
      if (response.ok) {
        const answer = await response.json();
        /** @type {Array<{requests?: unknown, total_tokens?: unknown}>} */
        const rows = Array.isArray(answer?.data) ? answer.data : [];
        const budget = answer?.budget;
        keyUsage = {
          requests: rows.reduce((sum, row) => sum + (Number(row?.requests) || 0), 0),
          tokens: rows.reduce((sum, row) => sum + (Number(row?.total_tokens) || 0), 0),
          budget:
            budget && typeof budget.tokens === "number"
              ? { tokens: budget.tokens, period: String(budget.period), spent: Number(budget.spent) || 0 }
              : null,
        };
      }
    } catch {
      // Usage is a convenience, as the model list is.
    }
  }
  renderUsage();
}

function renderUsage() {
  ui.keyUsage.hidden = keyUsage === null;
  if (keyUsage === null) {
    ui.keyUsage.textContent = "";
    return;
  }
  let text = t("settings.usage", { requests: keyUsage.requests, tokens: keyUsage.tokens });
  const budget = keyUsage.budget;
  if (budget) {
    const values = { spent: budget.spent, tokens: budget.tokens };
    if (budget.period === "day") text += " " + t("settings.budget.day", values);
    else if (budget.period === "month") text += " " + t("settings.budget.month", values);
    else text += " " + t("settings.budget.total", values);
  }
  ui.keyUsage.textContent = text;
}

function renderModelsNote() {
  ui.modelsNote.hidden = serverModels.length === 0;
  ui.modelsNote.textContent = serverModels.length ? t("settings.models", { count: serverModels.length }) : "";
}

function keepKey() {
  store.setApiKey(ui.apiKey.value.trim(), ui.rememberKey.checked);
  loadModels();
  loadUsage();
}

// ---- language, theme, sidebar width ------------------------------------------------------

/** @param {import("./i18n.js").Language} lang */
function applyLanguage(lang) {
  i18n.setLanguage(lang);
  i18n.translatePage(document);
  ui.language.value = lang;
  if (banner) showBanner(banner);
  if (toast) ui.toastText.textContent = toast.text();
  renderModelsNote();
  renderUsage();
  renderBackend();
  if (ui.settings.open) markFields();
  if (!active) renderAll();
  else renderList();
}

/** @returns {"light" | "dark" | "system"} */
function savedTheme() {
  try {
    const theme = localStorage.getItem(THEME_KEY);
    return theme === "light" || theme === "dark" ? theme : "system";
  } catch {
    return "system";
  }
}

/** @param {string} theme  "light", "dark", or "system" (the browser's colour scheme) */
function applyTheme(theme) {
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  for (const radio of ui.themes) radio.checked = radio.value === (theme === "light" || theme === "dark" ? theme : "system");
}

/**
 * @param {number} width  in CSS pixels, clamped to WIDTH's bounds
 * @param {boolean} remember
 */
function setSidebarWidth(width, remember) {
  const clamped = Math.round(Math.min(WIDTH.max, Math.max(WIDTH.min, width)));
  document.documentElement.style.setProperty("--sidebar-width", `${clamped}px`);
  ui.resizer.setAttribute("aria-valuenow", String(clamped));
  if (!remember) return;
  try {
    localStorage.setItem(WIDTH_KEY, String(clamped));
  } catch {
    // not remembered, but resized all the same
  }
}

function sidebarWidth() {
  return ui.sidebar.getBoundingClientRect().width;
}

// ---- wiring ------------------------------------------------------------------------------

function openSidebar() {
  ui.sidebar.classList.add("open");
  ui.scrim.hidden = false;
  // The menu covers the page: the keyboard goes into it (Escape leaves it, back to its button).
  ui.newChat.focus();
}

function closeSidebar() {
  ui.sidebar.classList.remove("open");
  ui.scrim.hidden = true;
}

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = Math.min(ui.input.scrollHeight, 200) + "px";
}

/** A setting the server would refuse stops the send, and the banner says which and where. */
function settingsBlocked() {
  const [first] = markFields();
  if (!first) {
    if (banner?.action) showBanner(null);
    return false;
  }
  showBanner({
    text: () => t("check.notSent", { problem: first.problem(), field: first.field() }),
    action: { label: () => t("banner.openSettings"), run: () => openSettings(first.input) },
  });
  return true;
}

function submit() {
  const text = ui.input.value;
  if (active || !text.trim() || !secure) return; // keep what was typed until it can be sent
  if (settingsBlocked()) return;
  ui.input.value = "";
  autosize();
  send(text);
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
ui.input.addEventListener("keydown", (event) => {
  // Enter while an input method composes text confirms the composition; it does not send.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  } else if (event.key === "Escape" && active) {
    event.preventDefault();
    stop();
  }
});
ui.input.addEventListener("input", autosize);
ui.stop.addEventListener("click", stop);
ui.newChat.addEventListener("click", newChat);
ui.newChatTop.addEventListener("click", newChat);
ui.openSidebar.addEventListener("click", openSidebar);
ui.closeSidebar.addEventListener("click", closeSidebar);
ui.scrim.addEventListener("click", closeSidebar);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && ui.sidebar.classList.contains("open") && !ui.settings.open) {
    closeSidebar();
    ui.openSidebar.focus();
  }
});
ui.bannerAction.addEventListener("click", () => banner?.action?.run());
ui.bannerClose.addEventListener("click", () => {
  showBanner(null);
  ui.input.focus();
});
ui.toastUndo.addEventListener("click", () => {
  const undo = toast?.undo;
  hideToast();
  undo?.();
});

ui.openSettings.addEventListener("click", () => openSettings());
ui.closeSettings.addEventListener("click", closeSettings);
ui.settingsForm.addEventListener("submit", (event) => {
  event.preventDefault(); // the page's policy allows no form action; Done (or Enter) closes it
  closeSettings();
});
ui.settings.addEventListener("click", (event) => {
  if (event.target === ui.settings) closeSettings(); // a click on the backdrop
});
ui.settings.addEventListener("close", () => {
  // The dialog gave the focus back to what opened it; on a phone that is in the closed menu.
  const back = document.activeElement;
  if (!(back instanceof HTMLElement) || !back.checkVisibility({ visibilityProperty: true })) ui.input.focus();
  readSettings();
  save();
  if (banner?.action && !settingsProblems().length) showBanner(null);
});
for (const input of [ui.model, ui.temperature, ui.maxTokens, ui.system]) {
  input.addEventListener("change", () => {
    readSettings();
    save();
  });
}
for (const input of [ui.model, ui.temperature, ui.maxTokens]) input.addEventListener("input", markFields);
ui.apiKey.addEventListener("change", keepKey);
ui.rememberKey.addEventListener("change", keepKey);
ui.language.addEventListener("change", () => {
  const lang = ui.language.value === "ru" ? "ru" : "en";
  try {
    localStorage.setItem(i18n.LANGUAGE_KEY, lang);
  } catch {
    // not remembered, but switched all the same
  }
  applyLanguage(lang);
});
for (const radio of ui.themes) {
  radio.addEventListener("change", () => {
    try {
      if (radio.value === "system") localStorage.removeItem(THEME_KEY);
      else localStorage.setItem(THEME_KEY, radio.value);
    } catch {
      // not remembered, but switched all the same
    }
    applyTheme(radio.value);
  });
}

ui.resizer.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  ui.resizer.setPointerCapture(event.pointerId);
  ui.resizer.classList.add("dragging");
  ui.app.classList.add("resizing");
});
ui.resizer.addEventListener("pointermove", (event) => {
  if (!ui.resizer.hasPointerCapture(event.pointerId)) return;
  setSidebarWidth(event.clientX - ui.sidebar.getBoundingClientRect().left, false);
});
for (const type of /** @type {const} */ (["pointerup", "pointercancel"])) {
  ui.resizer.addEventListener(type, () => {
    ui.resizer.classList.remove("dragging");
    ui.app.classList.remove("resizing");
    setSidebarWidth(sidebarWidth(), true);
  });
}
ui.resizer.addEventListener("dblclick", () => setSidebarWidth(WIDTH.initial, true));
ui.resizer.addEventListener("keydown", (event) => {
  /** @type {Record<string, number>} */
  const moves = {
    ArrowLeft: sidebarWidth() - WIDTH.step,
    ArrowRight: sidebarWidth() + WIDTH.step,
    Home: WIDTH.min,
    End: WIDTH.max,
  };
  if (!(event.key in moves)) return;
  event.preventDefault();
  setSidebarWidth(moves[event.key], true);
});

ui.exportMarkdown.addEventListener("click", () => {
  const conversation = store.current();
  if (conversation) download(exportMarkdown(conversation), "text/markdown;charset=utf-8", "md");
});
ui.exportJson.addEventListener("click", () => {
  const conversation = store.current();
  if (conversation) download(exportJson(conversation), "application/json", "json");
});
ui.importButton.addEventListener("click", () => ui.importFile.click());
ui.importFile.addEventListener("change", importFiles);
window.addEventListener("storage", (event) => {
  if (event.key === THEME_KEY) {
    applyTheme(savedTheme());
    return;
  }
  // Another tab changed the history; pick it up unless this tab is mid-reply.
  if (active || event.key === i18n.LANGUAGE_KEY || event.key === WIDTH_KEY) return;
  const fresh = new Store();
  store.conversations = fresh.conversations;
  store.currentId = fresh.currentId;
  renderAll();
});

ui.model.value = store.settings.model;
ui.temperature.value = store.settings.temperature;
ui.maxTokens.value = store.settings.maxTokens;
ui.system.value = store.settings.system;
const saved = store.apiKey();
ui.apiKey.value = saved.key;
ui.rememberKey.checked = saved.remember;
applyTheme(savedTheme());
ui.resizer.setAttribute("aria-valuenow", String(Math.round(sidebarWidth()) || WIDTH.initial));
applyLanguage(i18n.initialLanguage(localStorage));
loadModels();
loadUsage();
loadBackend();
ui.input.focus();
if (!secure) {
  showBanner({ text: () => t("error.insecure") });
  ui.send.disabled = true;
}

// For tests and the curious: the page's own protocol implementation, its words and its store.
Object.assign(window, {
  getgpt: {
    ...protocol,
    renderMarkdown,
    plainText,
    MarkdownView,
    store,
    stop,
    i18n,
    importConversation,
    exportJson,
    describeError,
    timing,
  },
});
