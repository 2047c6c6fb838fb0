"""The web chat page (src/getgpt/web) in a real headless Chromium.

The page is a second implementation of the protocol, so most checks set it against the Python
package: its envelope against getgpt.protocol.envelope, its SSE parser against getgpt.protocol.sse,
its request body against getgpt.protocol.request.encode. End to end it talks to the project's server
(echo backend) on loopback. A small scripted server serves the same page for what the real one
never does on demand: a stream cut short, an error inside a stream; it also keeps the exact bytes
the page sent.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC
from playwright.sync_api import Browser, Page
from starlette.applications import Starlette

from getgpt.protocol import envelope
from getgpt.protocol.reply import ReplyParser
from getgpt.protocol.request import build_request, encode, parse_request
from getgpt.protocol.sse import SSEDecoder
from getgpt.server import ServerConfig, create_app

from ..support.browser import (
    Scripted,
    close_settings,
    current_messages,
    open_page,
    open_settings,
    page_routes,
    screenshot,
    send,
    wait_replies,
)
from ..support.processes import SSL_CONTEXT
from ..support.scripted import TOOL_CALLS, reasoning_stream, stream_of, tool_call_stream
from ..support.servers import serve, wait_until


def active_streams(base_url: str) -> int:
    health = httpx.get(base_url + "healthz", timeout=5, verify=SSL_CONTEXT).json()
    assert health["status"] == "ok"
    count: int = health["active_streams"]
    return count


def wait_streams(base_url: str, expected: int) -> int:
    """The server's open streams once they are ``expected`` (fails if they do not get there)."""
    wait_until(lambda: active_streams(base_url) == expected, what=f"{expected} stream(s) open")
    return active_streams(base_url)


# ---- the envelope, against getgpt.protocol.envelope ------------------------------------------------

TEXTS = [
    "",
    "a",
    "x" * 15,
    "y" * 16,  # block-aligned: PKCS#7 adds a whole block
    "z" * 17,
    "Привет, мир! Как дела?",
    "emoji 👋🏽 and a flag 🇺🇦, CJK 漢字, RTL עברית",
    '{"messages":[{"role":"user","content":"quote \\" and \\\\ backslash"}]}',
    "line\nbreaks\r\nand\u2028separators\u0000nul",
    "long " * 1000,
]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_page_encrypts_what_python_decrypts_and_back(units: Page, text: str) -> None:
    signature = units.evaluate("t => window.getgpt.encrypt(t)", text)
    assert envelope.decrypt(signature) == text
    tail = signature[-32:]
    assert all(c in "0123456789abcdef" for c in tail)
    assert len(signature[:-32]) % 32 == 0
    assert len(signature[:-32]) // 2 == (len(text.encode()) // 16 + 1) * 16
    assert units.evaluate("s => window.getgpt.decrypt(s)", envelope.encrypt(text)) == text


def test_page_seal_is_byte_exact_with_python(units: Page) -> None:
    key, iv = "0123456789abcdef", "fedcba9876543210"
    text = "Привет 👋 " * 7
    js = units.evaluate(
        "([t, k, v]) => window.getgpt.seal(new TextEncoder().encode(t), k, v)", [text, key, iv]
    )
    assert js == envelope.seal(text.encode(), key, iv)


def test_page_uses_a_fresh_key_and_iv_each_time(units: Page) -> None:
    signatures = units.evaluate("() => Promise.all([1, 2, 3].map(() => window.getgpt.encrypt('same')))")
    assert len({s[-32:-16] for s in signatures}) == 3
    assert len({s[-16:] for s in signatures}) == 3


def _raw_signature(blocks: bytes, key: str = "00112233aabbccdd", iv: str = "ffeeddcc44332211") -> str:
    encryptor = Cipher(AES(key.encode()), CBC(iv.encode())).encryptor()
    return (encryptor.update(blocks) + encryptor.finalize()).hex() + key + iv


# Each malformed signature, and a word the page's error message must contain.
MALFORMED = {
    "too short": ("ab" * 20, "too short"),
    "non-hex": ("zz" * 40, "hex digits"),
    "not blocks": ("00" * 24 + "0123456789abcdef" * 2, "blocks"),
    "padding": (_raw_signature(b"sixteen bytes!\x00\x00"), "padding"),
    "UTF-8": (envelope.seal(b"\xff\xfe not text", "0123456789abcdef", "0123456789abcdef"), "utf-8"),
}


