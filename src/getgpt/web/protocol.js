// @ts-check
// The GetGpt protocol, in the browser: request body, envelope, SSE decoding and the reply.
//
// A second implementation, independent of the Python package, so each one tests the other.
// The envelope is obfuscation, not secrecy: the key and IV travel in clear at the end of the
// signature, and only HTTPS protects the content.

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const encoder = new TextEncoder();

export const DEFAULTS = Object.freeze({
  frequency_penalty: 0,
  max_tokens: 4000,
  model: "gpt-3.5-turbo",
  presence_penalty: 0,
  temperature: 1,
  top_p: 1,
  stream: true,
});

export class ProtocolError extends Error {
  /**
   * @param {string} message
   * @param {string} [partial]  the reply text received before the error
   */
  constructor(message, partial = "") {
    super(message);
    this.name = "ProtocolError";
    this.partial = partial;
  }
}

export class SignatureError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "SignatureError";
  }
}

// An error the server reported: as an HTTP status before the stream, or inside it. `param`
// names the request field at fault when the server says (OpenAI's errors and getgpt serve's do).
export class RemoteError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number | null, type?: string | null, code?: string | null, param?: string | null, partial?: string}} [details]
   */
  constructor(message, { status = null, type = null, code = null, param = null, partial = "" } = {}) {
    super(message);
    this.name = "RemoteError";
    this.status = status;
    this.type = type;
    this.code = code;
    this.param = param;
    this.partial = partial;
  }
}

// The server closed the stream before saying the reply was finished.
export class IncompleteStream extends Error {
  /**
   * @param {string} message
   * @param {string} [partial]
   */
  constructor(message, partial = "") {
    super(message);
    this.name = "IncompleteStream";
    this.partial = partial;
  }
}

// The server could not be reached ("unreachable"), or the connection broke during the reply ("broken").
export class NetworkError extends Error {
  /**
   * @param {string} message
   * @param {"unreachable" | "broken"} kind
   * @param {string} [partial]
   */
  constructor(message, kind, partial = "") {
    super(message);
    this.name = "NetworkError";
    this.kind = kind;
    this.partial = partial;
  }
}

/**
 * fetch and stream reads reject with TypeError for network failures; an abort stays an abort.
 * @param {unknown} err
 * @param {"unreachable" | "broken"} kind
 * @param {string} [partial]
 */
function networkError(err, kind, partial = "") {
  if (err instanceof Error && err.name === "AbortError") return err;
  const what = kind === "unreachable" ? "could not reach the server" : "the connection broke during the reply";
  const detail = err instanceof Error ? err.message : String(err);
  return new NetworkError(`${what} (${detail})`, kind, partial);
}

/** @param {Uint8Array} bytes */
export function toHex(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}

/** @param {string} text */
function fromHex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
  return out;
}

