"""Keys from the store at admission, over real HTTP, on a real SQLite file and a real PostgreSQL:
every rule on both chat endpoints and a forwarded route, GETGPT_API_KEYS beside the store, a key's
own usage, the admin API, and the database unreachable under both policies."""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from getgpt.protocol.envelope import encrypt
from getgpt.protocol.request import build_request, encode
from getgpt.server import ServerConfig, create_app
from getgpt.server.store import manage
from getgpt.server.store.ledger import Ledger

from ..support.keystore import make_key, on_db, records, records_of, revoke
from ..support.openai_upstream import ScriptedUpstream
from ..support.processes import SSL_CONTEXT
from ..support.servers import serve
from ..support.waiting import wait_until

HI = [{"role": "user", "content": "hi"}]
ROUTES = ["/v1/chat/completions", "/api/chat/stream", "/v1/embeddings"]
# What the scripted upstream reports: chat 11 + 7 tokens, embeddings 3.
TOKENS = {"/v1/chat/completions": 18, "/api/chat/stream": 18, "/v1/embeddings": 3}


def send(url: str, route: str, key: str | None, model: str = "text") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    if route == "/api/chat/stream":
        body: dict[str, Any] = {"signature": encrypt(encode(build_request(HI, model=model)).decode())}
    elif route == "/v1/embeddings":
        body = {"model": model, "input": "hi"}
    else:
        body = {"model": model, "messages": HI, "stream": True}
    return httpx.post(url + route.lstrip("/"), json=body, headers=headers, timeout=10, verify=SSL_CONTEXT)


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    return dict(error)


@pytest.fixture
def server(upstream: ScriptedUpstream, db_target: str) -> Iterator[tuple[str, str]]:
    """A gateway to the scripted upstream with the store at ``db_target``; its URL and the target."""
    make_key(db_target, "warm-up")  # the store exists before the server starts, as after keys create
    config = ServerConfig(
        backend="openai", upstream=upstream.url + "v1", db=db_target, admin_key="admin-secret"
    )
    with serve(create_app(config)) as url:
        yield url, db_target


@pytest.mark.parametrize(
    ("token", "key_id"),
    [
        (b"gg-0123456789ab-" + b"Az09-_" * 7 + b"x", "0123456789ab"),
        (b"gg-0123456789AB-" + b"A" * 43, None),  # the id is lower-case hex
        (b"gg-0123456789ag-" + b"A" * 43, None),
        (b"gg-0123456789ab_" + b"A" * 43, None),  # the separator
        (b"gg-0123456789ab-" + b"A" * 42 + b"=", None),  # base64url without padding
        (b"gg-0123456789ab-" + b"A" * 42 + b"+", None),  # not the standard alphabet
        (b"gg-0123456789ab-" + b"A" * 42 + b"/", None),
        (b"gg-0123456789ab-" + b"A" * 42 + "é".encode()[:1], None),
    ],
)
def test_a_store_key_is_read_from_its_bytes_only_in_its_exact_form(token: bytes, key_id: str | None) -> None:
    from getgpt.server.admission.keys import _id_of

    assert len(token) == 59
    assert _id_of(token) == key_id


