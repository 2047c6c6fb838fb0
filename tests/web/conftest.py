"""The browser, the servers the page talks to, and a page for each test; every test here runs on
the browser's thread (see tests/support/browser.py: why, and what a new fixture must do)."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page
from starlette.applications import Starlette

from getgpt.server import ServerConfig, create_app

from ..support.browser import Scripted, launched_chromium, on_browser_thread, open_page
from ..support.servers import serve


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[object]:
    """Each test here runs on the browser's thread, where its Playwright objects belong."""
    test = pyfuncitem.obj
    pyfuncitem.obj = functools.partial(on_browser_thread, test)
    try:
        return (yield)
    finally:
        pyfuncitem.obj = test


# One browser for each process that runs page tests (each xdist worker that takes one of their
# GROUPS starts its own), shared by every module there: playwright's sync API cannot run twice at
# once in one thread, so no test module starts one of its own.
@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[Scripted, str]]:
    """The scripted server: answers chosen by the last message; /v1/models answers 404."""
    script = Scripted()
    with serve(Starlette(routes=script.routes())) as url:
        yield script, url


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The project's server with the echo backend, slowed enough that streaming is visible: a
    reply comes in pieces 10 ms apart. Pieces of 16 characters, not the default 4: the longest
    message sent here (test_phone_width_layout's 366 characters) streamed for 0.9 s, now 0.23 s."""
    with serve(create_app(ServerConfig(backend="echo", echo_delay=0.01, echo_piece_chars=16))) as url:
        yield url


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    """A long echo takes seconds here, long enough to press Stop in the middle."""
    with serve(create_app(ServerConfig(backend="echo", echo_delay=0.05))) as url:
        yield url


@pytest.fixture
def page_errors() -> Iterator[list[str]]:
    """Uncaught exceptions in the page: every test ends without any."""
    errors: list[str] = []
    yield errors
    assert errors == []


@pytest.fixture
def page(browser: Browser, server: str, page_errors: list[str]) -> Iterator[Page]:
    page = on_browser_thread(open_page, browser, server, page_errors)
    yield page
    on_browser_thread(page.context.close)


@pytest.fixture(scope="module")
def units(browser: Browser, scripted: tuple[Scripted, str]) -> Iterator[Page]:
    """One page for the unit checks of the page's modules."""
    errors: list[str] = []
    page = on_browser_thread(open_page, browser, scripted[1], errors)
    yield page
    on_browser_thread(page.context.close)
    assert errors == []