/** @param {string} text */
function ascii(text) {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function randomHex16() {
  return toHex(crypto.getRandomValues(new Uint8Array(8)));
}

/** @typedef {{role: string, content: string, name?: string | null}} ChatMessage */
/**
 * @typedef {object} Params
 * @property {number} [frequency_penalty]
 * @property {number} [max_tokens]
 * @property {string} [model]
 * @property {number} [presence_penalty]
 * @property {number} [temperature]
 * @property {number} [top_p]
 * @property {boolean} [stream]
 * @property {string} [uuid]
 */

/**
 * The request object with its fields in the wire order every implementation shares:
 * messages, frequency_penalty, max_tokens, model, presence_penalty, temperature, top_p,
 * stream, uuid. Messages keep only role and content (and name when given).
 * @param {ChatMessage[]} messages
 * @param {Params} [params]
 */
export function buildRequest(messages, params = {}) {
  /** @param {keyof typeof DEFAULTS} name */
  const pick = (name) => (params[name] === undefined || params[name] === null ? DEFAULTS[name] : params[name]);
  return {
    messages: messages.map((m) =>
      m.name === undefined || m.name === null
        ? { role: m.role, content: m.content }
        : { role: m.role, content: m.content, name: m.name },
    ),
    frequency_penalty: pick("frequency_penalty"),
    max_tokens: pick("max_tokens"),
    model: pick("model"),
    presence_penalty: pick("presence_penalty"),
    temperature: pick("temperature"),
    top_p: pick("top_p"),
    stream: pick("stream"),
    uuid: params.uuid ?? crypto.randomUUID(),
  };
}

/**
 * Encrypt bytes under the given 16-character key and IV into a signature.
 * @param {BufferSource} plaintext
 * @param {string} key
 * @param {string} iv
 */
export async function seal(plaintext, key, iv) {
  if (!/^[0-9a-f]{16}$/.test(key) || !/^[0-9a-f]{16}$/.test(iv)) {
    throw new SignatureError("key and iv must each be 16 lowercase hex characters");
  }
  const cryptoKey = await crypto.subtle.importKey("raw", ascii(key), { name: "AES-CBC" }, false, ["encrypt"]);
  // WebCrypto's AES-CBC pads with PKCS#7 itself, a whole extra block when the input is aligned.
  const ciphertext = await crypto.subtle.encrypt({ name: "AES-CBC", iv: ascii(iv) }, cryptoKey, plaintext);
  return toHex(new Uint8Array(ciphertext)) + key + iv;
}

/**
 * The signature of a text under a fresh random key and IV.
 * @param {string} text
 */
export function encrypt(text) {
  return seal(encoder.encode(text), randomHex16(), randomHex16());
}

/**
 * Recover the text inside a signature; reject with SignatureError when it is malformed.
 * @param {unknown} signature
 */
export async function decrypt(signature) {
  if (typeof signature !== "string") throw new SignatureError("signature must be a string");
  if (signature.length < 64) {
    throw new SignatureError(`signature is too short: ${signature.length} characters, at least 64 needed`);
  }
  if (!/^[0-9a-fA-F]*$/.test(signature)) throw new SignatureError("signature must contain only hex digits");
  const body = signature.slice(0, -32);
  if (body.length % 32) {
    throw new SignatureError("signature's ciphertext is not a whole number of 16-byte blocks");
  }
  const key = await crypto.subtle.importKey("raw", ascii(signature.slice(-32, -16)), { name: "AES-CBC" }, false, [
    "decrypt",
  ]);
  let plaintext;
  try {
    plaintext = await crypto.subtle.decrypt({ name: "AES-CBC", iv: ascii(signature.slice(-16)) }, key, fromHex(body));
  } catch {
    throw new SignatureError("signature does not decrypt to valid PKCS#7 padding");
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(plaintext);
  } catch {
    throw new SignatureError("signature does not decrypt to UTF-8 text");
  }
}

export const MAX_EVENT_SIZE = 1 << 20;

/**
 * Incremental Server-Sent Events decoder over decoded text. Lines end at CR, LF or CRLF only --
 * never at U+2028 and friends, which JSON text may hold -- and a CRLF split across two feeds is
 * one line end. Only `data` matters to the chat protocol; other fields and comments are skipped.
 */
export class SSEParser {
  constructor(maxEventSize = MAX_EVENT_SIZE) {
    this.max = maxEventSize;
    this.buf = "";
    /** @type {string | null} */
    this.data = null;
    this.size = 0;
    this.skipLF = false;
  }

  /**
   * Add decoded text; return the data of every event it completes.
   * @param {string} text
   */
  feed(text) {
    /** @type {string[]} */
    const events = [];
    if (!text) return events;
    if (this.skipLF && text[0] === "\n") text = text.slice(1);
    this.skipLF = false;
    const buf = this.buf + text;
    // The held-over partial line has no line end in it, so the search begins after it.
    let start = 0;
    let from = this.buf.length;
    let cr = buf.indexOf("\r", from);
    let lf = buf.indexOf("\n", from);
    for (;;) {
      if (cr >= 0 && cr < from) cr = buf.indexOf("\r", from);
      if (lf >= 0 && lf < from) lf = buf.indexOf("\n", from);
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      if (end < 0) break;
      this.line(buf.slice(start, end), events);
      start = end + 1;
      if (buf[end] === "\r") {
        if (start === buf.length) this.skipLF = true;
        else if (buf[start] === "\n") start++;
      }
      from = start;
    }
    this.buf = buf.slice(start);
    if (this.buf.length + this.size > this.max) this.tooLarge(this.buf.length + this.size);
    return events;
  }

  /** End of stream: the data of a last event that lacked its closing blank line. */
  end() {
    /** @type {string[]} */
    const events = [];
    if (this.buf) this.line(this.buf, events);
    this.buf = "";
    this.line("", events);
    return events;
  }

  /**
   * @param {string} line
   * @param {string[]} events
   */
  line(line, events) {
    if (line === "") {
      if (this.data !== null) events.push(this.data);
      this.data = null;
      this.size = 0;
      return;
    }
    if (line[0] === ":") return;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    if (name !== "data") return;
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    this.data = this.data === null ? value : this.data + "\n" + value;
    this.size = this.data.length;
    if (this.size > this.max) this.tooLarge(this.size);
  }

  /**
   * @param {number} size
   * @returns {never}
   */
  tooLarge(size) {
    throw new ProtocolError(`server-sent event of ${size} characters exceeds the limit of ${this.max}`);
  }
}

/**
 * @param {any} error  the `error` member of a JSON body or event
 * @param {number | null} status
 * @param {string} partial
 */
function remoteError(error, status, partial) {
  const body = error && typeof error === "object" ? error : { message: String(error) };
  return new RemoteError(String(body.message || "the server reported an error"), {
    status,
    type: body.type ?? null,
    code: body.code ?? null,
    param: typeof body.param === "string" && body.param ? body.param : null,
    partial,
  });
}

/**
 * Turn a non-2xx response into the error it carries: `{"error": {message, type, code}}`.
 * @param {Response} response
 */
export async function errorFromResponse(response) {
  const text = await response.text().catch(() => "");
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // A proxy's HTML page or plain text: show an excerpt instead.
  }
  if (body && body.error) return remoteError(body.error, response.status, "");
  const excerpt = text.trim().slice(0, 200);
  return new RemoteError(`HTTP ${response.status}${excerpt ? ": " + excerpt : ""}`, { status: response.status });
}

