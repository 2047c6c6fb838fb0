"""How the page looks and fits, at each size, in each language and colour scheme: a header that
leaves the title its room on a phone, a composer whose placeholder fits and whose keyboard hint is
for keyboards, icon buttons that are named, a theme switch that is remembered, a sidebar whose
titles are plain words and whose list the settings do not squeeze, a resizable sidebar, the echo
backend said, and not one console message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from starlette.applications import Starlette

from getgpt.server import ServerConfig, create_app

from ..support.browser import (
    DESKTOP,
    PHONE,
    SIZES,
    STORE_KEY,
    VIEW_IDS,
    VIEWS,
    Scripted,
    close_settings,
    open_menu,
    open_page,
    open_settings,
    open_view,
    send,
    wait_replies,
)
from ..support.servers import serve

# What each language calls things, for the checks that read the page's words.
WORDS = {
    "en-US": {
        "title": "Hello world, how are you",
        "echo": "Offline echo: replies repeat your message.",
        "new chat": "New chat",
    },
    "ru-RU": {
        "title": "Привет мир, как дела",
        "echo": "Офлайн-эхо: ответы повторяют ваше сообщение.",
        "new chat": "Новый чат",
    },
}
# The root's background in each scheme (--bg in style.css).
BACKGROUND = {"light": "rgb(255, 255, 255)", "dark": "rgb(33, 33, 33)"}


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    """getgpt serve's own app with the echo backend, at full speed."""
    with serve(create_app(ServerConfig(backend="echo"))) as url:
        yield url


def background(page: Page) -> str:
    color: str = page.evaluate("() => getComputedStyle(document.documentElement).backgroundColor")
    return color


def choose_theme(page: Page, theme: str) -> None:
    open_menu(page)
    page.click(f"label:has(input[name=theme][value={theme}])")


def fits(page: Page, selector: str) -> bool:
    """The element's text is shown whole: nothing cut or hidden behind an ellipsis."""
    whole: bool = page.eval_on_selector(selector, "el => el.scrollWidth <= el.clientWidth")
    return whole


