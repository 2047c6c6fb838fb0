"""Driving the web page in a real headless Chromium: opening it, sending, reading what it keeps,
a scripted server for what the real one never does on demand, and the axe-core audit.

**The browser's thread.** Playwright's sync API runs its own asyncio loop inside the thread that
starts it and leaves that loop marked as running there while the browser lives: any
``asyncio.run`` later in that thread fails ("cannot be called from a running event loop"). So
the browser lives on a thread of its own (:func:`on_browser_thread`) for the whole run, and the
rest of the suite, in the main thread, never sees its loop -- whatever order the tests run in.
Every Playwright object is then used from that thread only:

- every test under ``tests/web`` runs there by itself (``tests/web/conftest.py`` sees to it);
- a fixture that drives the browser does so through ``on_browser_thread(function, *args)``, as
  ``page`` and ``units`` in that conftest do (a Playwright call from another thread fails with
  greenlet's "cannot switch to a different thread").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import Browser, Page, sync_playwright
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from getgpt.protocol import envelope
from getgpt.protocol.request import parse_request

from .command import locale_env
from .scripted import chunk, reasoning_stream, stream_of, tool_call_stream

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "getgpt" / "web"
ARTIFACTS = ROOT / "artifacts"
# Installed by `npm ci` (package.json); .ci/run does it before the tests.
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# Debian's chromium-headless-shell: Chromium's headless-only build, without the full browser's UI
# (the `--headless` of /usr/bin/chromium is that whole browser, drawing offscreen). It renders the
# page with the same engine and fonts: every test and all 44 baselines pass on either. Measured on
# this 2-core machine, `pytest tests/web -n 3`: 142 s of CPU in 75 s with /usr/bin/chromium, 70 s
# in 41 s with the headless shell -- the full browser was 40 % of the whole suite's CPU.
CHROMIUM = "/usr/bin/chromium-headless-shell"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A name for loopback that is not "potentially trustworthy": a page there is not a secure context.
    "--host-resolver-rules=MAP insecure.test 127.0.0.1",
]
# Chromium writes a download's non-ASCII name only when its own locale can: under a LANG whose
# locale is not generated (LANG=ru_RU.UTF-8 on a machine with only the C locales), glibc falls back
# to ASCII and "Привет-мир.json" became "download". The browser runs in C.UTF-8, which every glibc
# has; the page's language comes from each context's `locale`, never from this.
CHROMIUM_ENV = locale_env()
STORE_KEY = "getgpt.conversations.v1"
WAIT_MS = 15_000
# The two sizes the page is tried at: a laptop, and a phone (with touch, as phones have).
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
SIZES = {"desktop": DESKTOP, "phone": PHONE}
# Every way the page is seen: each size, each language, each colour scheme.
VIEWS = [
    (size, locale, scheme) for size in SIZES for locale in ("en-US", "ru-RU") for scheme in ("light", "dark")
]
VIEW_IDS = [f"{size}-{locale[:2]}-{scheme}" for size, locale, scheme in VIEWS]
# The same views, a page for each size and language, seen in both colour schemes (each_scheme):
# English opened in the light one, Russian in the dark one, so a page is opened in either.
PAGE_VIEWS = [
    (size, locale, "light" if locale == "en-US" else "dark")
    for size in SIZES
    for locale in ("en-US", "ru-RU")
]
PAGE_VIEW_IDS = [f"{size}-{locale[:2]}" for size, locale, _ in PAGE_VIEWS]


def open_view(
    browser: Browser,
    url: str,
    errors: list[str],
    view: tuple[str, str, str],
    console: list[str] | None = None,
    **context: Any,
) -> Page:
    """The page at one of VIEWS: its size, its browser language and its colour scheme."""
    size, locale, scheme = view
    return open_page(
        browser, url, errors, console, **SIZES[size], locale=locale, color_scheme=scheme, **context
    )


def each_scheme(page: Page, opened: str) -> Iterator[str]:
    """The page in each colour scheme in turn, the one it was opened in first, and then in that one
    again. Its colours follow the browser's scheme in its CSS alone (prefers-color-scheme; no
    script reads it, nothing fades between them), so a state built once is seen as it would be
    in a page opened in either -- the state is not built twice (the baselines, taken from pages
    opened in each scheme, agree)."""
    other = "dark" if opened == "light" else "light"
    yield opened
    page.emulate_media(color_scheme=other)
    yield other
    page.emulate_media(color_scheme=opened)


def open_menu(page: Page) -> None:
    """On a phone, open the menu (the sidebar); on a wider screen it is always there."""
    if page.is_visible("#open-sidebar") and page.get_attribute("#sidebar", "class") != "sidebar open":
        page.click("#open-sidebar")
    page.wait_for_selector("#new-chat", state="visible")


# The most the scripted server's "model" writes; more is refused (see Scripted).
MAX_TOKENS = 4096

_T = TypeVar("_T")
# One worker thread, kept for the whole run: Playwright's objects belong to the thread that made them.
_BROWSER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser")


def on_browser_thread(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``function(*args, **kwargs)`` run on the browser's thread; its result, or its exception."""
    return _BROWSER_THREAD.submit(function, *args, **kwargs).result()


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, started and closed on the browser's thread."""

    def start() -> tuple[Any, Browser]:
        manager = sync_playwright()
        playwright = manager.__enter__()
        try:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, env=CHROMIUM_ENV
            )
            return manager, chromium
        except BaseException:
            manager.__exit__(None, None, None)
            raise

    def stop(manager: Any, chromium: Browser) -> None:
        try:
            chromium.close()
        finally:
            manager.__exit__(None, None, None)

    manager, chromium = on_browser_thread(start)
    try:
        yield chromium
    finally:
        on_browser_thread(stop, manager, chromium)


