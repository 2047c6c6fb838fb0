// The chat page: conversations, settings, and a reply streamed through the GetGpt protocol.

import * as protocol from "./protocol.js";
import { MarkdownView, renderMarkdown } from "./markdown.js";
import { Store, titleOf } from "./store.js";

const $ = (id) => document.getElementById(id);
const ui = {
  sidebar: $("sidebar"),
  scrim: $("scrim"),
  list: $("conversations"),
  newChat: $("new-chat"),
  openSidebar: $("open-sidebar"),
  closeSidebar: $("close-sidebar"),
  title: $("title"),
  messages: $("messages"),
  composer: $("composer"),
  input: $("input"),
  send: $("send"),
  stop: $("stop"),
  banner: $("banner"),
  model: $("model"),
  models: $("models"),
  temperature: $("temperature"),
  maxTokens: $("max-tokens"),
  system: $("system"),
};

const store = new Store();
// WebCrypto exists only in a secure context: HTTPS, or a loopback address such as 127.0.0.1.
const secure = window.isSecureContext && globalThis.crypto?.subtle !== undefined;
// The reply being streamed, if any: {conversation, message, controller, view}.
let active = null;
let renderPending = false;
// Each message's node on screen, kept outside the message so it never reaches storage.
const nodes = new WeakMap();
let lastSave = 0;
const SAVE_EVERY_MS = 500;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showBanner(text) {
  ui.banner.textContent = text ?? "";
  ui.banner.hidden = !text;
}

function save() {
  lastSave = Date.now();
  const problem = store.save();
  if (problem) showBanner(problem);
}

// ---- rendering ---------------------------------------------------------------------------

function renderList() {
  ui.list.replaceChildren();
  for (const conversation of store.list()) {
    const item = el("li", "conversation" + (conversation.id === store.currentId ? " current" : ""));
    const open = el("button", "conversation-open", titleOf(conversation));
    open.type = "button";
    open.title = titleOf(conversation);
    open.addEventListener("click", () => {
      store.select(conversation.id);
      save();
      renderAll();
      closeSidebar();
    });
    const remove = el("button", "conversation-delete icon-btn", "×");
    remove.type = "button";
    remove.setAttribute("aria-label", `Delete conversation: ${titleOf(conversation)}`);
    remove.addEventListener("click", () => deleteConversation(conversation));
    item.append(open, remove);
    ui.list.append(item);
  }
}

function noteFor(message) {
  if (message.error) {
    const note = el("div", "note error", message.error);
    note.setAttribute("role", "alert");
    return note;
  }
  if (message.stopped) return el("div", "note stopped", "Stopped.");
  if (message.finishReason === "length") {
    return el("div", "note stopped", "The reply reached the token limit (max tokens) and was cut short.");
  }
  if (message.finishReason) return el("div", "note stopped", `The reply ended early: ${message.finishReason}.`);
  return null;
}

function renderMessage(message) {
  const node = el("article", `msg ${message.role}`);
  node.append(el("div", "role", message.role === "user" ? "You" : "Assistant"));
  const body = el("div", "body");
  if (message.role === "user") {
    body.textContent = message.content; // what the user typed is shown as typed
  } else if (active && active.message === message) {
    node.classList.add("streaming");
    active.view = new MarkdownView(body);
    active.view.update(message.content);
  } else {
    body.append(renderMarkdown(message.content));
  }
  node.append(body);
  const note = noteFor(message);
  if (note) node.append(note);
  nodes.set(message, node);
  return node;
}

function renderConversation() {
  const conversation = store.current();
  ui.title.textContent = conversation ? titleOf(conversation) : "New chat";
  document.title = conversation ? `${titleOf(conversation)} · GetGpt` : "GetGpt chat";
  ui.messages.replaceChildren();
  if (!conversation || conversation.messages.length === 0) {
    const empty = el("div", "empty");
    empty.append(el("h2", "", "GetGpt chat"), el("p", "", "Ask anything. Enter sends, Shift+Enter starts a new line."));
    ui.messages.append(empty);
    return;
  }
  for (const message of conversation.messages) ui.messages.append(renderMessage(message));
  ui.messages.scrollTop = ui.messages.scrollHeight;
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
    if (!active || !active.view) return;
    const follow = nearBottom();
    active.view.update(active.message.content);
    if (follow) ui.messages.scrollTop = ui.messages.scrollHeight;
    if (Date.now() - lastSave > SAVE_EVERY_MS) save();
  });
}

// ---- sending -----------------------------------------------------------------------------

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

