// @ts-check
// A small Markdown renderer for model output that builds DOM nodes and never parses HTML.
//
// Model text is untrusted: every character of it reaches the page as a Text node or as the
// textContent of an element created here, and links get an href only for http(s), mailto and
// same-site relative URLs. Raw HTML in the text is therefore shown as text, never run.
//
// Supported: fenced code blocks, inline code, headings, paragraphs with line breaks, bullet and
// numbered lists (nested by indentation), tables, block quotes, horizontal rules, *emphasis*,
// **strong**, ~~strike~~, [links](url), bare http(s) URLs and backslash escapes.

import { t } from "./i18n.js";

const FENCE = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*))?$/;
const BLANK = /^[ \t]*$/;
const TABLE_RULE = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
const ESCAPABLE = "\\`*_{}[]()#+-.!~|>\"'<";
const URL_AT = /https?:\/\/[^\s<>"'`]+/y;
const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

/**
 * A block of Markdown; `key` identifies its rendering (its type and source lines).
 * @typedef {(
 *   | {type: "code", lang: string, text: string, closed: boolean}
 *   | {type: "rule"}
 *   | {type: "heading", level: number, text: string}
 *   | {type: "quote", children: Block[]}
 *   | {type: "table", align: string[], head: string[], rows: string[][]}
 *   | {type: "list", ordered: boolean, start: number, items: Block[][], loose: boolean}
 *   | {type: "paragraph", text: string}
 * ) & {key?: string}} Block
 */
/** @typedef {{indent: number, marker: string, ordered: boolean, content: number, first: string}} Item */

/**
 * @param {string} tag
 * @param {string} [className]
 */
function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** @param {string} line */
function indentOf(line) {
  return line.length - line.trimStart().length;
}

/**
 * @param {string} line
 * @param {number} maxIndent
 * @returns {Item | null}
 */
function itemAt(line, maxIndent) {
  const m = ITEM.exec(line);
  if (!m || m[1].length > maxIndent || RULE.test(line)) return null;
  return {
    indent: m[1].length,
    marker: m[2],
    ordered: /\d/.test(m[2]),
    // Where the item's content starts: later lines indented this far belong to the item.
    content: m[1].length + m[2].length + (m[3] ? Math.min(m[3].length, 4) : 1),
    first: m[4] ?? "",
  };
}

/** @param {string} line */
function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || itemAt(line, 3) !== null;
}

/**
 * Split text into blocks: {type, key, ...}; `key` identifies a block's rendering.
 * @param {string} text
 * @returns {Block[]}
 */
export function parseBlocks(text) {
  return blocksOf(text.replace(/\r\n?/g, "\n").split("\n"));
}

/**
 * @param {string[]} lines
 * @returns {Block[]}
 */
function blocksOf(lines) {
  /** @type {Block[]} */
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const start = i;
    let m;
    if (BLANK.test(line)) {
      i++;
      continue;
    }
    if ((m = FENCE.exec(line))) {
      const [, indent, fence, lang] = m;
      const body = [];
      let closed = false;
      for (i++; i < lines.length; i++) {
        const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(lines[i]);
        if (close && close[1][0] === fence[0] && close[1].length >= fence.length) {
          closed = true;
          i++;
          break;
        }
        // Content keeps its indentation, less the fence's own.
        body.push(lines[i].slice(Math.min(indent.length, indentOf(lines[i]))));
      }
      blocks.push({ type: "code", lang, text: body.join("\n"), closed });
    } else if (RULE.test(line)) {
      i++;
      blocks.push({ type: "rule" });
    } else if ((m = HEADING.exec(line))) {
      i++;
      blocks.push({ type: "heading", level: m[1].length, text: m[2] ?? "" });
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
        inner.push(m[1]);
        i++;
      }
      blocks.push({ type: "quote", children: blocksOf(inner) });
    } else if (itemAt(line, 3)) {
      i = parseList(lines, i, blocks);
    } else if (isTableStart(lines, i)) {
      const align = cells(lines[i + 1]).map((c) =>
        c.endsWith(":") ? (c.startsWith(":") ? "center" : "right") : c.startsWith(":") ? "left" : "",
      );
      const head = cells(line);
      const rows = [];
      for (i += 2; i < lines.length && lines[i].includes("|") && !BLANK.test(lines[i]) && !startsBlock(lines[i]); i++) {
        rows.push(cells(lines[i]));
      }
      blocks.push({ type: "table", align, head, rows });
    } else {
      const para = [line.trim()];
      for (i++; i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines[i]); i++) para.push(lines[i].trim());
      blocks.push({ type: "paragraph", text: para.join("\n") });
    }
    blocks[blocks.length - 1].key = blocks[blocks.length - 1].type + "\u0000" + lines.slice(start, i).join("\n");
  }
  return blocks;
}

