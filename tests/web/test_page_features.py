"""What the page does beyond sending: API keys, the server's models, regenerating a reply, editing
and resending (a fork), export and import, reply stats, reasoning and tool-call blocks."""

# ruff: noqa: RUF001  (Russian text on purpose: Cyrillic letters that look Latin)

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from starlette.applications import Starlette
from starlette.types import Scope

from getgpt.protocol.request import ChatRequest
from getgpt.server import ServerConfig, create_app
from getgpt.server.chat.request import Chat

from ..support.browser import (
    Scripted,
    close_settings,
    current_messages,
    open_page,
    open_settings,
    screenshot,
    send,
    stored,
    wait_replies,
)
from ..support.scripted import REASONING, TOOL_CALLS
from ..support.servers import serve

KEY = "sesame-0123"


@pytest.fixture(scope="module")
def recording() -> Iterator[tuple[str, list[ChatRequest]]]:
    """The echo server with API keys and two models of its own, keeping every request it accepts."""
    seen: list[ChatRequest] = []
    app = create_app(ServerConfig(backend="echo", api_keys=(KEY,), models=("alpha-1", "beta-2")))

    async def record(scope: Scope, chat: Chat) -> None:
        seen.append(chat.request)

    app.state.chat_checks.append(record)
    with serve(app) as url:
        yield url, seen


def contents(request: ChatRequest) -> list[tuple[str, str]]:
    return [(m.role, str(m.content)) for m in request.messages]


def test_api_key_missing_then_wrong_is_explained_and_the_right_one_streams(
    browser: Browser, recording: tuple[str, list[ChatRequest]], page_errors: list[str]
) -> None:
    url, seen = recording
    before = len(seen)
    page = open_page(browser, url, page_errors)
    send(page, "open sesame")
    wait_replies(page, 1)
    note = page.inner_text(".note.error")
    assert note.startswith("The server needs an API key (401).")
    # The page opens the settings at the key's field, with the keyboard there.
    assert page.evaluate("() => document.getElementById('settings').open") is True
    assert page.evaluate("() => document.activeElement.id") == "api-key"
    screenshot(page, "web-key-needed.png")

    page.fill("#api-key", "wrong")
    page.press("#api-key", "Tab")  # a change event keeps it
    close_settings(page)
    send(page, "open sesame")
    wait_replies(page, 2)
    assert (
        page.locator(".note.error").nth(1).inner_text().startswith("The server refused this API key (401).")
    )
    assert len(seen) == before  # the server let neither through

    assert page.evaluate("() => document.activeElement.id") == "api-key"  # open at the key again
    page.fill("#api-key", KEY)
    page.press("#api-key", "Tab")
    close_settings(page)
    send(page, "open sesame")
    wait_replies(page, 3)
    assert page.locator(".msg.assistant .body").nth(2).inner_text() == "open sesame"
    assert len(seen) == before + 1
    screenshot(page, "web-key-accepted.png")

    # Kept for this tab only, until "remember" is ticked: then in localStorage, and only there.
    where = "() => [sessionStorage.getItem('getgpt.apiKey.v1'), localStorage.getItem('getgpt.apiKey.v1')]"
    assert page.evaluate(where) == [KEY, None]
    open_settings(page)
    page.check("#remember-key")
    assert page.evaluate(where) == [None, KEY]
    page.reload()
    page.wait_for_function("() => window.getgpt !== undefined")
    open_settings(page)
    assert page.input_value("#api-key") == KEY
    assert page.is_checked("#remember-key")
    page.uncheck("#remember-key")
    assert page.evaluate(where) == [KEY, None]
    page.context.close()


def test_the_key_travels_as_authorization_bearer(browser: Browser, page_errors: list[str]) -> None:
    script = Scripted(key=KEY)
    with serve(Starlette(routes=script.routes())) as url:
        page = open_page(browser, url, page_errors)
        open_settings(page)
        page.fill("#api-key", KEY)
        page.press("#api-key", "Tab")
        close_settings(page)
        send(page, "hello")
        wait_replies(page, 1)
        page.context.close()
    assert script.authorizations == [f"Bearer {KEY}"]


