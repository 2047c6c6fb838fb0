"""Driving the web page in a real headless Chromium: opening it, sending, reading what it keeps,
a scripted server for what the real one never does on demand, and the axe-core audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from getgpt.protocol import envelope
from getgpt.protocol.request import parse_request

from .scripted import chunk, reasoning_stream, stream_of, tool_call_stream

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "getgpt" / "web"
ARTIFACTS = ROOT / "artifacts"
# Installed by `npm ci` (package.json); .ci/run does it before the tests.
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
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
STORE_KEY = "getgpt.conversations.v1"
WAIT_MS = 15_000


class Scripted:
    """Serves the page; the last user message picks the answer; keeps every decrypted request.

    ``key``, when set, is the API key the chat endpoint demands (401 otherwise, as getgpt serve
    answers); ``models`` is what ``/v1/models`` lists (404 when empty).
    """

    def __init__(self, models: tuple[str, ...] = (), key: str | None = None) -> None:
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []
        self.models = models
        self.key = key

    async def chat(self, request: Request) -> Response:
        self.authorizations.append(request.headers.get("authorization"))
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            error = {"error": {"message": "invalid API key", "type": "invalid_request_error", "code": "auth"}}
            return JSONResponse(error, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        text = envelope.decrypt((await request.json())["signature"])
        self.requests.append(text)
        last = parse_request(text).messages[-1].content
        if last == "cut":
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

    def routes(self) -> list[Route | Mount]:
        return [
            *page_routes(),
            Route("/api/chat/stream", self.chat, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
        ]


def page_routes() -> list[Route | Mount]:
    async def index(request: Request) -> FileResponse:
        return FileResponse(WEB / "index.html")

    return [Route("/", index), Mount("/static", StaticFiles(directory=WEB))]


def open_page(browser: Browser, url: str, errors: list[str], **context: Any) -> Page:
    """A fresh context (its own storage) with the page loaded and its script running."""
    context.setdefault("viewport", {"width": 1200, "height": 800})
    context.setdefault("locale", "en-US")
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("() => window.getgpt !== undefined")
    return page


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


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


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it stands, each with its nodes."""
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
        if violation["impact"] in ("serious", "critical")
    ]