/**
 * A tool call in OpenAI's message shape, assembled from its streamed fragments.
 * @typedef {{id: string, type: string, function: {name: string, arguments: string}}} ToolCall
 */
/**
 * @typedef {object} Reply
 * @property {string} text
 * @property {string} reasoning  the model's reasoning, when the backend sends it ("" otherwise)
 * @property {ToolCall[]} toolCalls
 * @property {string | null} finishReason
 * @property {any} usage
 */
/**
 * What a caller hears while a reply streams: text pieces, reasoning pieces, and the tool calls
 * as assembled so far each time a fragment of one arrives.
 * @typedef {object} Listeners
 * @property {(piece: string) => void} [onReasoning]
 * @property {(calls: ToolCall[]) => void} [onToolCalls]
 */

/**
 * Add one streamed `tool_calls` fragment to the calls assembled so far, as the Python client does:
 * fragments of one call share an `index`; its `id`, `type` and `name` come once (a repeat, which
 * some servers send, is ignored) and its `arguments` arrive in pieces to concatenate.
 * @param {ToolCall[]} calls
 * @param {any} fragment
 */
export function addToolCallFragment(calls, fragment) {
  if (!fragment || typeof fragment !== "object") return;
  const index = Number.isInteger(fragment.index) ? fragment.index : calls.length;
  if (index < 0 || index > 1024) return; // an index no model sends; refuse to allocate for it
  while (calls.length <= index) calls.push({ id: "", type: "", function: { name: "", arguments: "" } });
  const call = calls[index];
  if (typeof fragment.id === "string" && !call.id) call.id = fragment.id;
  if (typeof fragment.type === "string" && !call.type) call.type = fragment.type;
  const fn = fragment.function;
  if (fn && typeof fn === "object") {
    if (typeof fn.name === "string" && !call.function.name) call.function.name = fn.name;
    if (typeof fn.arguments === "string") call.function.arguments += fn.arguments;
  }
}

/**
 * Read a streamed reply, calling onText(piece) as each piece of text arrives. Resolves with
 * {text, reasoning, toolCalls, finishReason, usage}; rejects with RemoteError, ProtocolError,
 * IncompleteStream or NetworkError (each carrying the partial text), or with an AbortError when
 * the caller aborts. Reasoning (`delta.reasoning_content` or `delta.reasoning`) and tool calls
 * (`delta.tool_calls`) are collected too, and reported to `listeners` as they come.
 * @param {Response} response
 * @param {(piece: string) => void} onText
 * @param {Listeners} [listeners]
 * @returns {Promise<Reply>}
 */