def test_model_list_comes_from_the_server(
    browser: Browser, recording: tuple[str, list[ChatRequest]], page_errors: list[str]
) -> None:
    url, seen = recording
    page = open_page(browser, url, page_errors)
    open_settings(page)
    # The model list takes the server's API key, as chat does: it comes once the key is given.
    assert page.is_hidden("#models-note")
    page.fill("#api-key", KEY)
    page.press("#api-key", "Tab")
    page.wait_for_selector("#models-note", state="visible")
    options = page.evaluate("() => [...document.querySelectorAll('#models option')].map(o => o.value)")
    assert options == ["alpha-1", "beta-2"]
    assert page.get_attribute("#model", "placeholder") == "alpha-1"
    assert page.inner_text("#models-note") == "The server offers 2 models."
    screenshot(page, "web-models.png")
    # With the box left empty the page asks for the server's first model, not the protocol's default.
    close_settings(page)
    send(page, "which model?")
    wait_replies(page, 1)
    assert seen[-1].model == "alpha-1"
    open_settings(page)
    page.fill("#model", "beta-2")
    close_settings(page)
    send(page, "and now?")
    wait_replies(page, 2)
    assert seen[-1].model == "beta-2"
    page.select_option("#language", "ru")
    open_settings(page)
    assert page.inner_text("#models-note") == "Сервер предлагает 2 модели."
    page.context.close()


def test_regenerate_keeps_every_version_and_pages_through_them(
    browser: Browser, page_errors: list[str]
) -> None:
    script = Scripted()  # its own: "again" counts the takes
    with serve(Starlette(routes=script.routes())) as url:
        page = open_page(browser, url, page_errors)
        send(page, "first")
        wait_replies(page, 1)
        send(page, "again")
        wait_replies(page, 2)
        assert page.locator(".regenerate").count() == 1  # only the last reply has it
        assert page.locator(".pager").count() == 0  # one version: nothing to page through
        for take in (2, 3):
            page.click(".regenerate")
            wait_replies(page, 2)
            assert page.locator(".msg.assistant .body").nth(1).inner_text() == f"take {take}"
            assert page.inner_text(".pager .version") == f"{take}/{take}"
        # Each request asked the same, in place of the last reply.
        assert [json.loads(r)["messages"] for r in script.requests[-3:]] == [
            json.loads(script.requests[-1])["messages"]
        ] * 3
        assert page.locator(".msg").count() == 4
        assert page.is_disabled(".pager .next")

        page.click(".pager .previous")
        assert page.locator(".msg.assistant .body").nth(1).inner_text() == "take 2"
        assert page.inner_text(".pager .version") == "2/3"
        assert page.evaluate("() => document.activeElement.classList.contains('previous')")
        page.keyboard.press("Enter")  # the keyboard stays on the pager
        assert page.inner_text(".pager .version") == "1/3"
        assert page.is_disabled(".pager .previous")
        assert page.evaluate("() => document.activeElement.classList.contains('next')")
        assert page.get_attribute(".pager .version", "title") == "Version 1 of 3"
        reply = current_messages(page)[-1]
        assert reply["content"] == "take 1"
        assert [v["content"] for v in reply["versions"]] == ["take 1", "take 2", "take 3"]
        assert reply["version"] == 0

        # The version shown is kept, and it is what the next turn sends as the reply.
        page.reload()
        page.wait_for_function("() => window.getgpt !== undefined")
        assert page.inner_text(".pager .version") == "1/3"
        page.click(".pager .next")
        send(page, "next turn")
        wait_replies(page, 3)
        sent = [m["content"] for m in json.loads(script.requests[-1])["messages"]]
        assert sent == ["first", "first", "again", "take 2", "next turn"]
        assert page.locator(".pager").count() == 0  # the versions are the earlier reply's, kept
        assert [v["content"] for v in current_messages(page)[3]["versions"]] == ["take 1", "take 2", "take 3"]
        screenshot(page, "web-versions.png")
        page.context.close()


