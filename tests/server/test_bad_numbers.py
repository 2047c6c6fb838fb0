"""One kind of bad number, one answer: a number no float holds is 400 on both chat endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from getgpt.protocol.envelope import encrypt
from getgpt.server import ServerConfig, create_app

from ..support.processes import SSL_CONTEXT
from ..support.servers import serve


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(create_app(ServerConfig())) as base:
        yield base


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E+400"])
@pytest.mark.parametrize("field", ["temperature", "max_tokens", "top_p"])
def test_a_number_out_of_range_is_400_inside_the_envelope_and_on_v1(
    url: str, field: str, number: str
) -> None:
    request = '{"messages":[{"role":"user","content":"hi"}],"' + field + '":' + number + "}"
    answers = [
        httpx.post(url + "api/chat/stream", json={"signature": encrypt(request)}, verify=SSL_CONTEXT),
        httpx.post(
            url + "v1/chat/completions",
            content=request,
            headers={"content-type": "application/json"},
            verify=SSL_CONTEXT,
        ),
    ]
    for response in answers:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_json"
        assert "number out of range" in error["message"]
