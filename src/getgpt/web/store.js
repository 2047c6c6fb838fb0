// @ts-check
// Conversations and settings, kept in localStorage so they survive a reload; the API key, kept
// in sessionStorage unless the user asks to remember it; conversations as Markdown and JSON files.

import { t } from "./i18n.js";
import { plainText } from "./markdown.js";

const CONVERSATIONS = "getgpt.conversations.v1";
const SETTINGS = "getgpt.settings.v1";
const API_KEY = "getgpt.apiKey.v1";
/** What an exported file says it is, so an import can tell a conversation from any JSON. */
export const EXPORT_FORMAT = "getgpt.conversation";
export const EXPORT_VERSION = 1;

/**
 * A tool call in OpenAI's message shape.
 * @typedef {{id: string, type: string, function: {name: string, arguments: string}}} ToolCall
 */
/**
 * How a reply arrived, in milliseconds after it was asked for, and its size.
 * @typedef {{firstMs: number, totalMs: number, chars: number, pieces: number}} Stats
 */
/**
 * One reply the assistant gave at a place in the conversation: its text and how it went.
 * @typedef {object} Version
 * @property {string} content
 * @property {string} [reasoning]
 * @property {ToolCall[]} [toolCalls]
 * @property {Stats} [stats]
 * @property {string} [error]  what went wrong, as a sentence in the page's language
 * @property {string} [errorDetail]  the server's (or the browser's) own words about it
 * @property {boolean} [stopped]
 * @property {string} [finishReason]
 */
/**
 * A message. A reply asked for again keeps every version in `versions` (oldest first), and
 * `version` says which one is shown; the message's own fields are always the shown version's.
 * @typedef {Version & {role: "user" | "assistant", versions?: Version[], version?: number}} Message
 */
/**
 * @typedef {object} Conversation
 * @property {string} id
 * @property {number} createdAt
 * @property {number} updatedAt
 * @property {Message[]} messages
 * @property {string} [system]  the system prompt it started with (or was imported with)
 * @property {string} [forkOf]  the conversation it was forked from by editing a message
 */
/** @typedef {{model: string, temperature: string, maxTokens: string, system: string}} Settings */

/** The fields of a message that belong to one version of a reply. */
export const VERSION_FIELDS = Object.freeze(
  /** @type {const} */ (["content", "reasoning", "toolCalls", "stats", "error", "errorDetail", "stopped", "finishReason"]),
);

/** @type {Readonly<Settings>} */
export const DEFAULT_SETTINGS = Object.freeze({ model: "", temperature: "1", maxTokens: "", system: "" });

/**
 * @param {Storage} storage
 * @param {string} key
 * @param {unknown} fallback
 * @returns {any}
 */
function read(storage, key, fallback) {
  try {
    const raw = storage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback; // unreadable or corrupt: start afresh rather than break the page
  }
}

function newId() {
  // randomUUID needs a secure context; the page must still load without one to say so.
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint32Array(4)), (n) => n.toString(16)).join("-");
}

// Enough of the first message for any title; a whole long message is not parsed for 48 characters.
const TITLE_SOURCE = 2000;

/**
 * The first user message as plain words (Markdown stripped), at most 48 characters.
 * @param {Conversation} conversation
 */
export function titleOf(conversation) {
  const first = conversation.messages.find((m) => m.role === "user");
  const text = first ? plainText(first.content.slice(0, TITLE_SOURCE)) : "";
  if (!text) return t("chat.untitled");
  // Cut by code point, never inside a surrogate pair.
  const chars = [...text];
  return chars.length > 48 ? chars.slice(0, 47).join("") + "…" : text;
}

/**
 * The shown version of a reply, as a version of its own.
 * @param {Message} message
 * @returns {Version}
 */
export function versionOf(message) {
  /** @type {Record<string, unknown>} */
  const version = {};
  for (const name of VERSION_FIELDS) if (message[name] !== undefined) version[name] = structuredClone(message[name]);
  return /** @type {Version} */ (version);
}

/**
 * Show `version` of a reply: its fields become the message's own.
 * @param {Message} message
 * @param {Version} version
 */
export function showVersion(message, version) {
  for (const name of VERSION_FIELDS) delete message[name];
  Object.assign(message, structuredClone(version));
}

/** @param {Conversation} conversation */
export function repliesOf(conversation) {
  return conversation.messages.filter((m) => m.role === "assistant" && (m.content || m.toolCalls?.length)).length;
}

