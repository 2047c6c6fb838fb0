// @ts-check
// The chat page: conversations, settings, and a reply streamed through the GetGpt protocol.

import * as i18n from "./i18n.js";
import { MarkdownView, renderMarkdown } from "./markdown.js";
import * as protocol from "./protocol.js";
import {
  ImportError,
  Store,
  exportJson,
  exportMarkdown,
  importConversation,
  prettyJson,
  repliesOf,
  titleOf,
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
  sidebar: byId("sidebar", HTMLElement),
  scrim: byId("scrim", HTMLDivElement),
  list: byId("conversations", HTMLUListElement),
  newChat: byId("new-chat", HTMLButtonElement),
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
  banner: byId("banner", HTMLDivElement),
  status: byId("status", HTMLDivElement),
  settings: byId("settings", HTMLDetailsElement),
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
/** The models the server lists at /v1/models; empty until it has answered. @type {string[]} */
let serverModels = [];
/** The banner's text, made again when the language changes. @type {(() => string) | null} */
let bannerText = null;

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

/** @param {(() => string) | null} text */
function showBanner(text) {
  bannerText = text;
  ui.banner.textContent = text ? text() : "";
  ui.banner.hidden = !text;
}

/** @param {string} text */
function announce(text) {
  ui.status.textContent = text;
}

function save() {
  lastSave = Date.now();
  const problem = store.save();
  if (problem) showBanner(() => problem);
}

// ---- rendering ---------------------------------------------------------------------------

function renderList() {
  ui.list.replaceChildren();
  for (const conversation of store.list()) {
    const title = titleOf(conversation);
    const item = el("li", "conversation" + (conversation.id === store.currentId ? " current" : ""));
    const open = button("conversation-open", title, () => {
      store.select(conversation.id);
      save();
      renderAll();
      closeSidebar();
    });
    open.title = title;
    if (conversation.id === store.currentId) open.setAttribute("aria-current", "true");
    const count = el("span", "conversation-count", t("chat.replies", { count: repliesOf(conversation) }));
    const remove = button("conversation-delete icon-btn", "×", () => deleteConversation(conversation));
    remove.setAttribute("aria-label", t("chat.delete", { title }));
    item.append(open, count, remove);
    ui.list.append(item);
  }
}

/** @param {Message} message */
function noteFor(message) {
  if (message.error) {
    const note = el("div", "note error", message.error);
    note.setAttribute("role", "alert");
    return note;
  }
  if (message.stopped) return el("div", "note stopped", t("note.stopped"));
  if (message.finishReason === "length") return el("div", "note stopped", t("note.length"));
  if (message.finishReason) return el("div", "note stopped", t("note.finish", { reason: message.finishReason }));
  return null;
}

/**
 * Time to first token and characters a second, small, under a finished reply.
 * @param {Message} message
 */
function statsFor(message) {
  const stats = message.stats;
  if (!stats) return null;
  const ttft = i18n.formatNumber(stats.firstMs / 1000, 2);
  const streamed = stats.totalMs - stats.firstMs;
  // One piece, or no measurable time between the first and the last: no rate to speak of.
  const text =
    stats.pieces > 1 && streamed > 0
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
  if (message.role === "user") {
    body.textContent = message.content; // what the user typed is shown as typed
  } else if (active && active.message === message) {
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
  const actions = actionsFor(conversation, index);
  if (actions) node.append(actions);
  nodes.set(message, node);
  return node;
}

/**
 * Edit on the user's messages; Regenerate on the last reply. None while a reply streams.
 * @param {Conversation} conversation
 * @param {number} index
 */
function actionsFor(conversation, index) {
  if (active || !secure) return null;
  const message = conversation.messages[index];
  const actions = el("div", "actions");
  if (message.role === "user") {
    actions.append(button("btn quiet small", t("message.edit"), () => startEdit(conversation, index)));
  } else if (index === conversation.messages.length - 1 && conversation.messages[index - 1]?.role === "user") {
    actions.append(button("btn quiet small regenerate", t("message.regenerate"), () => regenerate(conversation)));
  }
  return actions.childElementCount ? actions : null;
}

function renderConversation() {
  const conversation = store.current();
  const title = conversation ? titleOf(conversation) : t("chat.untitled");
  ui.title.textContent = title;
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

// ---- sending -----------------------------------------------------------------------------

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
 * The request parameters, as the user set them. Out-of-range values are sent as they are: the
 * server validates requests and its answer is shown, so the page and server never disagree.
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
 * @param {Conversation} conversation
 * @param {Settings} settings
 * @param {number} upTo
 */
function historyOf(conversation, settings, upTo) {
  /** @type {import("./protocol.js").ChatMessage[]} */
  const messages = [];
  if (settings.system.trim()) messages.push({ role: "system", content: settings.system });
  for (const message of conversation.messages.slice(0, upTo)) {
    // A reply that failed before any text is not part of the conversation the model sees.
    if (message.role === "assistant" && !message.content) continue;
    messages.push({ role: message.role, content: message.content });
  }
  return messages;
}

/** @param {unknown} err */
function describe(err) {
  if (err instanceof protocol.RemoteError) {
    if (err.status === 401) return t(ui.apiKey.value ? "error.badKey" : "error.needKey");
    return err.status && err.status >= 400
      ? t("error.status", { status: String(err.status), message: err.message })
      : t("error.remote", { message: err.message });
  }
  if (err instanceof protocol.IncompleteStream) return t("error.incomplete");
  if (err instanceof protocol.ProtocolError) return t("error.protocol", { message: err.message });
  if (err instanceof protocol.NetworkError) return t(err.kind === "unreachable" ? "error.unreachable" : "error.broken");
  return t("error.other", { message: err instanceof Error ? err.message : String(err) });
}

/** The server wants a key: open the settings at the key's field. */
function askForKey() {
  ui.settings.open = true;
  openSidebar();
  ui.apiKey.focus();
}

/**
 * Stream the assistant's answer to the conversation as it stands (its last message is the user's).
 * @param {Conversation} conversation
 */
async function answer(conversation) {
  const settings = readSettings();
  /** @type {Message} */
  const reply = { role: "assistant", content: "" };
  const messages = historyOf(conversation, settings, conversation.messages.length);
  conversation.messages.push(reply);
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
    else reply.error = describe(err);
    unauthorized = err instanceof protocol.RemoteError && err.status === 401;
  } finally {
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
  const conversation = store.current() ?? store.create();
  conversation.messages.push({ role: "user", content: text });
  await answer(conversation);
}

/**
 * Ask again for the last reply, in its place.
 * @param {Conversation} conversation
 */
async function regenerate(conversation) {
  if (active || !secure || conversation.messages.at(-1)?.role !== "assistant") return;
  conversation.messages.pop();
  ui.input.focus();
  await answer(conversation);
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
    if (!text.trim() || active) return;
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
  const actions = el("div", "actions");
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

/** @param {Conversation} conversation */
function deleteConversation(conversation) {
  if (active && active.conversation === conversation) stop();
  store.remove(conversation.id);
  save();
  renderAll();
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
      showBanner(() => t("chat.importFailed", { name: file.name, reason }));
    }
  }
  ui.importFile.value = "";
}

// ---- models and the key ------------------------------------------------------------------

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

// ---- language ----------------------------------------------------------------------------

/** @param {import("./i18n.js").Language} lang */
function applyLanguage(lang) {
  i18n.setLanguage(lang);
  i18n.translatePage(document);
  ui.language.value = lang;
  if (bannerText) showBanner(bannerText);
  renderModelsNote();
  renderUsage();
  if (!active) renderAll();
  else renderList();
}

// ---- wiring ------------------------------------------------------------------------------

function openSidebar() {
  ui.sidebar.classList.add("open");
  ui.scrim.hidden = false;
}

function closeSidebar() {
  ui.sidebar.classList.remove("open");
  ui.scrim.hidden = true;
}

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = Math.min(ui.input.scrollHeight, 200) + "px";
}

function submit() {
  const text = ui.input.value;
  if (active || !text.trim() || !secure) return; // keep what was typed until it can be sent
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
ui.newChat.addEventListener("click", () => {
  if (!store.current() || store.current()?.messages.length) store.create();
  save();
  renderAll();
  closeSidebar();
  ui.input.focus();
});
ui.openSidebar.addEventListener("click", openSidebar);
ui.closeSidebar.addEventListener("click", closeSidebar);
ui.scrim.addEventListener("click", closeSidebar);
ui.sidebar.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && ui.sidebar.classList.contains("open")) {
    closeSidebar();
    ui.openSidebar.focus();
  }
});
for (const input of [ui.model, ui.temperature, ui.maxTokens, ui.system]) {
  input.addEventListener("change", () => {
    readSettings();
    save();
  });
}
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
  // Another tab changed the history; pick it up unless this tab is mid-reply.
  if (active || event.key === i18n.LANGUAGE_KEY) return;
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
applyLanguage(i18n.initialLanguage(localStorage));
loadModels();
loadUsage();
ui.input.focus();
if (!secure) {
  showBanner(() => t("error.insecure"));
  ui.send.disabled = true;
}

// For tests and the curious: the page's own protocol implementation, its words and its store.
Object.assign(window, {
  getgpt: { ...protocol, renderMarkdown, MarkdownView, store, stop, i18n, importConversation, exportJson },
});
