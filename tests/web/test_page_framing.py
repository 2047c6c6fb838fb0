"""A page on another site cannot frame the chat page (Content-Security-Policy frame-ancestors)."""

from __future__ import annotations

from playwright.sync_api import Browser
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from getgpt.server import ServerConfig, create_app

from ..support.servers import serve


def test_another_site_cannot_show_the_page_in_a_frame(browser: Browser) -> None:
    with serve(create_app(ServerConfig())) as chat_url:
        # "localhost" and "127.0.0.1" are different origins: the framing page is another site.
        framed = chat_url.replace("127.0.0.1", "localhost")

        async def framing(request: Request) -> HTMLResponse:
            return HTMLResponse(f'<!doctype html><title>framer</title><iframe src="{framed}"></iframe>')

        with serve(Starlette(routes=[Route("/", framing)])) as framer_url:
            page = browser.new_page()
            refused = "frame-ancestors 'none'"
            with page.expect_console_message(lambda message: refused in message.text, timeout=10_000):
                page.goto(framer_url)
            page.wait_for_load_state("load")
            frame = page.frames[1]
            # Chromium shows its error page in place of a refused frame; the chat page never ran.
            assert frame.url != framed
            assert frame.evaluate("() => typeof window.getgpt") == "undefined"
            page.close()
