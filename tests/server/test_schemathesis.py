"""Schemathesis against the server's own OpenAPI document (``GET /openapi.json``): no 5xx, ever.

Schemathesis reads the document from the running server and generates requests for every
operation -- valid ones and, in the negative phase, ones that break the schema -- and sends them
over real HTTP to uvicorn on loopback. Every answer must be below 500, and every error answer
must be the JSON error format. Examples are bounded so the file stays fast; the counts of
requests sent and of their statuses are printed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from getgpt.server import ServerConfig, create_app

from ..support.processes import SSL_CONTEXT
from ..support.servers import serve

STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    # Small limits, so generated bodies reach the size and count checks too.
    config = ServerConfig(max_body_bytes=16 * 1024, max_messages=8, body_timeout=2)
    with serve(create_app(config)) as url:
        yield url


@pytest.fixture(scope="module")
def api(server_url: str) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(server_url + "openapi.json")
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    return schema


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_no_server_errors(case: schemathesis.Case, server_url: str) -> None:
    response = case.call(base_url=server_url.rstrip("/"), timeout=10)
    STATUSES[response.status_code] += 1
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert "Traceback" not in response.text


def test_the_server_is_well_after_the_run(server_url: str) -> None:
    health = httpx.get(server_url + "healthz", verify=SSL_CONTEXT).json()
    assert health["status"] == "ok"
    assert health["active_streams"] == 0
    assert health["failed_total"] == 0
    # Run after the generated cases (file order), this reports what they were answered.
    print(f"\nschemathesis requests by status: {dict(sorted(STATUSES.items()))}")
    assert not [status for status in STATUSES if status >= 500]
