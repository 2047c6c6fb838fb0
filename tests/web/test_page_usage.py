"""The page shows a key's own usage and budget under the API key field, from a server with a key
store (``GET /v1/usage``), in both languages; nothing without a store or without a key."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page

from getgpt.server import ServerConfig, create_app

from ..support.browser import open_page, screenshot, send, wait_replies
from ..support.keystore import make_key
from ..support.servers import serve


def _use_key(page: Page, key: str) -> None:
    page.evaluate("() => { document.getElementById('settings').open = true; }")
    page.fill("#api-key", key)
    page.dispatch_event("#api-key", "change")


def test_the_page_shows_the_keys_usage_and_budget_under_its_field(
    browser: Browser, tmp_path: Path, page_errors: list[str]
) -> None:
    target = str(tmp_path / "getgpt.db")
    _, key = make_key(target, "page", budget_tokens=5000, budget_period="month")
    with serve(create_app(ServerConfig(backend="echo", db=target))) as url:
        page = open_page(browser, url, page_errors)
        assert page.is_hidden("#key-usage")  # no key yet: nothing to show
        _use_key(page, key)
        page.wait_for_function("() => !document.getElementById('key-usage').hidden")
        assert page.inner_text("#key-usage") == (
            "This key, last 30 days: requests 0, tokens 0. Budget: 0 of 5,000 tokens this month (UTC)."
        )
        send(page, "count this one")
        wait_replies(page, 1)
        page.wait_for_function(
            "() => document.getElementById('key-usage').textContent.includes('requests 1,')"
        )
        shown = page.inner_text("#key-usage")
        tokens = int(shown.split("tokens ")[1].split(".")[0])
        assert tokens > 0 and f"Budget: {tokens} of 5,000 tokens this month (UTC)." in shown
        screenshot(page, "web-key-usage.png")
        page.select_option("#language", "ru")
        assert page.inner_text("#key-usage").startswith("Этот ключ за 30 дней: запросов — 1")
        _use_key(page, "gg-000000000000-" + "A" * 43)  # not a key of this store: nothing shown
        page.wait_for_function("() => document.getElementById('key-usage').hidden")
    assert page_errors == []


def test_the_page_shows_no_usage_from_a_server_without_a_store(
    browser: Browser, page_errors: list[str]
) -> None:
    with serve(create_app(ServerConfig(backend="echo", api_keys=("plain-key",)))) as url:
        page = open_page(browser, url, page_errors)
        _use_key(page, "plain-key")
        send(page, "hello")
        wait_replies(page, 1)
        assert page.is_hidden("#key-usage")
    assert page_errors == []