def unnamed_buttons(page: Page) -> list[str]:
    """Visible buttons that a screen reader could not name (no label, no text)."""
    names: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('button')]
                  .filter(b => b.checkVisibility({visibilityProperty: true}))
                  .filter(b => !(b.getAttribute('aria-label') || b.textContent).trim())
                  .map(b => b.outerHTML.slice(0, 80))"""
    )
    return names


@pytest.mark.parametrize("view", VIEWS, ids=VIEW_IDS)
def test_the_page_fits_and_speaks_in_every_view(
    browser: Browser, echo_server: str, page_errors: list[str], view: tuple[str, str, str]
) -> None:
    size, locale, scheme = view
    words = WORDS[locale]
    console: list[str] = []
    page = open_view(browser, echo_server, page_errors, view, console)
    assert background(page) == BACKGROUND[scheme]  # "system" follows the browser's scheme

    # The echo backend is said, in the page's language, before anything is sent.
    page.wait_for_selector("#backend-note", state="visible")
    assert page.inner_text("#backend-note") == words["echo"]

    # The composer: its placeholder fits the one-row box; the keyboard hint is for keyboards.
    placeholder, room = page.evaluate(
        """() => { const el = document.getElementById('input'), s = getComputedStyle(el);
                   const context = document.createElement('canvas').getContext('2d');
                   context.font = s.font;
                   return [context.measureText(el.placeholder).width,
                           el.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight)]; }"""
    )
    assert placeholder <= room, (placeholder, room)
    assert page.is_visible("#composer-hint") is (size == "desktop")

    # The header leaves a short title whole, on a phone too; its buttons are icons with names.
    send(page, words["title"])
    wait_replies(page, 1)
    assert page.inner_text("#title") == words["title"]
    assert fits(page, "#title")
    assert fits(page, ".topbar")
    # On a phone: the menu and a new chat, as icons; the rest is in the menu.
    assert page.locator(".topbar button:visible").all_inner_texts() == ([] if size == "desktop" else ["", ""])
    assert unnamed_buttons(page) == []

    # The theme switch beats the browser's scheme, and is remembered.
    other = "light" if scheme == "dark" else "dark"
    choose_theme(page, other)
    assert background(page) == BACKGROUND[other]
    page.reload()
    page.wait_for_function("() => window.getgpt !== undefined")
    assert background(page) == BACKGROUND[other]
    assert page.is_checked(f"input[name=theme][value={other}]")
    choose_theme(page, "system")
    assert background(page) == BACKGROUND[scheme]
    assert page.evaluate("() => localStorage.getItem('getgpt.theme.v1')") is None

    # The settings and the menu have named buttons too, and nothing was written to the console.
    open_settings(page)
    assert unnamed_buttons(page) == []
    close_settings(page)
    assert console == []
    page.context.close()


def conversations(titles: list[str]) -> dict[str, Any]:
    """What the page keeps in localStorage for conversations whose first messages are ``titles``,
    the first of them the most recent."""
    return {
        "conversations": [
            {
                "id": f"c{n}",
                "createdAt": 1_700_000_000_000 - n,
                "updatedAt": 1_700_000_000_000 - n,
                "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": text}],
            }
            for n, text in enumerate(titles)
        ],
        "currentId": "c0",
    }


def with_stored(page: Page, data: dict[str, Any]) -> None:
    page.evaluate("([key, data]) => localStorage.setItem(key, data)", [STORE_KEY, json.dumps(data)])
    page.reload()
    page.wait_for_function("() => window.getgpt !== undefined")


def visible_titles(page: Page) -> list[str]:
    """The titles in the list that are wholly inside its visible box."""
    shown: list[str] = page.evaluate(
        """() => { const box = document.querySelector('.history').getBoundingClientRect();
                   return [...document.querySelectorAll('.conversation-open')]
                     .filter(b => { const r = b.getBoundingClientRect();
                                    return r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5; })
                     .map(b => b.textContent); }"""
    )
    return shown


TWELVE = [
    *(f"Conversation number {n}" for n in range(12, 2, -1)),
    "**Bold** words and `code` in [a link](https://example.com)",
    "```python\nprint('hi')\n```",
]


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_twelve_clean_titles_fit_and_the_settings_do_not_squeeze_them(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str], size: str
) -> None:
    page = open_page(browser, scripted[1], page_errors, **SIZES[size])
    with_stored(page, conversations(TWELVE))
    open_menu(page)
    clean = [*TWELVE[:10], "Bold words and code in a link", "print('hi')"]
    assert page.locator(".conversation-open").all_inner_texts() == clean  # Markdown's marks gone
    assert visible_titles(page) == clean  # all twelve in view, none behind a scroll
    for n in range(12):
        assert fits(page, f".conversation >> nth={n} >> .conversation-open"), clean[n]
    before = page.eval_on_selector(".history", "el => el.getBoundingClientRect().height")
    open_settings(page)
    # The settings are a dialog over the page: the list keeps its height and its twelve titles.
    assert page.eval_on_selector(".history", "el => el.getBoundingClientRect().height") == before
    if size == "desktop":
        assert visible_titles(page) == clean
    close_settings(page)
    open_menu(page)
    assert visible_titles(page) == clean
    page.context.close()


def sidebar_width(page: Page) -> float:
    width: float = page.eval_on_selector("#sidebar", "el => el.getBoundingClientRect().width")
    return width


def test_the_sidebar_is_resized_by_dragging_or_the_keyboard_and_keeps_its_width(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    page = open_page(browser, scripted[1], page_errors, **DESKTOP)
    assert sidebar_width(page) == 300
    assert page.get_attribute("#resizer", "aria-valuenow") == "300"
    handle = page.locator("#resizer").bounding_box()
    assert handle is not None
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + 300
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y, steps=4)
    page.mouse.move(x + 100, y, steps=4)
    page.mouse.up()
    assert sidebar_width(page) == pytest.approx(400, abs=1)
    assert page.get_attribute("#resizer", "aria-valuenow") == str(round(sidebar_width(page)))
    page.reload()
    page.wait_for_function("() => window.getgpt !== undefined")
    assert sidebar_width(page) == pytest.approx(400, abs=1)  # remembered, and set before the first paint

    page.focus("#resizer")
    page.keyboard.press("ArrowLeft")
    assert sidebar_width(page) == pytest.approx(384, abs=1)
    page.keyboard.press("End")
    assert sidebar_width(page) == 480  # no wider than that
    page.mouse.move(x + 180, y)
    page.mouse.down()
    page.mouse.move(x - 300, y, steps=5)
    page.mouse.up()
    assert sidebar_width(page) == 220  # nor narrower than that
    page.keyboard.press("Home")
    assert page.get_attribute("#resizer", "aria-valuenow") == "220"
    page.context.close()

    # On a phone the sidebar is the menu, as wide as the phone allows: no handle.
    page = open_page(browser, scripted[1], page_errors, **PHONE)
    open_menu(page)
    assert not page.is_visible("#resizer")
    page.context.close()


@pytest.mark.parametrize(("backend", "said"), [("echo", True), ("openai", False), (None, False)])
def test_the_backend_is_said_only_when_it_is_the_echo(
    browser: Browser, page_errors: list[str], backend: str | None, said: bool
) -> None:
    with serve(Starlette(routes=Scripted(backend=backend).routes())) as url:
        page = open_page(browser, url, page_errors)
        send(page, "hi")  # by then /healthz has long answered
        wait_replies(page, 1)
        page.wait_for_function("() => performance.getEntriesByName(new URL('healthz', location).href).length")
        assert page.is_visible("#backend-note") is said
        page.context.close()
