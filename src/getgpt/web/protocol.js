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
  constructor(message, partial = "") {
    super(message);
    this.name = "ProtocolError";
    this.partial = partial;
  }
}

export class SignatureError extends Error {
  constructor(message) {
    super(message);
    this.name = "SignatureError";
  }
}

// An error the server reported: as an HTTP status before the stream, or inside it.
export class RemoteError extends Error {
  constructor(message, { status = null, type = null, code = null, partial = "" } = {}) {
    super(message);
    this.name = "RemoteError";
    this.status = status;
    this.type = type;
    this.code = code;
    this.partial = partial;
  }
}

// The server closed the stream before saying the reply was finished.
export class IncompleteStream extends Error {
  constructor(message, partial = "") {
    super(message);
    this.name = "IncompleteStream";
    this.partial = partial;
  }
}

// The server could not be reached, or the connection broke during the reply.
export class NetworkError extends Error {
  constructor(message, partial = "") {
    super(message);
    this.name = "NetworkError";
    this.partial = partial;
  }
}

// fetch and stream reads reject with TypeError for network failures; an abort stays an abort.
function networkError(err, what, partial = "") {
  return err?.name === "AbortError" ? err : new NetworkError(`${what} (${err?.message ?? err})`, partial);
}

export function toHex(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}

function fromHex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
  return out;
}

function ascii(text) {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function randomHex16() {
  return toHex(crypto.getRandomValues(new Uint8Array(8)));
}

/**
 * The request object with its fields in the wire order every implementation shares:
 * messages, frequency_penalty, max_tokens, model, presence_penalty, temperature, top_p,
 * stream, uuid. Messages keep only role and content (and name when given).
 */
export function buildRequest(messages, params = {}) {
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

/** Encrypt bytes under the given 16-character key and IV into a signature. */
export async function seal(plaintext, key, iv) {
  if (!/^[0-9a-f]{16}$/.test(key) || !/^[0-9a-f]{16}$/.test(iv)) {
    throw new SignatureError("key and iv must each be 16 lowercase hex characters");
  }
  const cryptoKey = await crypto.subtle.importKey("raw", ascii(key), { name: "AES-CBC" }, false, ["encrypt"]);
  // WebCrypto's AES-CBC pads with PKCS#7 itself, a whole extra block when the input is aligned.
  const ciphertext = await crypto.subtle.encrypt({ name: "AES-CBC", iv: ascii(iv) }, cryptoKey, plaintext);
  return toHex(new Uint8Array(ciphertext)) + key + iv;
}

/** The signature of a text under a fresh random key and IV. */
export function encrypt(text) {
  return seal(encoder.encode(text), randomHex16(), randomHex16());
}

/** Recover the text inside a signature; reject with SignatureError when it is malformed. */
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
    this.data = null;
    this.size = 0;
    this.skipLF = false;
  }

  /** Add decoded text; return the data of every event it completes. */
  feed(text) {
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
    const events = [];
    if (this.buf) this.line(this.buf, events);
    this.buf = "";
    this.line("", events);
    return events;
  }

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

  tooLarge(size) {
    throw new ProtocolError(`server-sent event of ${size} characters exceeds the limit of ${this.max}`);
  }
}

function remoteError(error, status, partial) {
  const body = error && typeof error === "object" ? error : { message: String(error) };
  return new RemoteError(String(body.message || "the server reported an error"), {
    status,
    type: body.type ?? null,
    code: body.code ?? null,
    partial,
  });
}

/** Turn a non-2xx response into the error it carries: `{"error": {message, type, code}}`. */
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
 * Read a streamed reply, calling onText(piece) as each piece of text arrives. Resolves with
 * {text, finishReason, usage}; rejects with RemoteError, ProtocolError, IncompleteStream or
 * NetworkError (each carrying the partial text), or with an AbortError when the caller aborts.
 */
export async function readReply(response, onText) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  const sse = new SSEParser();
  const state = { text: "", finishReason: null, usage: null, done: false };

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
    const content = choice.delta?.content ?? choice.message?.content;
    if (typeof content === "string" && content) {
      state.text += content;
      onText(content);
    }
    if (choice.finish_reason) state.finishReason = choice.finish_reason;
  };

  try {
    while (!state.done) {
      let read;
      try {
        read = await reader.read();
      } catch (err) {
        throw networkError(err, "the connection broke during the reply", state.text);
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
  return { text: state.text, finishReason: state.finishReason, usage: state.usage };
}

/**
 * Send one chat request through the protocol and stream its reply.
 * options: {baseUrl, signal, params, onText}.
 */
export async function streamChat(messages, { baseUrl = "", signal, params = {}, onText = () => {} } = {}) {
  const body = JSON.stringify(buildRequest(messages, params));
  const signature = await encrypt(body);
  let response;
  try {
    response = await fetch(baseUrl + "api/chat/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ signature }),
      signal,
    });
  } catch (err) {
    throw networkError(err, "could not reach the server");
  }
  if (!response.ok) throw await errorFromResponse(response);
  const type = response.headers.get("content-type") || "";
  if (!type.includes("text/event-stream")) {
    response.body?.cancel().catch(() => {});
    throw new ProtocolError(`expected an event stream, got ${type || "no content type"}`);
  }
  return readReply(response, onText);
}