@pytest.mark.parametrize("problem", MALFORMED)
def test_page_rejects_malformed_signatures_like_python(units: Page, problem: str) -> None:
    signature, word = MALFORMED[problem]
    with pytest.raises(envelope.SignatureError):
        envelope.decrypt(signature)
    error = units.evaluate(
        "s => window.getgpt.decrypt(s).then(() => null, e => [e.name, e.message])", signature
    )
    assert error is not None
    name, message = error
    assert name == "SignatureError"
    assert word in message.lower()


# ---- SSE and the reply, against getgpt.protocol.sse ------------------------------------------------

SSE_STREAM = (
    ": a comment\r\n"
    "data: one\r\n\r\n"
    "event: message\nid: 7\ndata: two\ndata: lines\n\n"
    "retry: 10\rdata: three\u2028still three \u2029 \x85 \x0c\r\r"
    "data:four, no space\n\n"
    "data\n\n"
    'data: {"choices":[{"delta":{"content":"data: content"}}]}\r\n\r\n'
    "data: [DONE]"
)


def python_events(text: str) -> list[str]:
    decoder = SSEDecoder()
    raw = decoder.decode(text.encode()) + decoder.flush()
    return [event.decode() for event in raw]


def test_page_sse_parser_matches_python_at_every_split(units: Page) -> None:
    expected = python_events(SSE_STREAM)
    assert expected[2] == "three\u2028still three \u2029 \x85 \x0c"  # only CR, LF, CRLF end lines
    results = units.evaluate(
        """text => {
          const run = (pieces) => {
            const parser = new window.getgpt.SSEParser();
            const events = [];
            for (const piece of pieces) events.push(...parser.feed(piece));
            return [...events, ...parser.end()];
          };
          const out = [run([text]), run([...text])];
          for (let i = 1; i < text.length; i++) out.push(run([text.slice(0, i), text.slice(i)]));
          return out;
        }""",
        SSE_STREAM,
    )
    assert len(results) == len(SSE_STREAM) + 1
    for events in results:
        assert events == expected


def test_page_reply_reader_handles_utf8_split_across_reads(units: Page) -> None:
    pieces = ["Привет", ", ", "мир ", "👋🏽", " 漢字"]
    body = stream_of(pieces).replace(b"\n", b"\r\n")
    text = units.evaluate(
        """bytes => {
          // One byte per read: every multi-byte character and every CRLF is split.
          const data = new Uint8Array(bytes);
          let i = 0;
          const stream = new ReadableStream({
            pull(controller) {
              if (i < data.length) controller.enqueue(data.slice(i, ++i));
              else controller.close();
            },
          });
          const response = new Response(stream);
          return window.getgpt.readReply(response, () => {}).then(r => [r.text, r.finishReason]);
        }""",
        list(body),
    )
    assert text == ["".join(pieces), "stop"]


def test_page_assembles_tool_calls_and_reasoning_like_python(units: Page) -> None:
    for body in (tool_call_stream(), reasoning_stream()):
        parser = ReplyParser()
        parser.feed(body)
        parser.close()
        page = units.evaluate(
            """bytes => window.getgpt.readReply(new Response(new Uint8Array(bytes)), () => {})
                          .then(r => [r.text, r.reasoning, r.toolCalls, r.finishReason])""",
            list(body),
        )
        assert page == [parser.text, parser.reasoning, parser.tool_calls, parser.finish_reason]
    assert page[2] == [] and parser.tool_calls == []
    parser = ReplyParser()
    parser.feed(tool_call_stream())
    assert parser.tool_calls == TOOL_CALLS


# ---- Markdown, rendered as nodes ----------------------------------------------------------

