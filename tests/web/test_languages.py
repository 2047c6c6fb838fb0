"""The page in English and Russian: chosen from the browser, switched and remembered, every word
in the catalogue in both languages, Russian plurals right, and no English left on the Russian page."""

# ruff: noqa: RUF001  (Russian text on purpose: Cyrillic letters that look Latin)

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from ..support.browser import (
    WEB,
    Scripted,
    hold_undo,
    open_page,
    open_settings,
    screenshot,
    send,
    wait_replies,
)
from ..support.catalogue_keys import keys_named

CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)


def catalogue(page: Page) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = page.evaluate("() => window.getgpt.i18n.CATALOGUE")
    return data


def test_page_is_in_russian_when_the_browser_asks_for_ru_ru(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    page = open_page(browser, scripted[1], page_errors, locale="ru-RU")
    assert page.evaluate("() => [document.documentElement.lang, navigator.language]") == ["ru", "ru-RU"]
    assert page.inner_text("#new-chat") == "Новый чат"
    assert page.get_attribute("#send", "aria-label") == "Отправить"
    assert page.inner_text("#export-md") == "Экспорт в Markdown"
    assert page.get_attribute("#input", "placeholder") == "Спросите что угодно"
    assert page.inner_text("#composer-hint") == "Enter отправляет, Shift+Enter начинает новую строку."
    assert page.inner_text(".empty h2") == "Чат GetGpt"
    assert page.title() == "Чат GetGpt"
    assert page.input_value("#language") == "ru"
    send(page, "привет")
    wait_replies(page, 1)
    assert page.locator(".msg .role").all_inner_texts() == ["Вы", "Ассистент"]  # for screen readers
    assert page.get_attribute(".conversation-open", "title") == "привет · 1 ответ"
    screenshot(page, "web-lang-ru.png")
    page.context.close()


def test_page_is_in_english_for_en_us_and_for_a_language_it_does_not_speak(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    for locale in ("en-US", "de-DE"):
        page = open_page(browser, scripted[1], page_errors, locale=locale)
        assert page.evaluate("() => document.documentElement.lang") == "en"
        assert page.inner_text("#new-chat") == "New chat"
        assert page.get_attribute("#send", "aria-label") == "Send"
        assert page.title() == "GetGpt chat"
        if locale == "en-US":
            screenshot(page, "web-lang-en.png")
        page.context.close()


def test_language_switch_changes_the_page_at_once_and_is_remembered(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    page = open_page(browser, scripted[1], page_errors, locale="en-US")
    send(page, "limit")  # a reply with a note, rendered from the message's state in either language
    wait_replies(page, 1)
    assert "token limit" in page.inner_text(".note.stopped")
    page.select_option("#language", "ru")
    assert page.evaluate("() => document.documentElement.lang") == "ru"
    assert page.get_attribute("#send", "aria-label") == "Отправить"
    assert page.inner_text(".note.stopped") == "Ответ упёрся в лимит токенов (максимум токенов) и обрезан."
    assert page.get_attribute(".conversation-delete", "aria-label") == "Удалить разговор: limit"
    page.reload()
    page.wait_for_function("() => window.getgpt !== undefined")
    # The choice outlives the browser's language.
    assert page.get_attribute("#send", "aria-label") == "Отправить"
    assert page.input_value("#language") == "ru"
    page.select_option("#language", "en")
    page.reload()
    page.wait_for_function("() => window.getgpt !== undefined")
    assert page.get_attribute("#send", "aria-label") == "Send"
    page.context.close()


def keys_used_in_source() -> set[str]:
    """Every catalogue key the page's code and markup name (a dotted string in t's first argument)."""
    keys: set[str] = set()
    for path in WEB.glob("*.js"):
        keys |= keys_named(path.read_text(), "t")
    keys |= set(re.findall(r'data-i18n(?:-[\w-]+)?="([\w.]+)"', (WEB / "index.html").read_text()))
    return keys


def test_every_key_has_a_text_in_both_languages_and_every_key_is_used(units: Page) -> None:
    texts = catalogue(units)
    plural_forms = units.evaluate("() => window.getgpt.i18n.PLURAL_FORMS")
    assert set(texts) == {"en", "ru"}
    assert texts["en"].keys() == texts["ru"].keys()
    assert keys_used_in_source() == set(texts["en"]), "a key is used but missing, or kept but unused"
    for key in texts["en"]:
        names = []
        for lang in ("en", "ru"):
            entry = texts[lang][key]
            forms = entry if isinstance(entry, dict) else {"": entry}
            if isinstance(entry, dict):
                assert sorted(entry) == sorted(plural_forms[lang]), (lang, key)
            for text in forms.values():
                assert text.strip(), (lang, key)
                if lang == "ru":
                    assert CYRILLIC.search(text), f"{key} is not translated: {text!r}"
            names.append({name for text in forms.values() for name in re.findall(r"\{(\w+)\}", text)})
        assert names[0] == names[1], f"{key}: the two languages fill in different values"
        # And the page itself produces every text without falling back or failing.
        for lang in ("en", "ru"):
            shown = units.evaluate(
                """([lang, key]) => { const i18n = window.getgpt.i18n, before = i18n.language();
                     i18n.setLanguage(lang);
                     try { return i18n.t(key, {count: 3, title: 'T', name: 'N', message: 'M',
                                               reason: 'R', status: '4', ttft: '1', cps: '2',
                                               field: 'F', param: 'P', problem: 'X', n: 2,
                                               requests: '5', tokens: '6', spent: '7'}); }
                     finally { i18n.setLanguage(before); } }""",
                [lang, key],
            )
            assert "{" not in shown, (lang, key, shown)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 ответов"),
        (1, "1 ответ"),
        (2, "2 ответа"),
        (4, "4 ответа"),
        (5, "5 ответов"),
        (11, "11 ответов"),
        (12, "12 ответов"),
        (21, "21 ответ"),
        (22, "22 ответа"),
        (25, "25 ответов"),
        (101, "101 ответ"),
        (111, "111 ответов"),
        (1.5, "1,5 ответа"),
    ],
)
def test_russian_plurals_agree_with_the_number(units: Page, count: float, text: str) -> None:
    shown = units.evaluate(
        """n => { const i18n = window.getgpt.i18n, before = i18n.language(); i18n.setLanguage('ru');
                  try { return i18n.t('chat.replies', {count: n}); }
                  finally { i18n.setLanguage(before); } }""",
        count,
    )
    assert shown.replace("\u00a0", " ") == text


def test_english_plurals(units: Page) -> None:
    shown = units.evaluate(
        "() => [0, 1, 2].map(n => window.getgpt.i18n.t('settings.models', {count: n}))",
    )
    assert shown == [
        "The server offers 0 models.",
        "The server offers 1 model.",
        "The server offers 2 models.",
    ]


# Text that comes from the conversation or the server, not from the page: not the page's to translate.
DATA = (
    ".body, .reasoning-text, .tool-call code, .conversation-open, #title, noscript, [lang]:not(html),"
    " .server-words, .system-text"
)


def test_no_english_is_left_on_the_russian_page(
    browser: Browser, scripted: tuple[Scripted, str], page_errors: list[str]
) -> None:
    page = open_page(browser, scripted[1], page_errors, locale="ru-RU")
    # Reasoning, tool calls, an error, a note, an error from a stream, a reply with its stats, and
    # one asked for twice (its versions).
    for count, text in enumerate(("think", "tools", "cut", "limit", "fail", "plain words"), 1):
        send(page, text)
        wait_replies(page, count)
    page.locator(".regenerate").click()
    wait_replies(page, 6)
    page.click("#new-chat")
    send(page, "another")
    wait_replies(page, 1)
    hold_undo(page)
    page.locator(".conversation-delete").first.click()  # "another": the undo toast stays up
    page.wait_for_selector(".msg >> nth=11")  # the first conversation, shown again
    assert page.is_visible("#toast")
    open_settings(page)
    page.fill("#temperature", "7")  # a field in error
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    untranslated = page.evaluate(
        """data => {
          const found = [];
          const visible = (el) => el.getClientRects().length > 0;
          const check = (text, where) => {
            if (/[A-Za-z]/.test(text) && !/[а-яё]/i.test(text)) found.push([where, text]);
          };
          const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const el = node.parentElement;
            if (!el || el.closest(data) || !visible(el) || !node.textContent.trim()) continue;
            check(node.textContent.trim(), el.tagName + '.' + el.className);
          }
          for (const el of document.querySelectorAll('[aria-label], [placeholder], [title]')) {
            if (el.closest(data)) continue;
            for (const name of ['aria-label', 'placeholder', 'title']) {
              const value = el.getAttribute(name);
              // The model box's placeholder is a model's name, from the server.
              if (value && !(el.id === 'model' && name === 'placeholder')) check(value, el.id + '@' + name);
            }
          }
          check(document.title, 'title');
          return found;
        }""",
        DATA,
    )
    assert untranslated == []
    assert page.is_visible("#toast")  # its words were among those read
    screenshot(page, "web-lang-ru-details.png")
    page.context.close()
