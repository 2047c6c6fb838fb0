"""Proxies on the lean path: absolute-form requests through an HTTP proxy for http:// URLs,
``CONNECT`` tunnels for https:// ones, the proxy from the argument or the environment, and
``NO_PROXY`` honoured. Against a small proxy of our own on loopback (tests/support/proxy.py)
and real servers behind it, TLS included (a trustme CA)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import getgpt
from getgpt._transports.choose import LeanOrElsewhere
from getgpt._transports.http11.async_pool import AsyncPool
from getgpt._transports.http11.pool import Pool
from getgpt._transports.http11.proxy import bypassed, parse_proxy
from getgpt._transports.httpx import AsyncHttpxTransport, HttpxTransport

from ..support.client_probe import complete_one
from ..support.proxy import Proxied, TestProxy
from ..support.scripted import Live
from ..support.servers import free_port

HI = [{"role": "user", "content": "hi"}]
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def complete_both_ways(url: str, **options: Any) -> list[str]:
    """One reply through Client and one through AsyncClient, each made with ``options``."""
    with getgpt.Client(url, max_retries=0, **options) as client:
        first = str(client.complete(HI))

    async def main() -> str:
        async with getgpt.AsyncClient(url, max_retries=0, **options) as client:
            return str(await client.complete(HI))

    return [first, asyncio.run(main())]


def test_an_http_url_goes_through_the_proxy_in_absolute_form(live: tuple[Live, str]) -> None:
    script, url = live
    with TestProxy() as proxy:
        assert complete_both_ways(url, proxy=proxy.url) == ["hi ", "hi "]
    target = url + "api/chat/stream"
    assert proxy.requests == [Proxied("POST", target, None)] * 2
    assert len(script.peers) == 2  # the server saw both, from the proxy


def test_the_proxy_urls_credentials_go_to_the_proxy_only(live: tuple[Live, str]) -> None:
    _, url = live
    with TestProxy(credentials=("user", "p@ss")) as proxy:
        host = proxy.url.removeprefix("http://")
        assert complete_both_ways(url, proxy=f"http://user:p%40ss@{host}") == ["hi ", "hi "]
        assert {seen.authorization for seen in proxy.requests} == {"Basic dXNlcjpwQHNz"}
        # Wrong credentials: the proxy's 407 is the answer.
        with (
            getgpt.Client(url, proxy=f"http://user:wrong@{host}", max_retries=0) as client,
            pytest.raises(getgpt.StatusError) as caught,
        ):
            client.complete(HI)
        assert caught.value.status_code == 407


def test_an_https_url_goes_through_a_connect_tunnel_and_tls_is_checked_inside(
    tls: tuple[str, Path],
) -> None:
    url, ca_file = tls
    port = int(url.rstrip("/").rpartition(":")[2])
    with TestProxy() as proxy:
        with getgpt.Client(url, proxy=proxy.url, verify=str(ca_file)) as client:
            assert isinstance(client._transport, Pool)
            # The second request rides the same tunnel: one CONNECT for both.
            assert [client.complete(HI), client.complete(HI)] == ["hi ", "hi "]

        async def main() -> list[str]:
            async with getgpt.AsyncClient(url, proxy=proxy.url, verify=str(ca_file)) as client:
                return [str(await client.complete(HI)), str(await client.complete(HI))]

        assert asyncio.run(main()) == ["hi ", "hi "]
        assert proxy.requests == [Proxied("CONNECT", f"127.0.0.1:{port}", None)] * 2
        # Through the tunnel the server's certificate is still checked against the CA.
        with (
            getgpt.Client(url, proxy=proxy.url, max_retries=0) as client,
            pytest.raises(getgpt.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            client.complete(HI)


def test_a_tunnel_the_proxy_refuses_is_a_connect_error_naming_its_answer(tls: tuple[str, Path]) -> None:
    url, ca_file = tls
    with TestProxy(credentials=("u", "p")) as proxy:
        for kind in ("sync", "async"):
            with pytest.raises(getgpt.ConnectError, match=r"refused a tunnel.*407"):
                complete_one(kind, url, proxy=proxy.url, verify=str(ca_file), max_retries=0)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_proxy_that_is_not_there_is_a_connect_error_naming_it(kind: str) -> None:
    proxy = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(getgpt.ConnectError, match=f"through the proxy {proxy}") as caught:
        complete_one(kind, "http://example.test/", proxy=proxy, max_retries=0)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_the_environment_names_the_proxy_and_no_proxy_is_honoured(
    live: tuple[Live, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = live
    with TestProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        assert complete_both_ways(url) == ["hi ", "hi "]
        assert len(proxy.requests) == 2
        monkeypatch.setenv("NO_PROXY", "localhost, 127.0.0.0/8")
        assert complete_both_ways(url) == ["hi ", "hi "]
        assert len(proxy.requests) == 2  # went directly
        monkeypatch.delenv("NO_PROXY")
        monkeypatch.delenv("HTTP_PROXY")
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        assert complete_both_ways(url) == ["hi ", "hi "]
        assert len(proxy.requests) == 4


def test_http_proxy_is_ignored_in_a_cgi_script(
    live: tuple[Live, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CGI request header "Proxy:" arrives as HTTP_PROXY (httpoxy): it must not choose the proxy.
    _, url = live
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    assert complete_both_ways(url) == ["hi ", "hi "]


def test_socks_and_https_proxies_are_left_to_httpx() -> None:
    for proxy in ("socks5://127.0.0.1:1080", "https://127.0.0.1:3128"):
        try:
            client = getgpt.Client("http://a.test/", proxy=proxy)
        except ImportError:  # httpx needs the socksio extra for SOCKS: the choice was made
            assert proxy.startswith("socks")
            continue
        assert isinstance(client._transport, HttpxTransport)
    lean = getgpt.AsyncClient("http://a.test/", proxy="http://127.0.0.1:3128")._transport
    assert isinstance(lean, LeanOrElsewhere) and isinstance(lean.lean, AsyncPool)
    elsewhere = getgpt.AsyncClient("http://a.test/", proxy="https://127.0.0.1:3128")._transport
    assert isinstance(elsewhere, AsyncHttpxTransport)


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "direct"),
    [
        ("example.com", 80, "example.com", True),
        ("api.example.com", 80, "example.com", True),
        ("api.example.com", 80, ".example.com", True),
        ("api.example.com", 80, "*.example.com", True),
        ("notexample.com", 80, "example.com", False),
        ("example.com", 80, "other.test, example.com", True),
        ("example.com", 8080, "example.com:8080", True),
        ("example.com", 80, "example.com:8080", False),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("11.1.2.3", 80, "10.0.0.0/8", False),
        ("127.0.0.1", 80, "127.0.0.1", True),
        ("::1", 443, "::1", True),
        ("::1", 443, "[::1]:443", True),
        ("example.com", 80, "*", True),
        ("EXAMPLE.com.", 80, "example.COM", True),
        ("example.com", 80, "", False),
    ],
)
def test_no_proxy_entries(host: str, port: int, no_proxy: str, direct: bool) -> None:
    assert bypassed(host, port, no_proxy) is direct


def test_proxy_urls() -> None:
    plain = parse_proxy("127.0.0.1:3128")
    assert (plain.scheme, plain.host, plain.port, plain.authorization) == ("http", "127.0.0.1", 3128, None)
    keyed = parse_proxy("http://a%3Ab:c@proxy.test")
    assert (keyed.port, keyed.authorization, keyed.url) == (80, "Basic YTpiOmM=", "http://proxy.test:80")
    for bad in ("ftp://proxy.test", "http://", "http://proxy.test:99999"):
        with pytest.raises(ValueError):
            parse_proxy(bad)