export class Store {
  /**
   * @param {Storage} [storage]  conversations and settings
   * @param {Storage} [session]  the API key, unless remembered
   */
  constructor(storage = window.localStorage, session = window.sessionStorage) {
    this.storage = storage;
    this.session = session;
    const saved = read(storage, CONVERSATIONS, null);
    // A conversation without a message is never kept (older versions of the page kept them).
    /** @type {Conversation[]} */
    this.conversations = Array.isArray(saved?.conversations)
      ? saved.conversations.filter((/** @type {unknown} */ c) => isConversation(c) && c.messages.length > 0)
      : [];
    /** @type {string | null} */
    this.currentId = saved?.currentId ?? null;
    /** @type {Settings} */
    this.settings = { ...DEFAULT_SETTINGS, ...read(storage, SETTINGS, {}) };
    if (!this.current()) this.currentId = this.conversations[0]?.id ?? null;
  }

  /** The open conversation; null when there is none yet. */
  current() {
    return this.conversations.find((c) => c.id === this.currentId) ?? null;
  }

  /** Conversations with at least one message, the most recently used first. */
  list() {
    return this.conversations.filter((c) => c.messages.length).sort((a, b) => b.updatedAt - a.updatedAt);
  }

  /**
   * @param {Message[]} [messages]
   * @param {string} [system]
   */
  create(messages = [], system = "") {
    const now = Date.now();
    /** @type {Conversation} */
    const conversation = { id: newId(), createdAt: now, updatedAt: now, messages, system };
    this.conversations.push(conversation);
    this.currentId = conversation.id;
    return conversation;
  }

  /** Start afresh: no conversation is open until the first message makes one. */
  startNew() {
    this.conversations = this.conversations.filter((c) => c.messages.length);
    this.currentId = null;
  }

  /**
   * A new conversation holding `conversation`'s messages before `index`, then `text` as the
   * user's message in place of the one at `index`: the original stays as it was.
   * @param {Conversation} conversation
   * @param {number} index
   * @param {string} text
   */
  fork(conversation, index, text) {
    /** @type {Message[]} */
    const before = structuredClone(conversation.messages.slice(0, index));
    const fork = this.create([...before, { role: "user", content: text }], conversation.system);
    if (conversation.system === undefined) delete fork.system;
    fork.forkOf = conversation.id;
    return fork;
  }

  /** @param {string} id */
  select(id) {
    if (this.conversations.some((c) => c.id === id)) this.currentId = id;
  }

  /**
   * Take a conversation out; returns what restore() needs to put it back as it was.
   * @param {string} id
   */
  remove(id) {
    const index = this.conversations.findIndex((c) => c.id === id);
    if (index < 0) return null;
    const [conversation] = this.conversations.splice(index, 1);
    const wasCurrent = this.currentId === id;
    if (wasCurrent) this.currentId = this.list()[0]?.id ?? null;
    return { conversation, index, wasCurrent };
  }

  /**
   * Put back a conversation remove() took out, where it was.
   * @param {{conversation: Conversation, index: number, wasCurrent: boolean}} removed
   */
  restore({ conversation, index, wasCurrent }) {
    if (this.conversations.some((c) => c.id === conversation.id)) return;
    this.conversations.splice(Math.min(index, this.conversations.length), 0, conversation);
    if (wasCurrent || this.currentId === null) this.currentId = conversation.id;
  }

  /** @param {Conversation} conversation */
  touch(conversation) {
    conversation.updatedAt = Date.now();
  }

  /** Write everything; returns an error message when the browser refuses (quota, private mode). */
  save() {
    try {
      const kept = this.conversations.filter((c) => c.messages.length);
      const currentId = kept.some((c) => c.id === this.currentId) ? this.currentId : null;
      this.storage.setItem(CONVERSATIONS, JSON.stringify({ conversations: kept, currentId }));
      this.storage.setItem(SETTINGS, JSON.stringify(this.settings));
      return null;
    } catch (err) {
      return t("chat.saveFailed", { message: err instanceof Error ? err.message : String(err) });
    }
  }

  /** The API key and whether it is remembered across sessions of the browser. */
  apiKey() {
    const remembered = safeGet(this.storage, API_KEY);
    if (remembered) return { key: remembered, remember: true };
    return { key: safeGet(this.session, API_KEY) ?? "", remember: false };
  }

  /**
   * Keep the key in sessionStorage, or in localStorage when `remember`; never in both.
   * @param {string} key
   * @param {boolean} remember
   */
  setApiKey(key, remember) {
    const [keep, drop] = remember ? [this.storage, this.session] : [this.session, this.storage];
    try {
      drop.removeItem(API_KEY);
      if (key) keep.setItem(API_KEY, key);
      else keep.removeItem(API_KEY);
    } catch {
      // storage refused: the key still works for this page until it is closed
    }
  }
}

/**
 * @param {Storage} storage
 * @param {string} key
 */
function safeGet(storage, key) {
  try {
    return storage.getItem(key);
  } catch {
    return null;
  }
}

/**
 * @param {any} c
 * @returns {c is Conversation}
 */
