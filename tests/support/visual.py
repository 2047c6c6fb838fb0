"""The page's screenshots against reviewed baselines: a visual check that catches layout breaks and
lets font antialiasing be.

A baseline is a PNG under ``tests/web/baseline/``, reviewed by a person and committed. Each check
takes a screenshot (animations finished, no caret, the replies' timings hidden in their place),
writes it to
``artifacts/visual/<name>.png``, and compares it with the baseline:

- a pixel differs when one of its channels moved by more than :data:`CHANNEL` (of 255): low enough
  to see a user's bubble (15 from the page's background, in either theme) move;
- differences that are only a line or two of pixels wide are antialiasing -- a glyph's edge drawn a
  shade lighter or darker, as another FreeType or hinting setting does -- and an erosion of the
  differing pixels by a :data:`ERODE`-pixel square removes them; what remains is a block that moved,
  appeared or went, which is what a layout break looks like;
- the check fails when more than :data:`MAX_BLOCKS` pixels remain after the erosion (a 20 x 20
  square: a 32 px icon button, the smallest control, is well over it), or when more than
  :data:`MAX_PIXELS` of all pixels differ (no antialiasing changes that much), or when the sizes
  differ. A failure writes ``<name>.diff.png`` (the baseline in grey, what differs in red, what
  remains after erosion in magenta) beside the screenshot, and names both.

Measured on the conversation state (tests/web/test_visual.py proves it on every run): text drawn
0.4 px bolder at every edge left 69-83 pixels after erosion, `text-rendering: geometricPrecision`
153-159 (both pass); the send button hidden left 858, letter-spacing 0.3 px 1,937, the old 260 px
sidebar 17,079 (all fail).

Baselines change only when asked: ``GETGPT_UPDATE_BASELINE=1`` writes every screenshot taken as the
new baseline (review them with ``git diff --stat`` and an image viewer before committing). A missing
baseline fails, never silently becomes one. Baselines belong to the browser and fonts of the machine
that made them (Debian's Chromium and DejaVu fonts here, CI's too); another machine may need its own.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageFilter
from playwright.sync_api import Page

from .browser import ARTIFACTS, ROOT, settled

__all__ = ["BASELINE", "UPDATE", "VISUAL", "Difference", "compare", "screenshot_check", "steady_screenshot"]

BASELINE = ROOT / "tests" / "web" / "baseline"
VISUAL = ARTIFACTS / "visual"
UPDATE = os.environ.get("GETGPT_UPDATE_BASELINE") == "1"
CHANNEL = 10
ERODE = 3
MAX_BLOCKS = 400
MAX_PIXELS = 0.08
# What changes from run to run (a reply's timings): hidden, its place kept, before each screenshot.
# (Playwright's own masks paint over an element's box even where a scrolled list clips it away.)
VARYING = ".stats"


@dataclass(frozen=True)
class Difference:
    """How a screenshot differs from its baseline: pixels that differ, those left after erosion."""

    pixels: int
    blocks: int
    total: int
    same_size: bool = True

    @property
    def passes(self) -> bool:
        return self.same_size and self.blocks <= MAX_BLOCKS and self.pixels <= MAX_PIXELS * self.total

    def __str__(self) -> str:
        if not self.same_size:
            return "the sizes differ"
        return (
            f"{self.pixels} pixels differ ({self.pixels / self.total:.2%}, at most {MAX_PIXELS:.0%}), "
            f"{self.blocks} of them in blocks (at most {MAX_BLOCKS})"
        )


def compare(actual: Image.Image, baseline: Image.Image) -> tuple[Difference, Image.Image | None]:
    """The difference between two screenshots, and a picture of it when the check fails (None when
    it passes or the sizes differ)."""
    if actual.size != baseline.size:
        return Difference(0, 0, baseline.width * baseline.height, same_size=False), None
    delta = ImageChops.difference(actual.convert("RGB"), baseline.convert("RGB"))
    red, green, blue = delta.split()
    largest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    differs = largest.point(lambda value: 255 if value > CHANNEL else 0)
    # The erosion, only around what differs (ERODE pixels more each side, so the box's edge erodes
    # as the whole picture's would): most screenshots differ nowhere or in a few glyphs, and the
    # filter over a whole page was 2/3 of a comparison's CPU.
    blocks = Image.new("L", actual.size, 0)
    where = differs.getbbox()
    if where is not None:
        left, top, right, bottom = where
        box = (
            max(left - ERODE, 0),
            max(top - ERODE, 0),
            min(right + ERODE, actual.width),
            min(bottom + ERODE, actual.height),
        )
        blocks.paste(differs.crop(box).filter(ImageFilter.MinFilter(ERODE)), box[:2])
    difference = Difference(
        pixels=differs.histogram()[255], blocks=blocks.histogram()[255], total=actual.width * actual.height
    )
    if difference.passes:
        return difference, None
    picture = Image.composite(
        Image.new("RGB", actual.size, (255, 0, 255)),
        Image.composite(
            Image.new("RGB", actual.size, (230, 0, 0)),
            baseline.convert("L").point(lambda value: 96 + value // 2).convert("RGB"),
            differs,
        ),
        blocks,
    )
    return difference, picture


def steady_screenshot(page: Page, **options: Any) -> bytes:
    """The page as a PNG with nothing in it that changes from run to run."""
    # The pointer rests where no control is, so no hover colour depends on the last click.
    page.mouse.move(0, page.viewport_size["height"] - 1 if page.viewport_size else 0)
    page.evaluate("s => document.querySelectorAll(s).forEach(el => el.style.visibility = 'hidden')", VARYING)
    # Playwright's animations="disabled" alone once caught the undo toast a fifth of the way into
    # its 0.15 s slide, on a loaded machine.
    settled(page)
    return page.screenshot(animations="disabled", caret="hide", **options)


def screenshot_check(page: Page, name: str, **options: Any) -> str | None:
    """Take the page's screenshot as ``name`` and compare it with its baseline; the reason it fails,
    or None. With GETGPT_UPDATE_BASELINE=1 the screenshot becomes the baseline instead."""
    VISUAL.mkdir(parents=True, exist_ok=True)
    png = steady_screenshot(page, **options)
    actual_path = VISUAL / f"{name}.png"
    actual_path.write_bytes(png)
    baseline_path = BASELINE / f"{name}.png"
    actual = Image.open(io.BytesIO(png))
    if UPDATE:
        BASELINE.mkdir(parents=True, exist_ok=True)
        actual.save(baseline_path, optimize=True)
        return None
    if not baseline_path.is_file():
        return (
            f"{name}: no baseline {baseline_path.relative_to(ROOT)}; review {actual_path} and run with "
            "GETGPT_UPDATE_BASELINE=1 to make it one"
        )
    difference, picture = compare(actual, Image.open(baseline_path))
    if difference.passes:
        return None
    diff_path: Path | None = None
    if picture is not None:
        diff_path = VISUAL / f"{name}.diff.png"
        picture.save(diff_path)
    return f"{name}: {difference}; see {actual_path}" + (f" and {diff_path}" if diff_path else "")