/**
 * A table's row: its cells, split at pipes that are not escaped, outer pipes optional.
 * @param {string} line
 */
function cells(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((cell) => cell.trim());
}

/**
 * @param {string[]} lines
 * @param {number} i
 */
function isTableStart(lines, i) {
  return (
    i + 1 < lines.length &&
    lines[i].includes("|") &&
    TABLE_RULE.test(lines[i + 1]) &&
    cells(lines[i]).length === cells(lines[i + 1]).length
  );
}

/**
 * @param {string[]} lines
 * @param {number} i
 * @param {Block[]} blocks
 */
function parseList(lines, i, blocks) {
  const head = /** @type {Item} */ (itemAt(lines[i], 3));
  /** @type {Block[][]} */
  const items = [];
  /** @param {Item | null} item */
  const sameKind = (item) =>
    item && item.ordered === head.ordered && (item.ordered || item.marker === head.marker) && item.indent <= 3;
  /** @type {Item | null} */
  let item = head;
  let loose = false;
  while (item) {
    const body = [item.first];
    /** @type {Item | null} */
    let next = null;
    for (i++; i < lines.length; i++) {
      const line = lines[i];
      if (BLANK.test(line)) {
        let j = i + 1;
        while (j < lines.length && BLANK.test(lines[j])) j++;
        if (j < lines.length && indentOf(lines[j]) >= item.content) {
          body.push("");
          continue;
        }
        /** @type {Item | null} */
        const sibling = j < lines.length ? itemAt(lines[j], item.content - 1) : null;
        if (sameKind(sibling)) {
          loose = true;
          i = j;
          next = sibling;
        }
        break;
      }
      if (indentOf(line) >= item.content) {
        body.push(line.slice(item.content));
        continue;
      }
      const sibling = itemAt(line, item.content - 1);
      if (sibling) {
        if (sameKind(sibling)) next = sibling;
        break;
      }
      if (startsBlock(line)) break;
      body.push(line.trim()); // a lazy continuation of the item's paragraph
    }
    if (body.includes("")) loose = true;
    items.push(blocksOf(body));
    item = next;
    if (next === null) break;
  }
  const start = head.ordered ? parseInt(head.marker, 10) : 1;
  blocks.push({ type: "list", ordered: head.ordered, start, items, loose });
  return i;
}

/**
 * A safe href for a link target, or null: http(s), mailto, and relative URLs on this site.
 * @param {string} url
 */
export function safeHref(url) {
  if (!url || /[\u0000-\u0020\u007f]/.test(url)) return null;
  let parsed;
  try {
    parsed = new URL(url, document.baseURI);
  } catch {
    return null;
  }
  return SAFE_PROTOCOLS.has(parsed.protocol) ? parsed.href : null;
}

/**
 * @param {string} href
 * @param {string} [title]
 */
function link(href, title) {
  const a = /** @type {HTMLAnchorElement} */ (el("a"));
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  if (title) a.title = title;
  return a;
}

// Longest link label and target looked for: without a bound, text like "[[[[..." costs
// quadratic time, and model output is untrusted.
const MAX_LABEL = 1000;
const MAX_TARGET = 2048;

/**
 * `[label](url "title")` starting at text[i] === "[": {label, url, title, end} or null.
 * @param {string} text
 * @param {number} i
 */