@pytest.mark.parametrize("route", ROUTES)
def test_a_missing_unknown_wrong_revoked_or_expired_key_gets_401(server: tuple[str, str], route: str) -> None:
    url, target = server
    _, key = make_key(target)
    assert send(url, route, key).status_code == 200
    refused(send(url, route, None), 401, "missing_api_key")
    refused(send(url, route, "gg-000000000000-" + "A" * 43), 401, "invalid_api_key")
    refused(send(url, route, key[:-4] + "AAAA" if not key.endswith("AAAA") else key[:-4] + "BBBB"), 401,
            "invalid_api_key")  # fmt: skip
    refused(send(url, route, "not-a-key-at-all"), 401, "invalid_api_key")
    gone, gone_key = make_key(target)
    revoke(target, gone.id)
    refused(send(url, route, gone_key), 401, "revoked_api_key")
    expired, expired_key = manage.create(name="late", expires=10, now=time.time() - 60)
    on_db(target, lambda db: db.add_key(expired))
    error = refused(send(url, route, expired_key), 401, "expired_api_key")
    assert "expired" in error["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_a_model_the_key_may_not_use_gets_403_naming_it(server: tuple[str, str], route: str) -> None:
    url, target = server
    _, key = make_key(target, models=["text"])
    assert send(url, route, key, "text").status_code == 200
    error = refused(send(url, route, key, "tools"), 403, "model_not_allowed")
    assert "'tools'" in error["message"] and error["param"] == "model"


@pytest.mark.parametrize("route", ROUTES)
def test_requests_over_the_keys_rpm_get_429_with_retry_after(server: tuple[str, str], route: str) -> None:
    url, target = server
    _, key = make_key(target, rpm=2)
    _, other = make_key(target, rpm=2)
    assert [send(url, route, key).status_code for _ in range(2)] == [200, 200]
    response = send(url, route, key)
    error = refused(response, 429, "rate_limit_exceeded")
    assert "2 requests a minute" in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 30
    assert send(url, route, other).status_code == 200  # a bucket per key


@pytest.mark.parametrize("route", ROUTES)
def test_a_key_over_its_tokens_a_minute_gets_429_once_its_real_usage_is_charged(
    server: tuple[str, str], route: str
) -> None:
    url, target = server
    _, key = make_key(target, tpm=TOKENS[route])  # one request's worth a minute
    assert send(url, route, key).status_code == 200
    response = send(url, route, key)
    error = refused(response, 429, "rate_limit_exceeded")
    assert "tokens a minute" in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60


@pytest.mark.parametrize("route", ROUTES)
def test_a_spent_budget_gets_429_insufficient_quota_saying_when_it_resets(
    server: tuple[str, str], route: str
) -> None:
    url, target = server
    _, key = make_key(target, budget_tokens=2 * TOKENS[route], budget_period="day")
    assert [send(url, route, key).status_code for _ in range(2)] == [200, 200]
    response = send(url, route, key)
    error = refused(response, 429, "insufficient_quota")
    assert error["type"] == "insufficient_quota"
    assert "a day is spent; it resets at" in error["message"] and error["message"].endswith("T00:00:00Z")
    assert 0 < int(response.headers["Retry-After"]) <= 86400
    _, total_key = make_key(target, budget_tokens=1, budget_period="total")
    assert send(url, route, total_key).status_code == 200
    assert "does not reset" in refused(send(url, route, total_key), 429, "insufficient_quota")["message"]


def test_getgpt_api_keys_work_beside_the_store_and_are_named_in_the_ledger_by_index(
    upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    target = str(tmp_path / "getgpt.db")
    config = ServerConfig(
        backend="openai",
        upstream=upstream.url + "v1",
        db=target,
        api_keys=("first-env-key", "second-env-key"),
    )
    with serve(create_app(config)) as url:
        _, key = make_key(target)
        answers = [send(url, ROUTES[0], "second-env-key"), send(url, ROUTES[0], key)]
        assert [answer.status_code for answer in answers] == [200, 200]
        answers.append(send(url, ROUTES[0], "third-env-key"))
        refused(answers[-1], 401, "invalid_api_key")
        wait_until(lambda: len(records(target)) == 3, 10)
    assert [row.key_id for row in records_of(target, answers)] == ["env-1", key[3:15], None]


def test_getgpt_api_keys_alone_need_no_database(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    config = ServerConfig(backend="openai", upstream=upstream.url + "v1", api_keys=("only-key",))
    app = create_app(config)
    assert app.state.keyring is None
    with serve(app) as url:
        assert send(url, ROUTES[0], "only-key").status_code == 200
        refused(send(url, ROUTES[0], "gg-000000000000-" + "A" * 43), 401, "invalid_api_key")
        assert httpx.get(url + "readyz", verify=SSL_CONTEXT).json() == {"status": "ready", "redis": "off"}
    assert list(tmp_path.iterdir()) == []


def test_a_key_reads_its_own_usage_and_budget_and_no_one_elses(server: tuple[str, str]) -> None:
    url, target = server
    mine, key = make_key(target, budget_tokens=1000, budget_period="month")
    _, other = make_key(target)
    for _ in range(2):
        assert send(url, ROUTES[0], key).status_code == 200
    assert send(url, ROUTES[0], other).status_code == 200
    wait_until(lambda: len(records(target)) >= 3, 10)
    answer = httpx.get(
        url + "v1/usage", headers={"Authorization": f"Bearer {key}"}, verify=SSL_CONTEXT
    ).json()
    assert answer["key"] == mine.id and answer["name"] == "tester"
    assert [(row["requests"], row["total_tokens"]) for row in answer["data"]] == [(2, 36)]
    assert answer["budget"] == {**answer["budget"], "tokens": 1000, "period": "month", "spent": 36}
    refused(httpx.get(url + "v1/usage", verify=SSL_CONTEXT), 401, "missing_api_key")


def test_the_admin_api_needs_its_key_and_manages_keys_that_work_at_once(server: tuple[str, str]) -> None:
    url, _ = server
    admin = {"Authorization": "Bearer admin-secret"}
    refused(httpx.get(url + "admin/keys", verify=SSL_CONTEXT), 401, "invalid_admin_key")
    wrong = {"Authorization": "Bearer admin-secret-no"}
    refused(httpx.get(url + "admin/keys", headers=wrong, verify=SSL_CONTEXT), 401, "invalid_admin_key")
    made = httpx.post(
        url + "admin/keys",
        json={"name": "carol", "models": ["text"], "rpm": 100},
        headers=admin,
        verify=SSL_CONTEXT,
    )
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    assert send(url, ROUTES[0], key).status_code == 200
    listed = httpx.get(url + "admin/keys", headers=admin, verify=SSL_CONTEXT).json()["data"]
    assert any(item["id"] == key_id and item["models"] == ["text"] for item in listed)
    assert all("key" not in item and "hash" not in item for item in listed)
    bad = httpx.post(
        url + "admin/keys", json={"name": "x", "colour": "red"}, headers=admin, verify=SSL_CONTEXT
    )
    assert refused(bad, 400, "invalid_request")["param"] == "colour"
    rotated = httpx.post(
        url + f"admin/keys/{key_id}/rotate", json={"grace": "1h"}, headers=admin, verify=SSL_CONTEXT
    )
    assert rotated.status_code == 201 and rotated.json()["rotated_from"] == key_id
    new_key = rotated.json()["key"]
    assert send(url, ROUTES[0], key).status_code == 200  # within its grace
    assert send(url, ROUTES[0], new_key).status_code == 200
    revoked = httpx.post(url + f"admin/keys/{key_id}/revoke", headers=admin, verify=SSL_CONTEXT)
    assert revoked.json()["status"] == "revoked"
    refused(send(url, ROUTES[0], key), 401, "revoked_api_key")  # this process forgot it at once
    refused(
        httpx.get(url + "admin/keys/000000000000", headers=admin, verify=SSL_CONTEXT), 404, "key_not_found"
    )
    shown = httpx.get(url + f"admin/keys/{rotated.json()['id']}", headers=admin, verify=SSL_CONTEXT).json()
    assert shown["name"] == "carol" and shown["status"] == "active"

    def usage() -> Any:
        return httpx.get(url + "admin/usage?by=model&since=1h", headers=admin, verify=SSL_CONTEXT).json()

    wait_until(lambda: any(row["model"] == "text" and row["requests"] == 3 for row in usage()["data"]), 10)
    assert usage()["by"] == "model"
    refused(
        httpx.get(url + "admin/usage?by=colour", headers=admin, verify=SSL_CONTEXT), 400, "invalid_request"
    )


def test_the_admin_api_is_off_without_its_key_and_an_empty_one_is_a_start_up_error(tmp_path: Path) -> None:
    target = str(tmp_path / "getgpt.db")
    with serve(create_app(ServerConfig(db=target))) as url:
        assert httpx.get(url + "admin/keys", verify=SSL_CONTEXT).status_code == 404
    with pytest.raises(ValueError, match="GETGPT_ADMIN_KEY is set but holds no value"):
        ServerConfig.from_env({"GETGPT_ADMIN_KEY": " ", "GETGPT_DB": target})
    with pytest.raises(ValueError, match="admin_key needs db"):
        ServerConfig(admin_key="x")


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_an_unreachable_database_is_said_by_readyz_and_the_policy_decides(
    tmp_path: Path, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At the stop the ledger tries the database, away all along, 2 s more for the usage it holds
    # (and then gives up, saying so): 0.2 s here, where what is tested is readyz and the policy.
    monkeypatch.setattr(Ledger, "aclose", functools.partialmethod(Ledger.aclose, patience=0.2))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = str(blocker / "getgpt.db")  # under a file: it can never be created
    config = ServerConfig(db=target, db_failure=policy, api_keys=("env-key",))
    with serve(create_app(config)) as url:
        ready = httpx.get(url + "readyz", verify=SSL_CONTEXT)
        assert ready.json()["database"] == "unreachable"
        key = "gg-0123456789ab-" + "A" * 43
        refused(send(url, ROUTES[0], key), 503, "database_unavailable")
        env = send(url, ROUTES[0], "env-key")
        if policy == "open":
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
            assert env.status_code == 200
        else:
            assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
            refused(env, 503, "database_unavailable")


def test_a_key_is_read_whatever_the_schemes_case_and_spaces(server: tuple[str, str]) -> None:
    url, target = server
    _, key = make_key(target)
    body = {"model": "text", "messages": HI}
    for authorization in (f"Bearer {key}", f"bearer {key}", f"BEARER   {key}"):
        answer = httpx.post(
            url + "v1/chat/completions",
            json=body,
            headers={"Authorization": authorization},
            verify=SSL_CONTEXT,
        )
        assert answer.status_code == 200, authorization
    for wrong in (f"Basic {key}", f"Bearer {key}x", f"Bearer {key[:-1]}!", f"Bearer {key[:14]}G{key[15:]}"):
        answer = httpx.post(
            url + "v1/chat/completions", json=body, headers={"Authorization": wrong}, verify=SSL_CONTEXT
        )
        assert answer.json()["error"]["code"] == "invalid_api_key", wrong


def test_the_openapi_document_has_the_usage_and_admin_routes_exactly_when_they_are_on(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = server
    paths = httpx.get(url + "openapi.json", verify=SSL_CONTEXT).json()["paths"]
    one = "/admin/keys/{key_id}"
    admin = {"/admin/keys", one, one + "/revoke", one + "/rotate", "/admin/usage"}
    assert admin | {"/v1/usage"} <= set(paths)
    assert set(paths["/admin/keys"]) == {"get", "post"}
    assert {"403", "429"} <= set(paths["/v1/chat/completions"]["post"]["responses"])
    with serve(create_app(ServerConfig(db=str(tmp_path / "g.db")))) as keys_only:
        paths = httpx.get(keys_only + "openapi.json", verify=SSL_CONTEXT).json()["paths"]
        assert "/v1/usage" in paths and not admin & set(paths)


@pytest.mark.parametrize("route", ROUTES)
def test_a_keyed_request_through_the_gateway_leaves_nothing_for_the_cyclic_collector(
    server: tuple[str, str], route: str
) -> None:
    # Every object of a request is freed by reference counting as it ends: what the cyclic
    # collector has to find instead costs CPU for every request (a young collection took ~0.2 s
    # every ~10,000 requests). Cycles found so far: the upstream reply's reader and its parser;
    # the reply slot, its charge and the request's scope.
    url, target = server
    _, key = make_key(target)
    with httpx.Client(timeout=10, verify=SSL_CONTEXT) as client:
        headers = {"Authorization": f"Bearer {key}"}

        def one() -> None:
            response = client.post(url + route.lstrip("/"), json=_body(route), headers=headers)
            assert response.status_code == 200, response.text

        for _ in range(5):
            one()  # warm-up: connections, caches
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(20):
                one()
            gc.collect()
            ours = [
                type(found).__qualname__
                for found in gc.garbage
                if type(found).__module__.startswith(("getgpt", "httptools"))
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert ours == []


def _body(route: str) -> dict[str, Any]:
    if route == "/api/chat/stream":
        return {"signature": encrypt(encode(build_request(HI, model="text")).decode())}
    if route == "/v1/embeddings":
        return {"model": "text", "input": "hi"}
    return {"model": "text", "messages": HI, "stream": True}