LINK = 'target="_blank" rel="noopener noreferrer nofollow"'
MARKDOWN = {
    "emphasis": (
        "**b** *i* ***bi*** ~~s~~ `c` _u_ a * b * c snake_case_name",
        "<p><strong>b</strong> <em>i</em> <strong><em>bi</em></strong> <del>s</del> <code>c</code>"
        " <em>u</em> a * b * c snake_case_name</p>",
    ),
    "line breaks": ("one\ntwo\n\nthree", "<p>one<br>two</p><p>three</p>"),
    "escapes": ("\\*not em\\* \\`x\\`", "<p>*not em* `x`</p>"),
    "heading": ("## Title *x*\ntext", "<h2>Title <em>x</em></h2><p>text</p>"),
    "nested list": ("- a\n  - b\n- c", "<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>"),
    "ordered list": ("3. x\n4. y", '<ol start="3"><li>x</li><li>y</li></ol>'),
    "loose list": ("- a\n\n- b", "<ul><li><p>a</p></li><li><p>b</p></li></ul>"),
    "quote": ("> q *e*\n> r", "<blockquote><p>q <em>e</em><br>r</p></blockquote>"),
    "rule": ("a\n\n---\n\nb", "<p>a</p><hr><p>b</p>"),
    "code span": ("`` a ` b `` and `<i>`", "<p><code>a ` b</code> and <code>&lt;i&gt;</code></p>"),
    "link": (
        "[ok *x*](https://example.com/a?b=1&c=2)",
        f'<p><a href="https://example.com/a?b=1&amp;c=2" {LINK}>ok <em>x</em></a></p>',
    ),
    "relative link": ("[doc](/docs/x)", '<p><a href="http://HOST/docs/x" ' + LINK + ">doc</a></p>"),
    "autolink": (
        "see https://example.com/x.",
        f'<p>see <a href="https://example.com/x" {LINK}>https://example.com/x</a>.</p>',
    ),
    "image is a link": (
        "![cat](https://example.com/c.png)",
        f'<p><a href="https://example.com/c.png" {LINK}>cat</a></p>',
    ),
    "javascript link": ("[bad](javascript:alert(1))", "<p>[bad](javascript:alert(1))</p>"),
    "mixed case scheme": ("[bad](JaVaScRiPt:alert(1))", "<p>[bad](JaVaScRiPt:alert(1))</p>"),
    "data link": ("[bad](data:text/html,<b>x</b>)", "<p>[bad](data:text/html,&lt;b&gt;x&lt;/b&gt;)</p>"),
    "vbscript link": ("[bad](vbscript:msgbox)", "<p>[bad](vbscript:msgbox)</p>"),
    "table": (
        "| Name | Qty |\n|:-----|----:|\n| `x` | **2** |\n| a \\| b |",
        '<div class="table-wrap"><table><thead><tr><th class="align-left">Name</th>'
        '<th class="align-right">Qty</th></tr></thead><tbody><tr><td class="align-left"><code>x</code></td>'
        '<td class="align-right"><strong>2</strong></td></tr><tr><td class="align-left">a | b</td>'
        '<td class="align-right"></td></tr></tbody></table></div>',
    ),
    "not a table": ("a | b\n---", "<p>a | b</p><hr>"),
    "raw html": (
        '<b>hi</b> <script>alert(1)</script> <img src=x onerror="alert(2)">',
        "<p>&lt;b&gt;hi&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt; "
        '&lt;img src=x onerror="alert(2)"&gt;</p>',
    ),
}


@pytest.mark.parametrize("case", MARKDOWN)
def test_markdown_renders_safely(units: Page, case: str) -> None:
    source, html = MARKDOWN[case]
    rendered = units.evaluate(
        """t => { const d = document.createElement('div'); d.append(window.getgpt.renderMarkdown(t));
                  return d.innerHTML; }""",
        source,
    )
    host = units.url.split("/")[2]
    assert rendered == html.replace("HOST", host)


def test_markdown_code_block_keeps_text_verbatim(units: Page) -> None:
    code = "let a = '<b>';\n  if (a && b) { x = `*y*`; }\n\n<script>alert(1)</script>"
    for source in (f"```js\n{code}\n```", f"~~~~js extra\n{code}\n~~~~", f"```js\n{code}"):  # last: unclosed
        result = units.evaluate(
            """t => { const d = document.createElement('div'); d.append(window.getgpt.renderMarkdown(t));
                      const c = d.querySelector('pre > code');
                      return [c.className, c.textContent, d.querySelectorAll('script, b').length]; }""",
            source,
        )
        assert result == ["language-js", code, 0]