function parseLink(text, i) {
  let depth = 0;
  let j = i;
  for (const stop = Math.min(text.length, i + MAX_LABEL); j < stop; j++) {
    const c = text[j];
    if (c === "\\") j++;
    else if (c === "[") depth++;
    else if (c === "]" && --depth === 0) break;
  }
  if (text[j] !== "]" || text[j + 1] !== "(") return null;
  let k = j + 2;
  depth = 1;
  for (const stop = Math.min(text.length, j + 2 + MAX_TARGET); k < stop; k++) {
    const c = text[k];
    if (c === "\\") k++;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) break;
  }
  if (text[k] !== ")") return null;
  const target = /^\s*<?([^\s>]*)>?(?:\s+["'(](.*)["')])?\s*$/.exec(text.slice(j + 2, k));
  if (!target) return null;
  return { label: text.slice(i + 1, j), url: target[1], title: target[2] ?? "", end: k + 1 };
}

/**
 * @param {string} text
 * @param {number} i
 */
function runLength(text, i) {
  let j = i;
  while (text[j] === text[i]) j++;
  return j - i;
}

/**
 * Index of a closing run of exactly n `ch`, not preceded by a space, at or after `from`.
 * @param {string} text
 * @param {string} ch
 * @param {number} n
 * @param {number} from
 */
function closingRun(text, ch, n, from) {
  const word = /[\p{L}\p{N}]/u;
  for (let j = text.indexOf(ch, from); j >= 0; j = text.indexOf(ch, j + runLength(text, j))) {
    if (runLength(text, j) !== n || text[j - 1] === ch) continue;
    if (/\s/.test(text[j - 1])) continue;
    if (ch === "_" && word.test(text[j + n] ?? "")) continue; // snake_case is not emphasis
    return j;
  }
  return -1;
}

/**
 * Append the inline Markdown of `text` to `parent`, as nodes.
 * @param {string} text
 * @param {Element | DocumentFragment} parent
 */
export function renderInline(text, parent) {
  // A closing run searched for in vain from some point is absent from any later point too:
  // remembering that keeps text full of unmatched `**` or backticks linear.
  /** @type {Map<string, number>} */
  const missing = new Map();
  /**
   * @param {string} ch
   * @param {number} n
   * @param {number} from
   * @param {() => number} find
   */
  const closer = (ch, n, from, find) => {
    const key = ch + n;
    const known = missing.get(key);
    if (known !== undefined && from >= known) return -1;
    const found = find();
    if (found < 0) missing.set(key, Math.min(from, known ?? from));
    return found;
  };
  let plain = "";
  const flush = () => {
    const parts = plain.split("\n");
    parts.forEach((part, n) => {
      if (n) parent.append(el("br"));
      if (part) parent.append(part); // a string argument becomes a Text node
    });
    plain = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length && ESCAPABLE.includes(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      const n = runLength(text, i);
      const close = closer("`", n, i + n, () => {
        let at = text.indexOf("`".repeat(n), i + n);
        while (at >= 0 && runLength(text, at) !== n) at = text.indexOf("`".repeat(n), at + runLength(text, at));
        return at;
      });
      if (close < 0) {
        plain += text.slice(i, i + n);
        i += n;
        continue;
      }
      let body = text.slice(i + n, close).replace(/\n/g, " ");
      if (body.length > 2 && body[0] === " " && body[body.length - 1] === " " && body.trim()) body = body.slice(1, -1);
      flush();
      const code = el("code");
      code.textContent = body;
      parent.append(code);
      i = close + n;
      continue;
    }
    if (c === "[" || (c === "!" && text[i + 1] === "[")) {
      const found = parseLink(text, c === "!" ? i + 1 : i);
      const href = found && safeHref(found.url);
      if (href) {
        flush();
        // Images become links: the page loads nothing a model names.
        const a = link(href, found.title);
        renderInline(found.label || found.url, a);
        parent.append(a);
        i = found.end;
        continue;
      }
    }
    if (c === "h" && !/[\p{L}\p{N}]/u.test(text[i - 1] ?? "")) {
      URL_AT.lastIndex = i;
      const m = URL_AT.exec(text);
      if (m) {
        let url = m[0].replace(/[.,;:!?*_~]+$/, "");
        if (url.endsWith(")") && !url.includes("(")) url = url.replace(/\)+$/, "");
        const href = safeHref(url);
        if (href) {
          flush();
          const a = link(href);
          a.textContent = url;
          parent.append(a);
          i += url.length;
          continue;
        }
      }
    }
    if (c === "*" || c === "_" || c === "~") {
      const n = runLength(text, i);
      const fits = c === "~" ? n === 2 : n <= 3;
      const opens = fits && text[i + n] !== undefined && !/\s/.test(text[i + n]);
      const wordBefore = c === "_" && /[\p{L}\p{N}]/u.test(text[i - 1] ?? "");
      const close = opens && !wordBefore ? closer(c, n, i + n, () => closingRun(text, c, n, i + n)) : -1;
      if (close < 0) {
        plain += text.slice(i, i + n);
        i += n;
        continue;
      }
      flush();
      let outer;
      let inner;
      if (c === "~") outer = inner = el("del");
      else if (n === 1) outer = inner = el("em");
      else if (n === 2) outer = inner = el("strong");
      else {
        outer = el("strong");
        inner = el("em");
        outer.append(inner);
      }
      renderInline(text.slice(i + n, close), inner);
      parent.append(outer);
      i = close + n;
      continue;
    }
    plain += c;
    i++;
  }
  flush();
}