def test_edit_and_resend_forks_the_conversation_and_keeps_the_original(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    script, url = scripted
    page = open_page(browser, url, page_errors)
    send(page, "first")
    wait_replies(page, 1)
    send(page, "second")
    wait_replies(page, 2)
    original = stored(page)["currentId"]
    page.locator(".msg.user >> nth=1").get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name=re.compile("^Edit the message"))
    assert editor.input_value() == "second"
    screenshot(page, "web-edit.png")
    editor.fill("second, edited")
    page.get_by_role("button", name="Send as a new branch").click()
    wait_replies(page, 2)
    assert [m["role"] for m in json.loads(script.requests[-1])["messages"]] == ["user", "assistant", "user"]
    assert json.loads(script.requests[-1])["messages"][-1]["content"] == "second, edited"

    data = stored(page)
    assert data["currentId"] != original
    conversations = {c["id"]: c for c in data["conversations"]}
    fork = conversations[data["currentId"]]
    assert fork["forkOf"] == original
    assert [m["content"] for m in fork["messages"]] == ["first", "first", "second, edited", "second, edited"]
    assert [m["content"] for m in conversations[original]["messages"]] == [
        "first",
        "first",
        "second",
        "second",
    ]
    assert page.locator(".conversation").count() == 2

    # Escape leaves the editor without sending anything.
    asked = len(script.requests)
    page.locator(".msg.user >> nth=0").get_by_role("button", name="Edit").click()
    page.keyboard.press("Escape")
    assert page.locator(".edit-input").count() == 0
    assert len(script.requests) == asked
    page.context.close()


def test_export_then_import_gives_back_the_same_conversation(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str], tmp_path: Path
) -> None:
    page = open_page(browser, scripted[1], page_errors)
    for count, text in enumerate(("Привет **мир** 👋", "think", "tools", "cut"), 1):
        send(page, text)
        wait_replies(page, count)
    with page.expect_download() as download_json:
        page.click("#export-json")
    exported = tmp_path / "exported.json"
    download_json.value.save_as(exported)
    assert download_json.value.suggested_filename == "Привет-мир.json"
    assert page.inner_text("#title") == "Привет мир 👋"  # the Markdown's words, without its marks
    document = json.loads(exported.read_text(encoding="utf-8"))
    assert document["format"] == "getgpt.conversation"
    assert document["messages"] == current_messages(page)
    assert document["messages"][5]["toolCalls"] == TOOL_CALLS

    with page.expect_download() as download_md:
        page.click("#export-md")
    markdown = download_md.value.path().read_text(encoding="utf-8")
    assert markdown.startswith("# Привет мир 👋\n\n## You\n\nПривет **мир** 👋\n\n## Assistant\n\n")
    assert "".join(REASONING) in markdown
    assert "**Tool call: get_weather**" in markdown
    assert '"city": "Париж"' in markdown
    assert "*Incomplete reply:" in markdown

    page.set_input_files("#import-file", str(exported))
    page.wait_for_function("() => document.querySelectorAll('.conversation').length === 2")
    assert page.inner_text("#status") == "Imported “Привет мир 👋”."
    data = stored(page)
    conversations = {c["id"]: c for c in data["conversations"]}
    imported = conversations[data["currentId"]]
    assert imported["messages"] == document["messages"]
    assert page.locator(".msg").count() == 8
    # Exporting the imported conversation gives the very same file.
    with page.expect_download() as again:
        page.click("#export-json")
    assert again.value.path().read_bytes() == exported.read_bytes()
    screenshot(page, "web-imported.png")

    # A file that is not an export is refused with a reason, and nothing is added.
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": "nope"}')
    page.set_input_files("#import-file", str(bad))
    page.wait_for_selector("#banner:not([hidden])")
    assert page.inner_text("#banner") == (
        "Could not import bad.json: it is not a conversation exported from this page."
    )
    page.set_input_files(
        "#import-file",
        files=[{"name": "notes.json", "mimeType": "application/json", "buffer": b"not json at all"}],
    )
    page.wait_for_function("() => document.getElementById('banner-text').textContent.endsWith('not JSON.')")
    assert page.inner_text("#banner") == "Could not import notes.json: it is not JSON."
    assert page.locator(".conversation").count() == 2
    page.context.close()


