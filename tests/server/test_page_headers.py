"""The web page's security headers, and no redirect built from a Host header the client chose."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from getgpt.server import ServerConfig, create_app

from ..support.processes import SSL_CONTEXT
from ..support.servers import serve

WEB = Path(__file__).resolve().parents[2] / "src" / "getgpt" / "web"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(create_app(ServerConfig())) as base:
        yield base


def _directives(policy: str) -> dict[str, str]:
    found = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            found[name] = value.strip()
    return found


def test_the_page_and_its_files_forbid_framing_and_sniffing(url: str) -> None:
    meta = re.search(
        r'http-equiv="Content-Security-Policy"\s+content="([^"]+)"', (WEB / "index.html").read_text()
    )
    assert meta is not None
    for path in ("", "static/app.js", "static/style.css"):
        response = httpx.get(url + path, verify=SSL_CONTEXT)
        assert response.status_code == 200
        headers = response.headers
        policy = _directives(headers["content-security-policy"])
        assert policy["frame-ancestors"] == "'none'"  # only a header can say this; <meta> cannot
        # The header says at least what the page's own <meta> says, directive by directive.
        for name, value in _directives(meta.group(1)).items():
            assert policy[name] == value, name
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["static", "healthz/", "v1/models/"])
def test_no_redirect_echoes_the_host_header(url: str, path: str) -> None:
    response = httpx.get(url + path, headers={"Host": "evil.example"}, verify=SSL_CONTEXT)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil.example" not in response.text