/** @param {{lang: string, text: string}} block */
function renderCode(block) {
  const box = el("div", "code");
  const head = el("div", "code-head");
  const lang = el("span", "code-lang");
  lang.textContent = block.lang;
  const copy = /** @type {HTMLButtonElement} */ (el("button", "code-copy"));
  copy.type = "button";
  copy.textContent = t("message.copy");
  copy.addEventListener("click", () => {
    navigator.clipboard?.writeText(block.text).then(
      () => (copy.textContent = t("message.copied")),
      () => (copy.textContent = t("message.copyFailed")),
    );
  });
  head.append(lang, copy);
  const pre = el("pre");
  const code = el("code");
  const safeLang = block.lang.replace(/[^\w+-]/g, "");
  if (safeLang) code.className = "language-" + safeLang;
  code.textContent = block.text;
  pre.append(code);
  box.append(head, pre);
  return box;
}

/**
 * @param {Block} block
 * @param {boolean} [tight]
 * @returns {Node}
 */
function renderBlock(block, tight = false) {
  switch (block.type) {
    case "code":
      return renderCode(block);
    case "rule":
      return el("hr");
    case "heading": {
      const h = el("h" + block.level);
      renderInline(block.text, h);
      return h;
    }
    case "quote": {
      const q = el("blockquote");
      for (const child of block.children) q.append(renderBlock(child));
      return q;
    }
    case "table": {
      const wrap = el("div", "table-wrap");
      const table = el("table");
      /**
       * @param {string[]} texts
       * @param {string} tag
       */
      const row = (texts, tag) => {
        const tr = el("tr");
        block.align.forEach((align, n) => {
          const cell = el(tag, align ? "align-" + align : "");
          renderInline(texts[n] ?? "", cell);
          tr.append(cell);
        });
        return tr;
      };
      const thead = el("thead");
      thead.append(row(block.head, "th"));
      const tbody = el("tbody");
      for (const cellsOfRow of block.rows) tbody.append(row(cellsOfRow, "td"));
      table.append(thead, tbody);
      wrap.append(table);
      return wrap;
    }
    case "list": {
      const list = el(block.ordered ? "ol" : "ul");
      if (list instanceof HTMLOListElement && block.start !== 1) list.start = block.start;
      for (const item of block.items) {
        const li = el("li");
        for (const child of item) li.append(renderBlock(child, !block.loose));
        list.append(li);
      }
      return list;
    }
    default: {
      // In a tight list item a paragraph is bare text, without the margins of a <p>.
      const target = tight ? document.createDocumentFragment() : el("p");
      renderInline(block.text, target);
      return target;
    }
  }
}

/**
 * Render Markdown into a new DocumentFragment.
 * @param {string} text
 */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  for (const block of parseBlocks(text)) fragment.append(renderBlock(block));
  return fragment;
}

/**
 * Markdown that grows as a reply streams in. Each update re-parses the text (cheap) but rebuilds
 * only the blocks that changed -- usually just the last -- so a long reply stays smooth.
 */
export class MarkdownView {
  /** @param {Element} root */
  constructor(root) {
    this.root = root;
    /** @type {(string | undefined)[]} */
    this.keys = [];
    /** @type {ChildNode[][]} */
    this.nodes = [];
  }

  /** @param {string} text */
  update(text) {
    const blocks = parseBlocks(text);
    let same = 0;
    while (same < blocks.length && same < this.keys.length && blocks[same].key === this.keys[same]) same++;
    for (const group of this.nodes.splice(same)) for (const node of group) node.remove();
    for (const block of blocks.slice(same)) {
      const node = renderBlock(block);
      // A fragment empties itself into the page: remember the nodes it held.
      const group = node instanceof DocumentFragment ? [...node.childNodes] : [/** @type {ChildNode} */ (node)];
      this.root.append(node);
      this.nodes.push(group);
    }
    this.keys = blocks.map((block) => block.key);
  }
}

/**
 * The words a reader sees in Markdown, on one line: no `**`, backticks, fences, `#` or list
 * markers; a code block gives its code, a link its label. For titles, which show plain text.
 * @param {string} text
 */
export function plainText(text) {
  /** @type {string[]} */
  const words = [];
  /** @param {Block[]} blocks */
  const walk = (blocks) => {
    for (const block of blocks) {
      if (block.type === "code") words.push(block.text);
      else if (block.type === "heading" || block.type === "paragraph") words.push(inlineText(block.text));
      else if (block.type === "quote") walk(block.children);
      else if (block.type === "list") block.items.forEach(walk);
      else if (block.type === "table") for (const row of [block.head, ...block.rows]) words.push(...row.map(inlineText));
    }
  };
  walk(parseBlocks(text));
  return words.join(" ").replace(/\s+/g, " ").trim();
}

/**
 * The text of inline Markdown as rendered: line breaks become spaces.
 * @param {string} text
 */
function inlineText(text) {
  const fragment = document.createDocumentFragment();
  renderInline(text.replace(/\n/g, " "), fragment);
  return fragment.textContent ?? "";
}