def test_reasoning_is_collapsed_and_tool_calls_are_assembled_into_blocks(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    page = open_page(browser, scripted[1], page_errors)
    send(page, "think")
    wait_replies(page, 1)
    reasoning = page.locator(".msg.assistant details.reasoning")
    assert reasoning.get_attribute("open") is None  # collapsed
    assert reasoning.locator("summary").inner_text() == "Reasoning"
    assert not page.is_visible(".reasoning-text")
    reasoning.locator("summary").click()
    assert page.inner_text(".reasoning-text") == "".join(REASONING)
    assert page.inner_text(".msg.assistant .body") == "It is sunny."

    send(page, "tools")
    wait_replies(page, 2)
    reply = page.locator(".msg.assistant").nth(1)
    blocks = reply.locator("details.tool-call")
    assert blocks.locator("summary").all_inner_texts() == ["Tool call: get_weather", "Tool call: get_time"]
    for index, call in enumerate(TOOL_CALLS):
        blocks.nth(index).locator("summary").click()
        shown = json.loads(blocks.nth(index).locator("code").inner_text())
        assert shown == json.loads(call["function"]["arguments"])
    assert not reply.locator("details.reasoning .reasoning-text").is_visible()  # collapsed
    assert reply.locator(".note").count() == 0  # ending in tool calls is not "ended early"
    stored_reply = current_messages(page)[-1]
    assert stored_reply["toolCalls"] == TOOL_CALLS
    assert stored_reply["reasoning"] == "Two tools, then answer."
    assert stored_reply["content"] == ""
    screenshot(page, "web-tool-calls.png")
    page.context.close()


def test_time_to_first_token_and_rate_are_shown_small_after_a_reply(
    browser: Browser, slow_server: str, page_errors: list[str]
) -> None:
    page = open_page(browser, slow_server, page_errors)
    send(page, "twenty four characters!!")  # 6 pieces of 4 characters, 50 ms apart
    wait_replies(page, 1)
    text = page.inner_text(".msg.assistant .stats")
    match = re.fullmatch(r"first token in (\d+\.\d\d) s · ([\d,]+) characters/s", text)
    assert match, text
    stats = current_messages(page)[1]["stats"]
    assert float(match[1]) == pytest.approx(stats["firstMs"] / 1000, abs=0.006)
    rate = stats["chars"] / ((stats["totalMs"] - stats["firstMs"]) / 1000)
    assert int(match[2].replace(",", "")) == round(rate)
    assert (stats["chars"], stats["pieces"]) == (24, 6)  # 4 characters a piece
    font = page.evaluate(
        """() => [getComputedStyle(document.querySelector('.stats')).fontSize,
                  getComputedStyle(document.querySelector('.msg.assistant .body')).fontSize]"""
    )
    assert float(font[0].removesuffix("px")) < float(font[1].removesuffix("px"))  # small
    page.select_option("#language", "ru")
    assert re.fullmatch(r"первый токен через \d+,\d\d с · \d+ симв\./с", page.inner_text(".stats"))
    screenshot(page, "web-stats.png")
    page.context.close()


def test_a_conversation_saved_by_getgpt_chat_imports_into_the_page_with_its_system_prompt(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str], tmp_path: Path
) -> None:
    from getgpt.cli.conversation import Conversation

    script, url = scripted
    conversation = Conversation(system="be brief", params={})
    conversation.turns += [
        {"role": "user", "content": "Как дела?"},
        {"role": "assistant", "content": "Хорошо", "stopped": True},
    ]
    saved = tmp_path / "from-cli.json"
    saved.write_text(conversation.as_json(), encoding="utf-8")
    page = open_page(browser, url, page_errors)
    # A system prompt in the settings is for new conversations: the imported one keeps its own.
    open_settings(page)
    page.fill("#system", "be verbose")
    close_settings(page)
    page.set_input_files("#import-file", str(saved))
    page.wait_for_function("() => document.querySelectorAll('.msg').length === 2")
    assert current_messages(page) == conversation.turns
    assert page.inner_text("#title") == "Как дела?"
    assert page.inner_text(".note.stopped") == "Stopped."
    system = page.locator(".system-prompt")
    assert system.locator("summary").inner_text() == "System prompt"
    system.locator("summary").click()
    assert system.locator(".system-text").inner_text() == "be brief"

    send(page, "И ещё?")
    wait_replies(page, 2)
    sent = json.loads(script.requests[-1])["messages"]
    assert sent[0] == {"role": "system", "content": "be brief"}
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]

    # Exported again, it still carries the prompt where getgpt chat puts it.
    with page.expect_download() as download:
        page.click("#export-json")
    document = json.loads(download.value.path().read_text(encoding="utf-8"))
    assert document["system"] == "be brief"
    with page.expect_download() as download_md:
        page.click("#export-md")
    assert "> **System prompt**\n>\n> be brief\n" in download_md.value.path().read_text(encoding="utf-8")

    # A new conversation starts with the settings' prompt, and keeps it.
    page.click("#new-chat")
    send(page, "hello")
    wait_replies(page, 1)
    assert json.loads(script.requests[-1])["messages"][0] == {"role": "system", "content": "be verbose"}
    assert stored(page)["conversations"][-1]["system"] == "be verbose"
    page.context.close()
