"""The page's look against reviewed screenshots (tests/support/visual.py): each state of the page, in
every view (both sizes, both languages, both colour schemes: one page shows a state in both), within
a tolerance that lets font antialiasing be and catches a layout that broke. The check itself is
shown to fail on a deliberate CSS break and to pass a change of antialiasing alone."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page

from getgpt.server import ServerConfig, create_app

from ..support.browser import (
    PAGE_VIEW_IDS,
    PAGE_VIEWS,
    VIEWS,
    close_settings,
    each_scheme,
    hold_undo,
    open_menu,
    open_settings,
    open_view,
    send,
    wait_replies,
)
from ..support.servers import serve
from ..support.visual import BASELINE, VISUAL, compare, screenshot_check, steady_screenshot

# What the conversation says, in each language: Markdown of every common kind, and a system prompt.
TEXTS = {
    "en-US": {
        "system": "Answer briefly.",
        "first": "Plan a **short** trip",
        "second": (
            "Here is the plan:\n\n1. Pack `light`\n2. Take the *early* train\n\n"
            "```python\nprint('ready')\n```\n\n| Day | Place |\n|---|---|\n| 1 | Kazan |\n\n> Enjoy it."
        ),
        "other": "Another chat",
    },
    "ru-RU": {
        "system": "Отвечай кратко.",
        "first": "Спланируй **короткую** поездку",
        "second": (
            "Вот план:\n\n1. Собрать `лёгкий` рюкзак\n2. Сесть на *ранний* поезд\n\n"
            "```python\nprint('готово')\n```\n\n| День | Место |\n|---|---|\n| 1 | Казань |\n\n"
            "> Хорошей поездки."
        ),
        "other": "Другой чат",
    },
}


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    with serve(create_app(ServerConfig(backend="echo"))) as url:
        yield url


def conversation_state(page: Page, locale: str) -> None:
    """A conversation with a system prompt, two turns, and the last reply asked for twice."""
    texts = TEXTS[locale]
    open_settings(page)
    page.fill("#system", texts["system"])
    close_settings(page)
    send(page, texts["first"])
    wait_replies(page, 1)
    send(page, texts["second"])
    wait_replies(page, 2)
    page.click(".regenerate")
    wait_replies(page, 2)
    page.wait_for_selector(".pager")


@pytest.mark.parametrize("view", PAGE_VIEWS, ids=PAGE_VIEW_IDS)
def test_every_state_looks_as_reviewed(
    browser: Browser, echo_server: str, page_errors: list[str], view: tuple[str, str, str]
) -> None:
    size, locale, opened = view
    page = open_view(browser, echo_server, page_errors, view)
    failures: list[str | None] = []

    def check(state: str) -> None:
        """The state against its baseline in each colour scheme (one page for both: each_scheme)."""
        for scheme in each_scheme(page, opened):
            failures.append(screenshot_check(page, f"{size}-{locale[:2]}-{scheme}-{state}"))

    page.wait_for_selector("#backend-note", state="visible")
    check("empty")

    conversation_state(page, locale)
    check("conversation")
    if size == "phone":
        open_menu(page)
        check("menu")
        page.keyboard.press("Escape")

    open_settings(page)
    page.fill("#temperature", "3")
    check("settings")
    close_settings(page)
    send(page, "…")
    page.wait_for_selector("#banner", state="visible")
    check("not-sent")
    open_settings(page)
    page.fill("#temperature", "")
    close_settings(page)

    page.click("#new-chat-top" if size == "phone" else "#new-chat")
    send(page, TEXTS[locale]["other"])
    wait_replies(page, 1)
    open_menu(page)
    hold_undo(page)
    page.click(".conversation-delete >> nth=0")
    page.wait_for_selector("#toast", state="visible")
    check("undo")
    page.context.close()
    problems = [failure for failure in failures if failure]
    assert len(failures) == (12 if size == "phone" else 10)
    assert problems == [], "\n".join(problems)


def test_the_visual_check_fails_on_a_layout_break_and_passes_antialiasing(
    browser: Browser, echo_server: str, page_errors: list[str]
) -> None:
    view = VIEWS[0]  # desktop, English, light
    baseline = Image.open(BASELINE / "desktop-en-light-conversation.png")
    page = open_view(browser, echo_server, page_errors, view, bypass_csp=True)  # for add_style_tag
    conversation_state(page, view[1])

    def shot() -> Image.Image:
        return Image.open(io.BytesIO(steady_screenshot(page)))

    same, _ = compare(shot(), baseline)
    assert same.passes, same
    # Text drawn otherwise at every glyph's edge, as another font rasteriser or hinting would: passes.
    for css in (
        "body { -webkit-text-stroke: 0.4px currentColor; }",
        "body { text-rendering: geometricPrecision; }",
    ):
        style = page.add_style_tag(content=css)
        noise, _ = compare(shot(), baseline)
        assert noise.pixels > 1000, (css, "changed too little to prove anything")
        assert noise.passes, (css, str(noise))
        style.evaluate("node => node.remove()")
    # Layout breaks, some small: the old 260 px sidebar, the user's bubbles on the left, the send
    # button gone, letters 0.3 px apart, messages 2 px further apart. Each fails, leaving its picture.
    for number, css in enumerate(
        (
            ":root { --sidebar-width: 260px; }",
            ".msg.user { align-items: flex-start; }",
            "#send { visibility: hidden; }",
            ".msg { letter-spacing: 0.3px; }",
            ".msg { margin-bottom: 24px; }",
        )
    ):
        style = page.add_style_tag(content=css)
        broken, picture = compare(shot(), baseline)
        assert not broken.passes, (css, str(broken))
        assert picture is not None
        VISUAL.mkdir(parents=True, exist_ok=True)
        picture.save(VISUAL / f"deliberate-break-{number}.diff.png")
        style.evaluate("node => node.remove()")
    page.context.close()