export async function readReply(response, onText, listeners = {}) {
  if (!response.body) throw new ProtocolError("the response has no body");
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  const sse = new SSEParser();
  /** @type {{text: string, reasoning: string, toolCalls: ToolCall[], finishReason: string | null, usage: any, done: boolean}} */
  const state = { text: "", reasoning: "", toolCalls: [], finishReason: null, usage: null, done: false };

  /** @param {string} data */
  const handle = (data) => {
    if (data === "[DONE]") {
      state.done = true;
      return;
    }
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch {
      throw new ProtocolError(`server sent an event that is not JSON: ${data.slice(0, 100)}`, state.text);
    }
    if (chunk === null || typeof chunk !== "object") {
      throw new ProtocolError("server sent an event that is not a JSON object", state.text);
    }
    if (chunk.error) throw remoteError(chunk.error, response.status, state.text);
    if (chunk.usage) state.usage = chunk.usage;
    const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
    if (!choice) return;
    const delta = choice.delta ?? choice.message;
    const content = delta?.content;
    if (typeof content === "string" && content) {
      state.text += content;
      onText(content);
    }
    const reasoning = delta?.reasoning_content ?? delta?.reasoning;
    if (typeof reasoning === "string" && reasoning) {
      state.reasoning += reasoning;
      listeners.onReasoning?.(reasoning);
    }
    if (Array.isArray(delta?.tool_calls) && delta.tool_calls.length) {
      for (const fragment of delta.tool_calls) addToolCallFragment(state.toolCalls, fragment);
      listeners.onToolCalls?.(state.toolCalls);
    }
    if (choice.finish_reason) state.finishReason = choice.finish_reason;
  };

  try {
    while (!state.done) {
      let read;
      try {
        read = await reader.read();
      } catch (err) {
        throw networkError(err, "broken", state.text);
      }
      const { value, done } = read;
      if (done) {
        for (const data of sse.feed(decoder.decode())) handle(data);
        for (const data of sse.end()) handle(data);
        break;
      }
      for (const data of sse.feed(decoder.decode(value, { stream: true }))) {
        handle(data);
        if (state.done) break;
      }
    }
  } catch (err) {
    if (err instanceof ProtocolError && !err.partial) err.partial = state.text;
    throw err;
  } finally {
    // Anything after [DONE] is ignored; release the connection rather than drain it.
    reader.cancel().catch(() => {});
  }
  if (!state.done && !state.finishReason) {
    throw new IncompleteStream("the server closed the stream before the reply was complete", state.text);
  }
  for (const call of state.toolCalls) call.type ||= "function"; // OpenAI's only kind, when unsaid
  return {
    text: state.text,
    reasoning: state.reasoning,
    toolCalls: state.toolCalls,
    finishReason: state.finishReason,
    usage: state.usage,
  };
}

/**
 * The headers that carry an API key, when there is one.
 * @param {string} [apiKey]
 * @returns {Record<string, string>}
 */
export function authHeaders(apiKey) {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

/**
 * @typedef {object} ChatOptions
 * @property {string} [baseUrl]
 * @property {AbortSignal} [signal]
 * @property {Params} [params]
 * @property {string} [apiKey]  sent as `Authorization: Bearer <key>`
 * @property {(piece: string) => void} [onText]
 * @property {(piece: string) => void} [onReasoning]
 * @property {(calls: ToolCall[]) => void} [onToolCalls]
 */

/**
 * Send one chat request through the protocol and stream its reply.
 * @param {ChatMessage[]} messages
 * @param {ChatOptions} [options]
 */
export async function streamChat(
  messages,
  { baseUrl = "", signal, params = {}, apiKey = "", onText = () => {}, onReasoning, onToolCalls } = {},
) {
  const body = JSON.stringify(buildRequest(messages, params));
  const signature = await encrypt(body);
  let response;
  try {
    response = await fetch(baseUrl + "api/chat/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders(apiKey) },
      body: JSON.stringify({ signature }),
      signal,
    });
  } catch (err) {
    throw networkError(err, "unreachable");
  }
  if (!response.ok) throw await errorFromResponse(response);
  const type = response.headers.get("content-type") || "";
  if (!type.includes("text/event-stream")) {
    response.body?.cancel().catch(() => {});
    throw new ProtocolError(`expected an event stream, got ${type || "no content type"}`);
  }
  return readReply(response, onText, { onReasoning, onToolCalls });
}
