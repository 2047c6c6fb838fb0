"""Keys, budgets and the ledger across real ``getgpt serve`` processes sharing a real PostgreSQL
(and a real redis-server): a budget spent exactly at its limit across two replicas, a revocation
reaching the other replica within its bound, SIGTERM mid-load losing no record, the database
stopped and started mid-run under both policies, and a key's secret found nowhere afterwards."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from ..support.keystore import make_key, records
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import getgpt_serve, run_getgpt
from ..support.services import Postgres, Redis
from ..support.waiting import wait_until

HI = [{"role": "user", "content": "how many tokens is this"}]


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    with Redis() as server:
        yield server


def _chat(url: str, key: str, stream: bool = False, model: str = "gpt-3.5-turbo") -> httpx.Response:
    return httpx.post(
        url + "v1/chat/completions",
        json={"model": model, "messages": HI, "stream": stream},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        verify=SSL_CONTEXT,
    )


def _tokens(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()["usage"]["total_tokens"])


def test_a_budget_is_spent_exactly_at_its_limit_across_two_replicas_sharing_postgres_and_redis(
    postgres: Postgres, redis: Redis
) -> None:
    target = postgres.create_database()
    _, probe = make_key(target, "probe")
    options = ("--db", target, "--redis", redis.url)
    with getgpt_serve(*options) as first, getgpt_serve(*options) as second:
        cost = _tokens(_chat(first.url, probe))  # what one request costs (the echo's usage)
        exact, exact_key = make_key(target, "exact", budget_tokens=4 * cost, budget_period="day")
        near, near_key = make_key(target, "near", budget_tokens=4 * cost - 1, budget_period="day")
        for key in (exact_key, near_key):
            statuses = [_chat((first, second)[i % 2].url, key).status_code for i in range(6)]
            assert statuses == [200, 200, 200, 200, 429, 429]  # alternating replicas
        wait_until(lambda: len(records(target)) == 13, 15)
        spent = {k: sum(r.prompt_tokens + r.completion_tokens for r in records(target) if r.key_id == k)
                 for k in (exact.id, near.id)}  # fmt: skip
    assert spent[exact.id] == 4 * cost  # exactly the budget
    assert spent[near.id] == 4 * cost == near.budget_tokens + 1  # one request's worth over at most
    refusal = [r for r in records(target) if r.key_id == near.id and r.status == 429]
    assert len(refusal) == 2 and all(r.prompt_tokens == 0 for r in refusal)


def test_concurrent_requests_on_two_replicas_overrun_a_budget_by_at_most_the_requests_in_flight(
    postgres: Postgres, redis: Redis
) -> None:
    target = postgres.create_database()
    _, probe = make_key(target, "probe")
    options = ("--db", target, "--redis", redis.url)
    with getgpt_serve(*options) as first, getgpt_serve(*options) as second:
        cost = _tokens(_chat(first.url, probe))
        _, key = make_key(target, "burst", budget_tokens=10 * cost, budget_period="total")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: _chat((first, second)[i % 2].url, key).status_code, range(40)))
    assert statuses.count(200) >= 10
    assert statuses.count(200) <= 10 + 8 - 1  # never more than the requests in flight at the limit
    assert statuses.count(429) == 40 - statuses.count(200)


@pytest.mark.parametrize("shared", ["redis", "ttl"])
def test_a_revocation_reaches_the_other_replica_within_its_bound(
    postgres: Postgres, redis: Redis, shared: str
) -> None:
    target = postgres.create_database()
    ttl = 1.0
    options = ["--db", target, "--key-cache-ttl", str(ttl)]
    if shared == "redis":
        options += ["--redis", redis.url]
    env = {"GETGPT_ADMIN_KEY": "the-admin-key"}
    record, key = make_key(target, "to-revoke")
    with getgpt_serve(*options, env=env) as first, getgpt_serve(*options, env=env) as second:
        assert _chat(second.url, key).status_code == 200  # cached there now
        if shared == "redis":
            revoked = httpx.post(
                first.url + f"admin/keys/{record.id}/revoke",
                headers={"Authorization": "Bearer the-admin-key"},
                verify=SSL_CONTEXT,
            )
            assert revoked.status_code == 200
            bound = 1.0  # published at once; the poll's margin is for a loaded machine
        else:
            done = run_getgpt("keys", "revoke", record.id, "--db", target)
            assert done.returncode == 0, done.stderr
            bound = ttl + 2.0  # one refresh, and the refresh's own queries
        assert _chat(first.url, key).status_code == 401 or shared == "ttl"
        wait_until(lambda: _chat(second.url, key).status_code == 401, bound)
        assert _chat(second.url, key).json()["error"]["code"] == "revoked_api_key"


def test_sigterm_mid_load_loses_no_record(postgres: Postgres) -> None:
    target = postgres.create_database()
    record, key = make_key(target, "load")

    def one(url: str) -> int:
        try:
            response = _chat(url, key, True)
        except httpx.TransportError:
            return 0  # sent after the server stopped accepting: never answered, never recorded
        assert response.status_code != 200 or "data: [DONE]" in response.text
        return response.status_code

    with getgpt_serve("--db", target, "--echo-delay", "0.2", "--shutdown-grace", "30") as server:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            running = [pool.submit(one, server.url) for _ in range(20)]
            wait_until(lambda: server.health()["active_streams"] >= 10, 20)
            os.kill(server.process.pid, signal.SIGTERM)
            answered = [future.result() for future in running]
        assert server.process.wait(30) in (0, -signal.SIGTERM)
    rows = [r for r in records(target) if r.key_id == record.id]
    assert answered.count(200) >= 10 and set(answered) <= {0, 200}
    assert len(rows) == answered.count(200)  # every answered request, written on the way out
    assert all(r.status == 200 and r.completion_tokens > 0 for r in rows)


@pytest.fixture(scope="module")
def stoppable() -> Iterator[Postgres]:
    """A PostgreSQL server of the outage tests' own, which they stop and start (initdb: ~0.6 s of
    CPU and ~0.9 s, once for both policies); each test uses a database of its own on it."""
    with Postgres() as database:
        yield database


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_the_database_stopped_and_started_mid_run(stoppable: Postgres, policy: str) -> None:
    database = stoppable
    if database.process.poll() is not None:  # an earlier test failed while it was stopped
        database.start()
    target = database.create_database()
    record, key = make_key(target, "outage")
    options = ("--db", target, "--db-failure", policy, "--key-cache-ttl", "0.5")
    with getgpt_serve(*options) as server:
        assert _chat(server.url, key).status_code == 200
        database.stop()
        wait_until(
            lambda: httpx.get(server.url + "readyz", verify=SSL_CONTEXT).json()["database"] == "unreachable",
            15,
        )
        ready = httpx.get(server.url + "readyz", verify=SSL_CONTEXT)
        during = [_chat(server.url, key) for _ in range(3)]
        if policy == "open":
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
            assert [r.status_code for r in during] == [200, 200, 200]  # the key is cached
        else:
            assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
            assert {r.json()["error"]["code"] for r in during} == {"database_unavailable"}
            assert all(r.headers["Retry-After"] == "1" for r in during)
        database.start()
        wait_until(
            lambda: httpx.get(server.url + "readyz", verify=SSL_CONTEXT).json()["database"] == "ok", 15
        )
        assert _chat(server.url, key).status_code == 200
        # What the ledger kept in memory during the outage is written once it is back.
        wait_until(lambda: len(records(target)) == 5, 15)
    found = [(r.key_id, r.status) for r in records(target)]
    # Closed, the key is not even looked at: the refusals name no key.
    during = (record.id, 200) if policy == "open" else (None, 503)
    assert found == [(record.id, 200), during, during, during, (record.id, 200)]


def test_a_keys_secret_appears_in_no_log_line_ledger_row_metric_or_error_body(
    postgres: Postgres, tmp_path: object
) -> None:
    target = postgres.create_database()
    record, key = make_key(
        target, "secretive", models=["gpt-3.5-turbo"], budget_tokens=1, budget_period="day"
    )
    revoked, revoked_key = make_key(target, "revoked")
    _, narrow_key = make_key(target, "narrow", models=["gpt-3.5-turbo"])
    secrets = [k.split("-", 2)[2] for k in (key, revoked_key, narrow_key)]  # the secret may hold "-"
    wrong = key[:-6] + "ZZZZZZ" if not key.endswith("ZZZZZZ") else key[:-6] + "YYYYYY"
    secrets.append(wrong.split("-", 2)[2])
    seen: list[str] = []
    options = ("--db", target, "--log-level", "debug", "--log-format", "json")
    with getgpt_serve(*options, env={"GETGPT_ADMIN_KEY": "admin-key-x"}) as server:
        seen.append(_chat(server.url, key).text)  # admitted, spends the budget
        seen.append(_chat(server.url, key).text)  # 429 insufficient_quota
        seen.append(_chat(server.url, narrow_key, model="other").text)  # 403
        seen.append(_chat(server.url, wrong).text)  # 401
        run_getgpt("keys", "revoke", revoked.id, "--db", target)
        seen.append(_chat(server.url, revoked_key).text)
        seen.append(
            httpx.get(
                server.url + "v1/usage", headers={"Authorization": f"Bearer {key}"}, verify=SSL_CONTEXT
            ).text
        )
        seen.append(
            httpx.get(
                server.url + "admin/keys", headers={"Authorization": "Bearer admin-key-x"}, verify=SSL_CONTEXT
            ).text
        )
        seen.append(httpx.get(server.url + "metrics", verify=SSL_CONTEXT).text)
        seen.append(httpx.get(server.url + "healthz", verify=SSL_CONTEXT).text)
        wait_until(lambda: len(records(target)) >= 5, 15)
        log = server.output()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
        log = server.output()
    rows = [json.dumps(list(row)) for row in records(target)]
    listing = run_getgpt("keys", "list", "--db", target, "--json").stdout
    usage = run_getgpt("usage", "--db", target, "--format", "json").stdout
    assert record.id in log or any(record.id in row for row in rows)  # the id names the key...
    for secret in secrets:  # ...and the secret appears nowhere
        for where, text in [("log", log), ("listing", listing), ("usage", usage), *(("row", r) for r in rows),
                            *(("answer", s) for s in seen)]:  # fmt: skip
            assert secret not in text, f"a key's secret in a {where}: {text[:200]}"
    assert "insufficient_quota" in seen[1] and "model_not_allowed" in seen[2]


def test_getgpt_db_upgrade_brings_a_fresh_database_to_the_current_schema(postgres: Postgres) -> None:
    target = postgres.create_database()
    first = run_getgpt("db", "upgrade", "--db", target)
    again = run_getgpt("db", "upgrade", "--db", target)
    assert first.returncode == 0 and "schema version 1 (applied 1)" in first.stdout
    assert again.returncode == 0 and "(nothing to apply)" in again.stdout


def test_a_keys_rpm_and_tpm_hold_across_two_replicas_through_redis(postgres: Postgres, redis: Redis) -> None:
    target = postgres.create_database()
    _, probe = make_key(target, "probe")
    options = ("--db", target, "--redis", redis.url)
    with getgpt_serve(*options) as first, getgpt_serve(*options) as second:
        cost = _tokens(_chat(first.url, probe))
        _, rpm_key = make_key(target, "rpm", rpm=3)
        _, tpm_key = make_key(target, "tpm", tpm=2 * cost)
        replicas = (first, second)
        rpm = [_chat(replicas[i % 2].url, rpm_key) for i in range(5)]
        tpm = [_chat(replicas[i % 2].url, tpm_key) for i in range(3)]
    # Alone, each replica would have admitted 3 of rpm's 5 and 2 of tpm's 3.
    assert [r.status_code for r in rpm] == [200, 200, 200, 429, 429]
    assert [r.status_code for r in tpm] == [200, 200, 429]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in (*rpm[3:], tpm[2]))
