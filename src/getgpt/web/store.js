// Conversations and settings, kept in localStorage so they survive a reload.

const CONVERSATIONS = "getgpt.conversations.v1";
const SETTINGS = "getgpt.settings.v1";

export const DEFAULT_SETTINGS = Object.freeze({ model: "", temperature: "1", maxTokens: "", system: "" });

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

export function titleOf(conversation) {
  const first = conversation.messages.find((m) => m.role === "user");
  const text = first ? first.content.replace(/\s+/g, " ").trim() : "";
  if (!text) return "New chat";
  // Cut by code point, never inside a surrogate pair.
  const chars = [...text];
  return chars.length > 48 ? chars.slice(0, 47).join("") + "…" : text;
}

export class Store {
  constructor(storage = window.localStorage) {
    this.storage = storage;
    const saved = read(storage, CONVERSATIONS, null);
    this.conversations = Array.isArray(saved?.conversations) ? saved.conversations.filter(isConversation) : [];
    this.currentId = saved?.currentId ?? null;
    this.settings = { ...DEFAULT_SETTINGS, ...read(storage, SETTINGS, {}) };
    if (!this.current()) this.currentId = this.conversations[0]?.id ?? null;
  }

  /** The open conversation; null when there is none yet. */
  current() {
    return this.conversations.find((c) => c.id === this.currentId) ?? null;
  }

  /** Conversations, the most recently used first. */
  list() {
    return [...this.conversations].sort((a, b) => b.updatedAt - a.updatedAt);
  }

  create() {
    const now = Date.now();
    const conversation = { id: newId(), createdAt: now, updatedAt: now, messages: [] };
    this.conversations.push(conversation);
    this.currentId = conversation.id;
    return conversation;
  }

  select(id) {
    if (this.conversations.some((c) => c.id === id)) this.currentId = id;
  }

  remove(id) {
    this.conversations = this.conversations.filter((c) => c.id !== id);
    if (this.currentId === id) this.currentId = this.list()[0]?.id ?? null;
  }

  touch(conversation) {
    conversation.updatedAt = Date.now();
  }

  /** Write everything; returns an error message when the browser refuses (quota, private mode). */
  save() {
    try {
      this.storage.setItem(
        CONVERSATIONS,
        JSON.stringify({ conversations: this.conversations, currentId: this.currentId }),
      );
      this.storage.setItem(SETTINGS, JSON.stringify(this.settings));
      return null;
    } catch (err) {
      return `Could not save the conversation in this browser: ${err.message}`;
    }
  }
}

function isConversation(c) {
  return c && typeof c.id === "string" && Array.isArray(c.messages) && typeof c.updatedAt === "number";
}
