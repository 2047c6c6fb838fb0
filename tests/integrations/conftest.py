"""Fixtures only; the helpers behind them live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.serve_process import getgpt_serve


@pytest.fixture(scope="session")
def served() -> Iterator[str]:
    """A real ``getgpt serve`` subprocess with the offline echo backend; its base URL."""
    with getgpt_serve("--log-level", "warning") as server:
        yield server.url


@pytest.fixture
def g4f_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """g4f writes usage logs under its cookies folder and checks PyPI for a newer version in a
    thread: point the one at a temporary folder and turn the other off."""
    import g4f.cookies
    import g4f.debug

    monkeypatch.setattr(g4f.debug, "version_check", False)
    monkeypatch.setattr(g4f.cookies.CookiesConfig, "cookies_dir", str(tmp_path))
    return tmp_path