class Scripted:
    """Serves the page; the last user message picks the answer; keeps every decrypted request.

    ``key``, when set, is the API key the chat endpoint demands (401 otherwise, as getgpt serve
    answers); ``models`` is what ``/v1/models`` lists (404 when empty); ``backend``, when set, is
    what ``/healthz`` names as the backend (404 otherwise). "again" is answered "take 1", "take 2",
    ... one more each time; a ``max_tokens`` over 4096 is refused with 400 naming it, as OpenAI does.
    """

    def __init__(
        self, models: tuple[str, ...] = (), key: str | None = None, backend: str | None = None
    ) -> None:
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []
        self.models = models
        self.key = key
        self.backend = backend
        self.takes = 0

    async def chat(self, request: Request) -> Response:
        self.authorizations.append(request.headers.get("authorization"))
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            error = {"error": {"message": "invalid API key", "type": "invalid_request_error", "code": "auth"}}
            return JSONResponse(error, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        text = envelope.decrypt((await request.json())["signature"])
        self.requests.append(text)
        parsed = parse_request(text)
        last = parsed.messages[-1].content
        if parsed.max_tokens > MAX_TOKENS:
            error = {
                "error": {
                    "message": f"max_tokens is too large: {parsed.max_tokens}. This model supports at most "
                    f"{MAX_TOKENS} completion tokens.",
                    "type": "invalid_request_error",
                    "param": "max_tokens",
                    "code": None,
                }
            }
            return JSONResponse(error, status_code=400)
        if last == "again":
            self.takes += 1
            body = stream_of([f"take {self.takes}"])
        elif last == "cut":
            body = chunk() + chunk("partial ") + chunk("text")  # no finish_reason, no [DONE]
        elif last == "fail":
            error = {"error": {"message": "backend exploded", "type": "server_error", "code": "upstream"}}
            body = (
                chunk() + chunk("so far") + b"data: " + json.dumps(error).encode() + b"\n\ndata: [DONE]\n\n"
            )
        elif last == "limit":
            body = chunk() + chunk("truncated") + chunk(finish="length") + b"data: [DONE]\n\n"
        elif last == "crlf":
            body = stream_of(["über ", "😀 ", "done"]).replace(b"\n", b"\r\n")
        elif last == "think":
            body = reasoning_stream()
        elif last == "tools":
            body = tool_call_stream()
        else:
            body = stream_of([last])
        return Response(body, media_type="text/event-stream")

    async def list_models(self, request: Request) -> Response:
        if not self.models:
            return JSONResponse({"error": {"message": "no such route"}}, status_code=404)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "test"} for name in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(self, request: Request) -> Response:
        if self.backend is None:
            return JSONResponse({"error": {"message": "no such route"}}, status_code=404)
        return JSONResponse({"status": "ok", "active_slots": 0, "backend": self.backend})

    def routes(self) -> list[Route | Mount]:
        return [
            *page_routes(),
            Route("/api/chat/stream", self.chat, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
        ]


def page_routes() -> list[Route | Mount]:
    async def index(request: Request) -> FileResponse:
        return FileResponse(WEB / "index.html")

    return [Route("/", index), Mount("/static", StaticFiles(directory=WEB))]


def open_page(
    browser: Browser, url: str, errors: list[str], console: list[str] | None = None, **context: Any
) -> Page:
    """A fresh context (its own storage) with the page loaded and its script running; every message
    the page writes to the console from the first, when ``console`` is given, is kept there."""
    context.setdefault("viewport", DESKTOP["viewport"])
    context.setdefault("locale", "en-US")
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if console is not None:
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(url)
    page.wait_for_function("() => window.getgpt !== undefined")
    return page


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def open_settings(page: Page) -> None:
    """Open the settings dialog as a user would: on a phone, through the menu first."""
    open_menu(page)
    page.click("#open-settings")
    page.wait_for_selector("#settings[open]")


def close_settings(page: Page) -> None:
    """Close the settings dialog and return once the page has handled its ``close`` event (it
    reads and saves the settings, and clears a banner they fixed, there). The event comes after
    the dialog is hidden: a test that only waited for that once saw the banner still up (CI)."""
    # A listener added now runs after the page's own, added at load.
    page.evaluate(
        """() => {
          const settings = document.getElementById("settings");
          window.__settingsClosed = new Promise((resolve) =>
            settings.addEventListener("close", () => resolve(true), { once: true }));
        }"""
    )
    page.click("#settings-done")
    page.wait_for_selector("#settings", state="hidden")
    assert page.evaluate("() => window.__settingsClosed")


def send(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def wait_replies(page: Page, count: int) -> None:
    """Wait until `count` replies exist and none is still streaming."""
    page.wait_for_function(
        """n => document.querySelectorAll('.msg.assistant').length >= n
             && !document.querySelector('.msg.streaming')""",
        arg=count,
    )


def stored(page: Page) -> dict[str, Any]:
    data: dict[str, Any] = page.evaluate(f"() => JSON.parse(localStorage.getItem({STORE_KEY!r}))")
    return data


def current_messages(page: Page) -> list[dict[str, Any]]:
    data = stored(page)
    [conversation] = [c for c in data["conversations"] if c["id"] == data["currentId"]]
    messages: list[dict[str, Any]] = conversation["messages"]
    return messages


def hold_undo(page: Page) -> None:
    """A deletion's undo toast stays up until the test moves on (the page's ``timing.undoMs``).

    It goes after six seconds of the page's timers, and a loaded machine can take longer than that
    between the deletion and the look a test takes at it (an audit, a screenshot, a click on Undo):
    in a run with two Chromiums a test once missed its toast. The six seconds themselves are
    tested on a clock the test moves (test_page_actions.py).
    """
    page.evaluate("() => { window.getgpt.timing.undoMs = 3_600_000; }")


def settled(page: Page) -> None:
    """Until what appears has finished appearing (the toast slides in): every running animation
    that ends; one that repeats for ever (a spinner) is left running."""
    page.wait_for_function(
        "() => document.getAnimations().every(a => a.effect.getTiming().iterations === Infinity"
        " || a.playState !== 'running')"
    )


def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's findings of any impact on the page as it stands, each with its nodes.

    Audited once :func:`settled`: colours read halfway through a fade are not the ones a reader sees.
    """
    settled(page)
    # Injected once a page (its 650 KB parsed again for every audit cost ~0.2 s of Chromium's time).
    if not page.evaluate("() => typeof axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    results: dict[str, Any] = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "nodes": [node["target"] for node in violation["nodes"]],
        }
        for violation in results["violations"]
    ]
