"""Accessibility: an axe-core audit in Chromium finds nothing (no violation of any impact) in every
state of the page, in both languages, both colour schemes (one page audited in both) and both
sizes; every control is reached and used with the keyboard alone, and shows where the keyboard is."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page
from starlette.applications import Starlette

from ..support.browser import (
    AXE,
    PAGE_VIEW_IDS,
    PAGE_VIEWS,
    Scripted,
    close_settings,
    current_messages,
    each_scheme,
    hold_undo,
    open_page,
    open_settings,
    open_view,
    screenshot,
    send,
    violations,
    wait_replies,
)
from ..support.servers import serve


@pytest.fixture(scope="module")
def echo_named() -> Iterator[str]:
    """The scripted server, naming "echo" as its backend so the page's note about it shows too."""
    with serve(Starlette(routes=Scripted(backend="echo").routes())) as url:
        yield url


def fill_conversation(page: Page) -> None:
    """A conversation showing every kind of block: Markdown, reasoning, tool calls, an error, a note,
    and a reply asked for twice (its versions' pager)."""
    for count, text in enumerate(
        ("Hello **there**, `code` and [a link](https://example.com)", "think", "tools", "cut", "limit"), 1
    ):
        send(page, text)
        wait_replies(page, count)
    page.locator(".msg.assistant .regenerate").last.click()
    wait_replies(page, 5)


@pytest.mark.parametrize("view", PAGE_VIEWS, ids=PAGE_VIEW_IDS)
def test_axe_finds_no_violation_in_any_state(
    browser: Browser, echo_named: str, page_errors: list[str], view: tuple[str, str, str]
) -> None:
    assert AXE.is_file(), "axe-core is missing: run `npm ci` (.ci/run does)"
    # The audit's script is injected past the page's Content-Security-Policy, which allows only its own.
    size, locale, opened = view
    page = open_view(browser, echo_named, page_errors, view, bypass_csp=True)

    def audit(state: str, shot: str = "") -> None:
        """axe's findings in each colour scheme (one page for both: each_scheme): none."""
        found = {}
        for scheme in each_scheme(page, opened):
            found[scheme] = violations(page)
            if shot:
                screenshot(page, f"web-axe-{size}-{locale[:2]}-{scheme}-{shot}.png")
        assert found == {"light": [], "dark": []}, state

    page.wait_for_selector("#backend-note", state="visible")  # once the page has asked the server
    audit("the empty page")
    fill_conversation(page)
    assert page.locator(".pager").count() == 1
    page.evaluate("() => document.querySelectorAll('.msg details').forEach(d => d.open = true)")
    audit("a conversation with every kind of block", "conversation")
    if size == "phone":
        page.click("#open-sidebar")
        page.wait_for_selector("#new-chat", state="visible")
        audit("the menu")
        page.keyboard.press("Escape")
    open_settings(page)
    page.fill("#temperature", "3")
    assert page.is_visible("#temperature-error")
    audit("the settings, a field in error", "settings")
    close_settings(page)
    send(page, "not sent")
    page.wait_for_selector("#banner-action", state="visible")
    audit("a message not sent for a setting")
    page.locator(".msg.user .edit").first.click()
    audit("editing a message")
    page.keyboard.press("Escape")
    if size == "phone":
        page.click("#open-sidebar")
        page.wait_for_selector("#new-chat", state="visible")
    hold_undo(page)
    page.click(".conversation-delete")
    page.wait_for_selector("#toast", state="visible")
    audit("a deletion that can be undone")
    assert page.is_visible("#toast")  # what was audited
    page.context.close()


# A name for an element: its id, else its tag, classes and accessible name (its aria-label, else its
# text), or for a radio button its group and value.
NAME = """el => el.id ? '#' + el.id
                : el.type === 'radio' ? 'radio:' + el.name + '=' + el.value
                : [el.tagName.toLowerCase(), ...el.classList].join('.') + ':'
                  + (el.getAttribute('aria-label') || el.textContent.trim())"""


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

    # Round the whole page from Send back to Send: every visible control gets the focus on the way
    # (of a group of radio buttons, the checked one: the arrow keys move within the group).
    assert focused(page) == "#input"
    page.keyboard.press("Tab")
    assert focused(page) == "#send"
    stops = tab_until(page, "#send")
    controls = page.evaluate(
        f"""() => [...document.querySelectorAll(
                      'button, input, select, textarea, summary, a[href], [tabindex="0"]')]
                   .filter(el => el.checkVisibility({{visibilityProperty: true}}) && !el.disabled
                                 && !el.closest('dialog:not([open])')
                                 && !(el.type === 'radio' && !el.checked))
                   .map({NAME})"""
    )
    assert set(controls) <= set(stops), set(controls) - set(stops)
    assert "radio:theme=system" in stops

    # The settings open with Enter; a key is typed and remembered with Space; Escape closes them.
    tab_until(page, "#open-settings", key="Shift+Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.getElementById('settings').open") is True
    assert focused(page) == "#model"
    tab_until(page, "#api-key")
    page.keyboard.type("k-123")
    page.keyboard.press("Tab")
    assert focused(page) == "#remember-key"
    page.keyboard.press("Space")
    assert page.evaluate("() => localStorage.getItem('getgpt.apiKey.v1')") == "k-123"
    page.keyboard.press("Escape")
    assert page.evaluate("() => document.getElementById('settings').open") is False
    assert focused(page) == "#open-settings"

    # The language switch, with the arrow keys; the theme, with the arrow keys in its group.
    tab_until(page, "#language")
    page.keyboard.press("ArrowDown")
    assert page.get_attribute("#send", "aria-label") == "Отправить"
    page.keyboard.press("ArrowUp")
    assert page.get_attribute("#send", "aria-label") == "Send"
    page.keyboard.press("Tab")
    assert focused(page) == "radio:theme=system"
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.documentElement.dataset.theme") is None

    # Regenerate and edit, from the keyboard.
    tab_until(page, "button.icon-btn.regenerate:Regenerate")
    page.keyboard.press("Enter")
    wait_replies(page, 1)
    assert len(script.requests) == asked + 2
    assert focused(page) == "#input"
    tab_until(page, "button.icon-btn.edit:Edit", key="Shift+Tab")
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

    def unseen_on_the_way(presses: int) -> list[str]:
        """Controls whose focus shows no outline, on them or on the box that shows it for them (a
        hidden radio button's label, the composer around the message box)."""
        unseen = []
        for _ in range(presses):
            page.keyboard.press("Tab")
            style = page.evaluate(
                """() => { const el = document.activeElement;
                           if (el === document.body) return null;  // past the last control
                           const shown = el.closest('label:has(input[type=radio]), .composer') || el;
                           const s = getComputedStyle(shown);
                           return [el.id || el.getAttribute('aria-label') || el.textContent.trim(),
                                   s.outlineStyle, s.outlineWidth]; }"""
            )
            if style is not None and (style[1] == "none" or style[2] == "0px"):
                unseen.append(style[0])
        return unseen

    assert unseen_on_the_way(30) == []
    open_settings(page)
    assert unseen_on_the_way(12) == []  # the settings' own controls
    page.context.close()