def test_markdown_of_unmatched_delimiters_is_the_text_itself(units: Page) -> None:
    # Untrusted text full of openers that never close: rendered as itself (the renderer remembers
    # failed searches and bounds link scans, so this stays linear rather than quadratic).
    for unit in ("[", "[a](", "**a ", "`a``b", "_a", "~~a "):
        source = unit * (20_000 // len(unit))
        text = units.evaluate(
            """t => { const d = document.createElement('div'); d.append(window.getgpt.renderMarkdown(t));
                      return d.textContent; }""",
            source,
        )
        assert text.replace("`", "") == source.replace("`", "").strip(), unit


MARKDOWN_DOC = """# Plan

Intro with **bold**, `code` and a [link](https://example.com).

1. first
2. second
   - nested *item*
3. third

```python
def f(x):
    return x * 2  # **not bold**
```

> quoted
> text

| k | v |
|---|:-:|
| a | 1 |

---
Done: https://example.com/end.
"""


def test_markdown_view_streamed_equals_rendered_whole(units: Page) -> None:
    # The streaming view rebuilds only changed blocks; at every prefix it must equal a full render.
    mismatches = units.evaluate(
        """text => {
          const full = (t) => { const d = document.createElement('div');
                                d.append(window.getgpt.renderMarkdown(t)); return d.innerHTML; };
          const root = document.createElement('div');
          const view = new window.getgpt.MarkdownView(root);
          const bad = [];
          for (let i = 0; i <= text.length; i++) {
            view.update(text.slice(0, i));
            if (root.innerHTML !== full(text.slice(0, i))) bad.push(i);
          }
          return [bad, root.querySelectorAll('h1, ol, ul, pre, blockquote, table, hr, a').length];
        }""",
        MARKDOWN_DOC,
    )
    assert mismatches == [[], 9]


# ---- the request the page sends, against getgpt.protocol.request -----------------------------------


def test_page_request_is_byte_identical_to_python_encode(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    script, url = scripted
    page = open_page(browser, url, page_errors)
    open_settings(page)
    page.fill("#model", "gpt-4o-mini")
    page.fill("#temperature", "0.7")
    page.fill("#max-tokens", "256")
    page.fill("#system", "Be brief.")
    close_settings(page)
    send(page, 'Привет 👋 "quoted" \\ back')
    wait_replies(page, 1)
    sent = script.requests[-1]
    request_id = json.loads(sent)["uuid"]
    assert uuid.UUID(request_id).version == 4
    expected = build_request(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": 'Привет 👋 "quoted" \\ back'},
        ],
        model="gpt-4o-mini",
        temperature=0.7,
        max_tokens=256,
        uuid=request_id,
    )
    assert sent.encode() == encode(expected)

    # The next turn carries the history, and settings survive a reload.
    send(page, "second")
    wait_replies(page, 2)
    roles = [m.role for m in parse_request(script.requests[-1]).messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert json.loads(script.requests[-1])["uuid"] != request_id
    page.reload()
    open_settings(page)
    assert page.input_value("#temperature") == "0.7"
    assert page.input_value("#model") == "gpt-4o-mini"
    page.context.close()


# ---- end to end ---------------------------------------------------------------------------


def test_cyrillic_and_emoji_echo_streams_into_the_page(
    browser: Browser, slow_server: str, page_errors: list[str]
) -> None:
    # The slow server: ~20 pieces over about a second, so the growth is seen even on a busy machine.
    page = open_page(browser, slow_server, page_errors)
    message = "Привет, мир! Как дела? 👋🏽🇺🇦 Съешь же ещё этих мягких французских булок 🥐"
    # Record the reply's length each time the page changes it, to see it grow piece by piece.
    page.evaluate(
        """() => {
          window.lengths = [];
          new MutationObserver(() => {
            const body = document.querySelector('.msg.assistant .body');
            if (body) window.lengths.push(body.textContent.length);
          }).observe(document.getElementById('messages'),
                     {subtree: true, childList: true, characterData: true});
        }"""
    )
    send(page, message)
    wait_replies(page, 1)
    assert page.inner_text(".msg.user .body") == message
    assert page.inner_text(".msg.assistant .body") == message
    assert page.locator(".note.error").count() == 0
    lengths = page.evaluate("() => window.lengths.filter(n => n > 0)")
    partial = {n for n in lengths if 0 < n < len(message)}
    assert len(partial) >= 3, lengths  # text appeared in several steps, not all at once
    user, reply = current_messages(page)
    stats = reply.pop("stats")
    assert [user, reply] == [
        {"role": "user", "content": message},
        {"role": "assistant", "content": message},
    ]
    # How the reply came: its size, and times that fit what was seen (several pieces, ~1 s).
    assert stats["chars"] == len(message)
    assert stats["pieces"] >= 3
    assert 0 <= stats["firstMs"] < stats["totalMs"]
    assert page.inner_text("#title") == message[:47] + "…"
    screenshot(page, "web-chat.png")
    page.context.close()


def test_markdown_reply_renders_and_html_stays_text(page: Page) -> None:
    message = (
        "Here is **code**:\n\n```python\nprint('<b>hi</b>')\n```\n\n"
        "- item `one`\n- item [two](https://example.com/two)\n- [bad](javascript:window.__pwned=3)\n\n"
        '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>'
    )
    send(page, message)
    wait_replies(page, 1)
    reply = page.locator(".msg.assistant .body")
    assert reply.locator("pre code.language-python").inner_text() == "print('<b>hi</b>')"
    assert reply.locator("strong").inner_text() == "code"
    assert reply.locator("li").count() == 3
    assert reply.locator("a").count() == 1
    assert reply.locator("a").get_attribute("href") == "https://example.com/two"
    assert page.locator(".msg img, .msg script, .msg b").count() == 0
    text = reply.inner_text()
    assert '<img src=x onerror="window.__pwned=1">' in text
    assert "<script>window.__pwned=2</script>" in text
    assert "[bad](javascript:window.__pwned=3)" in text
    assert page.evaluate("() => window.__pwned") is None
    screenshot(page, "web-markdown.png")


def test_enter_sends_and_shift_enter_adds_a_line(page: Page) -> None:
    page.click("#input")
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#input") == "line one\nline two"
    assert page.locator(".msg").count() == 0
    page.keyboard.press("Enter")
    wait_replies(page, 1)
    assert page.input_value("#input") == ""
    assert page.inner_text(".msg.user .body") == "line one\nline two"
    assert current_messages(page)[1]["content"] == "line one\nline two"
    send(page, "   ")  # blank: nothing is sent
    assert page.locator(".msg").count() == 2


def test_stop_mid_stream_ends_the_server_stream(
    browser: Browser, slow_server: str, page_errors: list[str]
) -> None:
    page = open_page(browser, slow_server, page_errors)
    message = " ".join(f"word{i}" for i in range(400))  # ~2900 chars: ~36 s at 4 chars per 0.05 s
    send(page, message)
    page.wait_for_function("() => document.querySelector('.msg.assistant .body')?.textContent.length > 20")
    assert page.is_visible("#stop")
    assert not page.is_visible("#send")
    assert wait_streams(slow_server, 1) == 1
    page.click("#stop")
    page.wait_for_selector(".note.stopped")
    assert wait_streams(slow_server, 0) == 0
    assert page.is_visible("#send")
    shown = page.inner_text(".msg.assistant .body")
    assert 0 < len(shown) < len(message)
    assert message.startswith(shown)
    reply = current_messages(page)[1]
    assert reply["stopped"] is True
    assert message.startswith(reply["content"])
    assert "error" not in reply
    page.context.close()


def test_history_survives_reload_with_new_switch_and_delete(page: Page) -> None:
    send(page, "first conversation")
    wait_replies(page, 1)
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    send(page, "second conversation")
    wait_replies(page, 1)

    page.reload()
    titles = page.locator(".conversation-open").all_inner_texts()
    assert titles == ["second conversation", "first conversation"]  # most recent first
    assert page.inner_text(".msg.assistant .body") == "second conversation"
    page.click(".conversation-open >> text=first conversation")
    assert page.inner_text(".msg.user .body") == "first conversation"
    assert page.inner_text(".msg.assistant .body") == "first conversation"

    page.click("[aria-label='Delete conversation: first conversation']")
    assert page.locator(".conversation-open").all_inner_texts() == ["second conversation"]
    page.reload()
    assert page.locator(".conversation-open").all_inner_texts() == ["second conversation"]
    assert page.inner_text(".msg.assistant .body") == "second conversation"


@pytest.mark.parametrize(
    ("locale", "sentence"),
    [
        ("en-US", "The server refused the conversation: it holds more messages than the server accepts."),
        ("ru-RU", "Сервер не принял разговор: в нём больше сообщений, чем сервер допускает."),
    ],
)
def test_a_server_400_is_a_sentence_in_the_page_language_with_the_server_words_kept(
    browser: Browser, page_errors: list[str], locale: str, sentence: str
) -> None:
    # getgpt serve refuses a conversation longer than its --max-messages with a 400 naming
    # "messages": the page cannot know the limit beforehand, so it is the server's answer that shows.
    with serve(create_app(ServerConfig(backend="echo", max_messages=2))) as url:
        page = open_page(browser, url, page_errors, locale=locale)
        send(page, "one")
        wait_replies(page, 1)
        send(page, "two")
        wait_replies(page, 2)
        error = page.locator(".msg.assistant .note.error").first
        assert error.get_attribute("role") == "alert"
        assert error.locator("p").inner_text().startswith(sentence)
        words = "too many messages: 3, at most 2 allowed"
        assert not error.locator(".server-words").is_visible()  # the server's own words, folded
        error.locator("summary").click()
        assert error.locator(".server-words").inner_text() == words
        reply = current_messages(page)[3]
        assert reply["error"].startswith(sentence)
        assert reply["errorDetail"] == words
        screenshot(page, f"web-error-400-{locale[:2]}.png")
        page.context.close()


def test_full_storage_is_reported_and_chat_goes_on(page: Page) -> None:
    # Fill this origin's real localStorage quota, then chat: the page says it could not save.
    filled = page.evaluate(
        """() => { let stored = 0;
                   for (let size = 1 << 20, i = 0; size >= 1 && i < 1000; i++) {
                     try { localStorage.setItem('junk' + i, 'x'.repeat(size)); stored += size; }
                     catch { size >>= 1; }
                   }
                   return stored; }"""
    )
    assert filled > 0
    send(page, "remember me")
    wait_replies(page, 1)
    assert page.inner_text(".msg.assistant .body") == "remember me"
    assert page.inner_text("#banner-text").startswith("Could not save the conversation in this browser:")


def test_cut_stream_and_in_stream_error_are_shown(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    page = open_page(browser, scripted[1], page_errors)
    send(page, "cut")
    wait_replies(page, 1)
    assert page.inner_text(".msg.assistant .body") == "partial text"  # what came is kept
    assert "Incomplete reply" in page.inner_text(".note.error")

    send(page, "fail")
    wait_replies(page, 2)
    second = page.locator(".msg.assistant").nth(1)
    assert second.locator(".body").inner_text() == "so far"
    assert second.locator(".note.error p").inner_text() == "The server reported an error during the reply."
    assert second.locator(".server-words").text_content() == "backend exploded"

    send(page, "crlf")
    wait_replies(page, 3)
    assert page.locator(".msg.assistant .body").nth(2).inner_text() == "über 😀 done"
    assert page.locator(".note.error").count() == 2

    send(page, "limit")
    wait_replies(page, 4)
    fourth = page.locator(".msg.assistant").nth(3)
    assert fourth.locator(".body").inner_text() == "truncated"
    assert "token limit" in fourth.locator(".note.stopped").inner_text()
    assert current_messages(page)[-1]["finishReason"] == "length"
    page.context.close()


def test_network_error_is_shown(browser: Browser, page_errors: list[str]) -> None:
    app = Starlette(routes=page_routes())
    with serve(app) as url:
        page = open_page(browser, url, page_errors)
    # The server is gone: the page is loaded, but nothing answers the request.
    send(page, "anyone there?")
    wait_replies(page, 1)
    assert page.inner_text(".note.error").startswith("Network error:")
    page.context.close()


def test_insecure_context_is_explained_instead_of_failing(
    browser: Browser, server: str, page_errors: list[str]
) -> None:
    page = open_page(browser, server.replace("127.0.0.1", "insecure.test"), page_errors)
    assert page.evaluate("() => window.isSecureContext") is False
    assert "needs a secure context" in page.inner_text("#banner-text")
    assert page.is_disabled("#send")
    send(page, "hello")
    assert page.input_value("#input") == "hello"  # not sent, and not lost
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    assert active_streams(server) == 0
    page.context.close()


def test_phone_width_layout(browser: Browser, server: str, page_errors: list[str]) -> None:
    page = open_page(
        browser, server, page_errors, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )
    assert not page.is_visible("#new-chat")  # the sidebar waits behind the menu button
    send(page, "A long line on a small screen: " + "abcdefghij" * 12 + "\n\n```\n" + "x" * 200 + "\n```")
    wait_replies(page, 1)
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1]  # no sideways scrolling; long code scrolls inside its block
    box = page.locator("#input").bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= 740
    screenshot(page, "web-phone.png")
    page.click("#open-sidebar")
    page.wait_for_selector("#new-chat", state="visible")
    page.click("#scrim", position={"x": 360, "y": 400})
    page.wait_for_selector("#new-chat", state="hidden")
    page.context.close()