function isConversation(c) {
  return c && typeof c.id === "string" && Array.isArray(c.messages) && typeof c.updatedAt === "number";
}

// ---- files -------------------------------------------------------------------------------

/**
 * A conversation as a JSON document that importConversation reads back to an equal one.
 * @param {Conversation} conversation
 */
export function exportJson(conversation) {
  /** @type {Record<string, unknown>} */
  const document = {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    title: titleOf(conversation),
    createdAt: new Date(conversation.createdAt).toISOString(),
    messages: conversation.messages,
  };
  // As `getgpt chat`'s /save writes it: present only when there is one.
  if (conversation.system) document.system = conversation.system;
  return JSON.stringify(document, null, 2) + "\n";
}

/**
 * A conversation as Markdown, for reading: each message under a heading naming who wrote it.
 * @param {Conversation} conversation
 */
export function exportMarkdown(conversation) {
  const parts = [`# ${titleOf(conversation)}`];
  if (conversation.system) {
    parts.push(`> **${t("chat.system")}**\n>\n` + conversation.system.replace(/^/gm, "> "));
  }
  for (const message of conversation.messages) {
    parts.push(`## ${t(message.role === "user" ? "message.user" : "message.assistant")}`);
    if (message.reasoning) {
      parts.push(`> **${t("message.reasoning")}**\n>\n` + message.reasoning.replace(/^/gm, "> "));
    }
    if (message.content) parts.push(message.content);
    for (const call of message.toolCalls ?? []) {
      parts.push(`**${t("message.toolCall", { name: call.function.name })}**\n\n${fenced(prettyJson(call.function.arguments), "json")}`);
    }
    if (message.error) parts.push(`*${message.error}*`);
  }
  return parts.join("\n\n") + "\n";
}

/**
 * JSON text indented for reading; anything that is not JSON comes back as it was.
 * @param {string} text
 */
export function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/**
 * A fenced code block long enough never to be closed by the text inside it.
 * @param {string} text
 * @param {string} lang
 */
function fenced(text, lang) {
  const longest = Math.max(2, ...Array.from(text.matchAll(/`+/g), (m) => m[0].length));
  const fence = "`".repeat(longest + 1);
  return `${fence}${lang}\n${text}\n${fence}`;
}

/** Thrown when a file is not a conversation this page exported. */
export class ImportError extends Error {}

/**
 * Read a file written by exportJson, or by `getgpt chat`'s /save, back into a fresh conversation
 * (a new id; the same messages and system prompt).
 * @param {string} text
 * @returns {Conversation}
 */
export function importConversation(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new ImportError(t("chat.importNotJson"));
  }
  const createdAt = Date.parse(data?.createdAt);
  if (
    data?.format !== EXPORT_FORMAT ||
    data.version !== EXPORT_VERSION ||
    !Array.isArray(data.messages) ||
    Number.isNaN(createdAt) ||
    !data.messages.every(isMessage) ||
    !(data.system === undefined || typeof data.system === "string")
  ) {
    throw new ImportError(t("chat.importNotConversation"));
  }
  if (!data.messages.length) throw new ImportError(t("chat.importEmpty"));
  /** @type {Conversation} */
  const conversation = { id: newId(), createdAt, updatedAt: Date.now(), messages: data.messages };
  if (data.system) conversation.system = data.system;
  return conversation;
}

/**
 * @param {any} m
 * @returns {m is Message}
 */
function isMessage(m) {
  if (!m || typeof m !== "object" || (m.role !== "user" && m.role !== "assistant")) return false;
  if ("versions" in m || "version" in m) {
    const { versions, version } = m;
    if (!Array.isArray(versions) || !versions.length || !versions.every(isVersion)) return false;
    if (!Number.isInteger(version) || version < 0 || version >= versions.length) return false;
  }
  return isVersion(m);
}

/**
 * @param {any} v
 * @returns {v is Version}
 */
function isVersion(v) {
  if (!v || typeof v !== "object" || typeof v.content !== "string") return false;
  const optional = {
    reasoning: "string",
    error: "string",
    errorDetail: "string",
    finishReason: "string",
    stopped: "boolean",
  };
  for (const [name, type] of Object.entries(optional)) if (name in v && typeof v[name] !== type) return false;
  if ("toolCalls" in v && !(Array.isArray(v.toolCalls) && v.toolCalls.every(isToolCall))) return false;
  if ("stats" in v && !isStats(v.stats)) return false;
  return true;
}

/** @param {any} c */
function isToolCall(c) {
  return (
    c &&
    typeof c.id === "string" &&
    typeof c.type === "string" &&
    typeof c.function?.name === "string" &&
    typeof c.function?.arguments === "string"
  );
}

/** @param {any} s */
function isStats(s) {
  return s && ["firstMs", "totalMs", "chars", "pieces"].every((name) => typeof s[name] === "number");
}