// The request parameters, as the user set them. Out-of-range values are sent as they are: the
// server validates requests and its answer is shown, so the page and server never disagree.
function paramsOf(settings) {
  const params = {};
  if (settings.model) params.model = settings.model;
  if (settings.temperature !== "") params.temperature = Number(settings.temperature);
  if (settings.maxTokens !== "") params.max_tokens = Number(settings.maxTokens);
  return params;
}

function historyOf(conversation, settings, upTo) {
  const messages = [];
  if (settings.system.trim()) messages.push({ role: "system", content: settings.system });
  for (const message of conversation.messages.slice(0, upTo)) {
    // A reply that failed before any text is not part of the conversation the model sees.
    if (message.role === "assistant" && !message.content) continue;
    messages.push({ role: message.role, content: message.content });
  }
  return messages;
}

function describe(err) {
  if (err instanceof protocol.RemoteError) {
    return err.status && err.status >= 400 ? `Error ${err.status}: ${err.message}` : `Error: ${err.message}`;
  }
  if (err instanceof protocol.IncompleteStream) return `Incomplete reply: ${err.message}.`;
  if (err instanceof protocol.ProtocolError) return `Protocol error: ${err.message}`;
  if (err instanceof protocol.NetworkError) return `Network error: ${err.message}.`;
  return `Error: ${err?.message ?? String(err)}`;
}

async function send(text) {
  if (active || !text.trim() || !secure) return;
  const settings = readSettings();
  const conversation = store.current() ?? store.create();
  const user = { role: "user", content: text };
  const reply = { role: "assistant", content: "" };
  conversation.messages.push(user, reply);
  store.touch(conversation);
  const messages = historyOf(conversation, settings, conversation.messages.length - 1);
  active = { conversation, message: reply, controller: new AbortController(), view: null };
  showBanner(null);
  save();
  renderAll();

  try {
    const result = await protocol.streamChat(messages, {
      signal: active.controller.signal,
      params: paramsOf(settings),
      onText: (piece) => {
        reply.content += piece;
        scheduleRender();
      },
    });
    reply.content = result.text;
    if (result.finishReason && result.finishReason !== "stop") reply.finishReason = result.finishReason;
  } catch (err) {
    if (err?.partial && err.partial.length > reply.content.length) reply.content = err.partial;
    if (err?.name === "AbortError") reply.stopped = true;
    else reply.error = describe(err);
  } finally {
    active = null;
    store.touch(conversation);
    save();
    const node = nodes.get(reply);
    if (node?.isConnected) {
      node.replaceWith(renderMessage(reply));
      if (nearBottom() || reply.error) ui.messages.scrollTop = ui.messages.scrollHeight;
    }
    renderList();
    updateComposer();
  }
}

function stop() {
  active?.controller.abort();
}

function deleteConversation(conversation) {
  if (active && active.conversation === conversation) stop();
  store.remove(conversation.id);
  save();
  renderAll();
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
  }
});
ui.input.addEventListener("input", autosize);
ui.stop.addEventListener("click", stop);
ui.newChat.addEventListener("click", () => {
  if (!store.current() || store.current().messages.length) store.create();
  save();
  renderAll();
  closeSidebar();
  ui.input.focus();
});
ui.openSidebar.addEventListener("click", openSidebar);
ui.closeSidebar.addEventListener("click", closeSidebar);
ui.scrim.addEventListener("click", closeSidebar);
for (const input of [ui.model, ui.temperature, ui.maxTokens, ui.system]) {
  input.addEventListener("change", () => {
    readSettings();
    save();
  });
}
window.addEventListener("storage", () => {
  // Another tab changed the history; pick it up unless this tab is mid-reply.
  if (active) return;
  const fresh = new Store();
  store.conversations = fresh.conversations;
  store.currentId = fresh.currentId;
  renderAll();
});

async function loadModels() {
  try {
    const response = await fetch("v1/models", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const { data } = await response.json();
    const ids = new Set([...ui.models.options].map((o) => o.value));
    for (const model of data ?? []) {
      if (typeof model?.id === "string" && !ids.has(model.id)) {
        const option = document.createElement("option");
        option.value = model.id;
        ui.models.append(option);
      }
    }
  } catch {
    // The model list is a convenience; the page works without it.
  }
}

ui.model.value = store.settings.model;
ui.temperature.value = store.settings.temperature;
ui.maxTokens.value = store.settings.maxTokens;
ui.system.value = store.settings.system;
renderAll();
loadModels();
ui.input.focus();
if (!secure) {
  showBanner(
    "This page cannot send: its encryption (WebCrypto) needs a secure context. " +
      "Open it over HTTPS, or at http://127.0.0.1 or http://localhost.",
  );
  ui.send.disabled = true;
}

// For tests and the curious: the page's own protocol implementation.
window.getgpt = { ...protocol, renderMarkdown, MarkdownView, store, stop };
