"""The transports' shared face, both ways: the fixed POST and any other request to the same
origin, against a real server that echoes what it received; and the httpx adapter's one
boundary, where every httpx exception becomes getgpt's own."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from getgpt._transports import choose
from getgpt._transports.base import AsyncTransport, Request, Timeouts, Transport
from getgpt._transports.http11.pool import Pool
from getgpt._transports.httpx import HttpxTransport, mapped_errors
from getgpt.client.transport import open_transport
from getgpt.protocol import errors

from ..support.processes import SSL_CONTEXT
from ..support.servers import serve

HEADERS = {"Authorization": "Bearer k", "Content-Type": "application/json"}


async def echo(request: StarletteRequest) -> Response:
    body = await request.body()
    seen = {
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": {name: value for name, value in request.headers.items()},
        "body": body.decode(),
    }
    return JSONResponse(seen)


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST", "DELETE"])])
    with serve(app) as url:
        yield url


def seen(data: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(data)
    return value


def exchanges_sync(transport: Transport) -> list[dict[str, Any]]:
    out = []
    try:
        for response in (
            transport.send(b'{"signature":"x"}'),
            transport.request(
                Request("GET", "/v1/models", {"X-Extra": "1", "authorization": "Bearer other"})
            ),
            transport.request(Request("POST", "/v1/embeddings?a=b", body=b'{"input":"hi"}')),
            transport.send(b"{}"),
        ):
            assert response.status_code == 200 and response.headers["content-type"] == "application/json"
            out.append(seen(response.read()))
            response.close()
    finally:
        transport.close()
    return out


async def exchanges_async(transport: AsyncTransport) -> list[dict[str, Any]]:
    out = []
    try:
        for call in (
            lambda: transport.send(b'{"signature":"x"}'),
            lambda: transport.request(
                Request("GET", "/v1/models", {"X-Extra": "1", "authorization": "Bearer other"})
            ),
            lambda: transport.request(Request("POST", "/v1/embeddings?a=b", body=b'{"input":"hi"}')),
            lambda: transport.send(b"{}"),
        ):
            response = await call()
            assert response.status_code == 200 and response.headers["content-type"] == "application/json"
            out.append(seen(await response.read()))
            await response.aclose()
    finally:
        await transport.aclose()
    return out


@pytest.mark.parametrize("way", ["lean", "httpx"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_fixed_post_and_other_requests_to_the_same_origin(echo_url: str, way: str, kind: str) -> None:
    url = echo_url + "v1/chat/completions"
    options: dict[str, Any] = {"timeouts": Timeouts()}
    if kind == "sync":
        if way == "httpx":
            options["http_client"] = httpx.Client(verify=SSL_CONTEXT)
        transport = choose.transport(url, HEADERS, **options)
        assert isinstance(transport, HttpxTransport if way == "httpx" else Pool)
        results = exchanges_sync(transport)
    else:
        if way == "httpx":
            options["http_client"] = httpx.AsyncClient(verify=SSL_CONTEXT)
            made = choose.async_transport(url, HEADERS, **options)
        else:
            made = open_transport(url, HEADERS, max_idle=4, **options)
        results = asyncio.run(exchanges_async(made))
    fixed, models, embeddings, again = results
    assert (fixed["method"], fixed["path"], fixed["body"]) == (
        "POST",
        "/v1/chat/completions",
        '{"signature":"x"}',
    )
    assert fixed["headers"]["authorization"] == "Bearer k"
    assert fixed["headers"]["accept-encoding"] == "identity"
    assert (models["method"], models["path"], models["body"]) == ("GET", "/v1/models", "")
    assert models["headers"]["x-extra"] == "1" and models["headers"]["authorization"] == "Bearer other"
    assert "content-length" not in models["headers"]
    assert (embeddings["method"], embeddings["path"], embeddings["query"]) == (
        "POST",
        "/v1/embeddings",
        "a=b",
    )
    assert embeddings["body"] == '{"input":"hi"}' and embeddings["headers"]["content-length"] == "14"
    assert embeddings["headers"]["authorization"] == "Bearer k"  # the transport's own, not replaced
    assert "x-extra" not in again["headers"]  # extra headers were for that request only
    assert again["headers"]["authorization"] == "Bearer k"


def test_a_target_that_is_not_a_path_is_refused_both_ways(echo_url: str) -> None:
    lean = choose.transport(echo_url, {}, timeouts=Timeouts())
    via_httpx = choose.transport(
        echo_url, {}, timeouts=Timeouts(), http_client=httpx.Client(verify=SSL_CONTEXT)
    )
    for transport in (lean, via_httpx):
        with pytest.raises(ValueError):
            transport.request(Request("GET", "http://elsewhere.test/"))
        transport.close()


# --- the httpx adapter's boundary ---------------------------------------------------------------


def _httpx_exceptions() -> list[type[BaseException]]:
    return sorted(
        (k for _, k in inspect.getmembers(httpx, inspect.isclass) if issubclass(k, Exception)),
        key=lambda k: k.__name__,
    )


def _instance(kind: type[BaseException]) -> BaseException:
    """An instance of ``kind``, whatever its constructor asks for."""
    request = httpx.Request("GET", "http://upstream.test/")
    given = {"message": "m", "request": request, "response": httpx.Response(500, request=request)}
    wanted = inspect.signature(kind.__init__).parameters
    args = [given[name] for name, p in wanted.items() if name in given and p.kind is p.POSITIONAL_OR_KEYWORD]
    kwargs = {name: given[name] for name, p in wanted.items() if name in given and p.kind is p.KEYWORD_ONLY}
    return kind(*args, **kwargs)


EXPECTED: dict[str, type[errors.GetGptError]] = {
    "TimeoutException": errors.Timeout,
    "ConnectError": errors.ConnectError,
    "ProxyError": errors.ConnectError,
    "DecodingError": errors.ProtocolError,
}


def test_every_httpx_exception_is_mapped_to_a_getgpt_error() -> None:
    kinds = _httpx_exceptions()
    assert len(kinds) >= 25  # httpx's whole tree, not an empty walk
    for kind in kinds:
        raised = _instance(kind)
        with pytest.raises(errors.GetGptError) as caught, mapped_errors("http://upstream.test/x"):
            raise raised
        assert caught.value.__cause__ is raised, kind
        assert "http://upstream.test/x" in str(caught.value)
        for base in kind.__mro__:
            if base.__name__ in EXPECTED and base.__module__.startswith("httpx"):
                assert isinstance(caught.value, EXPECTED[base.__name__]), kind
                break
        else:
            assert type(caught.value) in (errors.TransportError, errors.ConnectError, errors.ProtocolError), (
                kind
            )


def test_what_is_not_httpxs_passes_through_the_boundary_untouched() -> None:
    for raised in (KeyboardInterrupt(), MemoryError(), ValueError("mine")):
        with pytest.raises(type(raised)) as caught, mapped_errors("http://upstream.test/x"):
            raise raised
        assert caught.value is raised
