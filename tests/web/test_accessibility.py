"""Accessibility: an axe-core audit in Chromium finds nothing serious or critical, in both languages
and both colour schemes; every control is reached and used with the keyboard alone."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from ..support.browser import (
    AXE,
    Scripted,
    current_messages,
    open_page,
    screenshot,
    send,
    serious_violations,
    wait_replies,
)


def fill_conversation(page: Page) -> None:
    """A conversation showing every kind of block: Markdown, reasoning, tool calls, an error, a note."""
    for count, text in enumerate(
        ("Hello **there**, `code` and [a link](https://example.com)", "think", "tools", "cut", "limit"), 1
    ):
        send(page, text)
        wait_replies(page, count)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("locale", ["en-US", "ru-RU"])
def test_axe_finds_no_serious_or_critical_violation(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str], locale: str, scheme: Any
) -> None:
    assert AXE.is_file(), "axe-core is missing: run `npm ci` (.ci/run does)"
    # The audit's script is injected past the page's Content-Security-Policy, which allows only its own.
    page = open_page(browser, scripted[1], page_errors, locale=locale, color_scheme=scheme, bypass_csp=True)
    name = f"{locale[:2]}-{scheme}"
    assert serious_violations(page) == [], "the empty page"
    screenshot(page, f"web-axe-{name}-empty.png")
    fill_conversation(page)
    page.click("#settings summary")
    page.evaluate("() => document.querySelectorAll('.msg details').forEach(d => d.open = true)")
    assert serious_violations(page) == [], "a conversation with every kind of block, settings open"
    screenshot(page, f"web-axe-{name}-conversation.png")
    page.locator(".msg.user").first.get_by_role("button").click()  # the message editor
    assert serious_violations(page) == [], "editing a message"
    page.context.close()


def test_axe_finds_no_serious_violation_on_a_phone(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    page = open_page(
        browser,
        scripted[1],
        page_errors,
        viewport={"width": 375, "height": 740},
        is_mobile=True,
        has_touch=True,
        bypass_csp=True,
    )
    fill_conversation(page)
    assert serious_violations(page) == []
    page.click("#open-sidebar")
    page.wait_for_selector("#new-chat", state="visible")
    assert serious_violations(page) == []
    screenshot(page, "web-axe-phone-menu.png")
    page.context.close()


# A name for an element: its id, else its tag, classes and text.
NAME = """el => el.id ? '#' + el.id
                : [el.tagName.toLowerCase(), ...el.classList].join('.') + ':' + el.textContent.trim()"""


def focused(page: Page) -> str:
    """The name of the focused element ("body" when no control has the focus)."""
    name: str = page.evaluate(
        f"""() => {{ const el = document.activeElement;
                    return !el || el === document.body ? 'body' : ({NAME})(el); }}"""
    )
    return name


def tab_until(page: Page, target: str, limit: int = 60, key: str = "Tab") -> list[str]:
    """Press Tab (or ``key``) until ``target`` has the focus; return every stop on the way."""
    stops = []
    for _ in range(limit):
        page.keyboard.press(key)
        stops.append(focused(page))
        if stops[-1] == target:
            return stops
    raise AssertionError(f"{target} never got the focus; the stops were {stops}")


def test_keyboard_alone_reaches_every_control_and_chats(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    script, url = scripted
    page = open_page(browser, url, page_errors)
    asked = len(script.requests)
    assert focused(page) == "#input"  # the page opens ready to type
    page.keyboard.type("typed, never clicked")
    page.keyboard.press("Enter")
    wait_replies(page, 1)
    assert current_messages(page)[-1]["content"] == "typed, never clicked"
    assert len(script.requests) == asked + 1

    # Round the whole page from Send back to Send: every visible control gets the focus on the way.
    assert focused(page) == "#input"
    page.keyboard.press("Tab")
    assert focused(page) == "#send"
    stops = tab_until(page, "#send")
    controls = page.evaluate(
        f"""() => [...document.querySelectorAll('button, input, select, textarea, summary, a[href]')]
                   .filter(el => el.checkVisibility({{visibilityProperty: true}}) && !el.disabled)
                   .map({NAME})"""
    )
    assert set(controls) <= set(stops), set(controls) - set(stops)

    # Settings open with Enter on their summary; a key is typed and remembered with Space.
    tab_until(page, "summary:Settings", key="Shift+Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.getElementById('settings').open") is True
    tab_until(page, "#api-key")
    page.keyboard.type("k-123")
    page.keyboard.press("Tab")
    assert focused(page) == "#remember-key"
    page.keyboard.press("Space")
    assert page.evaluate("() => localStorage.getItem('getgpt.apiKey.v1')") == "k-123"

    # The language switch, with the arrow keys.
    tab_until(page, "#language")
    page.keyboard.press("ArrowDown")
    assert page.inner_text("#send") == "Отправить"
    page.keyboard.press("ArrowUp")
    assert page.inner_text("#send") == "Send"

    # Regenerate and edit, from the keyboard.
    tab_until(page, "button.btn.quiet.small.regenerate:Regenerate")
    page.keyboard.press("Enter")
    wait_replies(page, 1)
    assert len(script.requests) == asked + 2
    assert focused(page) == "#input"
    tab_until(page, "button.btn.quiet.small:Edit", key="Shift+Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.classList.contains('edit-input')") is True
    page.keyboard.press("End")
    page.keyboard.type(" again")
    page.keyboard.press("Enter")
    wait_replies(page, 1)
    assert current_messages(page)[-1]["content"] == "typed, never clicked again"
    assert page.locator(".conversation").count() == 2
    screenshot(page, "web-keyboard.png")
    page.context.close()


def test_focus_is_visible_on_every_control(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    page = open_page(browser, scripted[1], page_errors)
    send(page, "hello")
    wait_replies(page, 1)
    page.click("#settings summary")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    unseen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        style = page.evaluate(
            """() => { const el = document.activeElement;
                       if (el === document.body) return null;  // between the last control and the first
                       const s = getComputedStyle(el);
                       return [el.id || el.textContent.trim(), s.outlineStyle, s.outlineWidth]; }"""
        )
        if style is not None and (style[1] == "none" or style[2] == "0px"):
            unseen.append(style[0])
    assert unseen == []
    page.context.close()
