"""The openai backend honours the environment's proxy settings (HTTP_PROXY, NO_PROXY...).

The backend sends on the lean HTTP/1.1 path, which sends an http:// request through an HTTP
proxy in absolute form (tests/client/test_proxies.py has the rest: CONNECT tunnels, NO_PROXY's
forms). Real servers only: the "proxy" is a getgpt echo server, which answers a proxied
(absolute-form) ``/v1/chat/completions`` request as any other.
"""

from __future__ import annotations

import httpx
import pytest

from getgpt.server import ServerConfig, create_app

from ..support.processes import SSL_CONTEXT
from ..support.servers import free_port, serve

BODY = {"model": "m", "messages": [{"role": "user", "content": "through the proxy"}]}
# The test's own requests must not read the proxy variables the tests set for the gateway.
_http = httpx.Client(trust_env=False, timeout=10, verify=SSL_CONTEXT)


@pytest.fixture(autouse=True)
def _clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _streams(url: str) -> int:
    return int(_http.get(url + "healthz").json()["streams_total"])


def test_the_upstream_request_goes_through_http_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(create_app(ServerConfig())) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        # Nothing listens at the upstream itself: only the proxy can answer.
        upstream = f"http://127.0.0.2:{free_port()}/v1"
        with serve(create_app(ServerConfig(backend="openai", upstream=upstream))) as gateway:
            before = _streams(proxy)
            response = _http.post(gateway + "v1/chat/completions", json=BODY)
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == "through the proxy"
            assert _streams(proxy) == before + 1


def test_no_proxy_sends_the_request_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(create_app(ServerConfig())) as upstream:
        # A proxy that is not there: using it would fail the request.
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with serve(create_app(ServerConfig(backend="openai", upstream=upstream + "v1"))) as gateway:
            response = _http.post(gateway + "v1/chat/completions", json=BODY)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "through the proxy"


def test_a_proxy_that_is_down_is_a_502(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(create_app(ServerConfig())) as upstream:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
        with serve(create_app(ServerConfig(backend="openai", upstream=upstream + "v1"))) as gateway:
            before = _streams(upstream)
            response = _http.post(gateway + "v1/chat/completions", json=BODY)
            assert response.status_code == 502
            assert response.json()["error"]["code"] == "upstream_unreachable"
            assert _streams(upstream) == before
