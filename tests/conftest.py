"""Fixtures only; the helpers behind them live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

import getgpt
from getgpt._senders import lean_endpoint

from .support.scripted import Live
from .support.servers import serve


@pytest.fixture
def live() -> Iterator[tuple[Live, str]]:
    """The scripted server of tests/support/scripted.py on a loopback port."""
    script = Live()
    app = Starlette(routes=[Route("/api/chat/stream", script.chat, methods=["POST"])])
    with serve(app) as url:
        yield script, url


@pytest.fixture(params=["lean", "httpx"])
def via(request: pytest.FixtureRequest) -> Any:
    """Makes clients that send one of the two ways: the lean HTTP/1.1 path, or through httpx.

    ``via(getgpt.Client, url, **options)``; the same test must pass both ways.
    """

    def make(kind: type[Any], url: str, **options: Any) -> Any:
        if request.param == "httpx":
            timeout = options.get("timeout", getgpt.DEFAULT_TIMEOUT)
            asynchronous = issubclass(kind, getgpt.AsyncClient)
            options["http_client"] = (httpx.AsyncClient if asynchronous else httpx.Client)(timeout=timeout)
        assert lean_endpoint(url, {}) is not None  # the URL itself never forces httpx here
        return kind(url, **options)

    return make
