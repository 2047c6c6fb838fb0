"""Two ``getgpt serve --config`` replicas sharing a real redis-server: an upstream one replica saw
fail is cooled for both, and taken back for both (issue 19, "How it is checked" (6)); while Redis
is down, ``--redis-failure`` decides as it does for the limits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from ..support.fleet import FleetUpstream, fleet, upstream_state, write_config
from ..support.processes import SSL_CONTEXT
from ..support.serve_process import ServeProcess, getgpt_serve
from ..support.services import Redis
from ..support.waiting import wait_until


def _chat(url: str) -> httpx.Response:
    return httpx.post(
        url + "v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
        verify=SSL_CONTEXT,
    )


def _by(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-getgpt-upstream"]


@contextlib.contextmanager
def _replicas(
    tmp_path: Path, ups: dict[str, FleetUpstream], redis: Redis, *options: str, **routing: object
) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    config = write_config(
        tmp_path / "g.toml",
        [{"name": name, "url": upstream.v1} for name, upstream in ups.items()],
        routing=routing,
    )
    with (
        getgpt_serve("--config", str(config), "--redis", redis.url, *options) as first,
        getgpt_serve("--config", str(config), "--redis", redis.url, *options) as second,
    ):
        yield first, second


def test_a_429_seen_by_replica_a_keeps_replica_b_away_from_that_upstream(tmp_path: Path) -> None:
    with fleet("a", "b") as ups, Redis() as redis:
        ups["a"].control(status=429, retry_after="30")
        with _replicas(tmp_path, ups, redis, **{"health-interval": 1}) as (first, second):
            while ups["a"].counts()["chat"] == 0:
                assert _by(_chat(first.url)) == "b"  # the 429 is never the client's
            wait_until(
                lambda: upstream_state(second.url, "a")["state"] == "cooled", 10, "b's view of a cooled"
            )
            assert upstream_state(second.url, "a")["cooled_for"] == "rate_limited"
            ups["a"].control()  # it would answer now: only the Retry-After A saw keeps B away
            for _ in range(20):
                assert _by(_chat(second.url)) == "b"
            assert ups["a"].counts()["chat"] == 1 and ups["a"].counts()["models"] == 0  # nor probed


def test_an_upstream_cooled_for_failing_is_taken_back_by_both_once_a_probe_answers(tmp_path: Path) -> None:
    with fleet("a", "b") as ups, Redis() as redis:
        ups["a"].control(status=503, probe_status=503)
        with _replicas(
            tmp_path, ups, redis, **{"failures-to-cool": 1, "health-interval": 1, "cooldown": 120}
        ) as (
            first,
            second,
        ):
            while ups["a"].counts()["chat"] == 0:
                assert _by(_chat(first.url)) == "b"
            wait_until(lambda: upstream_state(second.url, "a")["state"] == "cooled", 10, "cooled for B")
            sent = ups["a"].counts()["chat"]
            for _ in range(10):
                assert _by(_chat(second.url)) == "b"
            assert ups["a"].counts()["chat"] == sent
            ups["a"].control()  # back: the next probe (by either) answers, and both take it back
            for replica in (first, second):
                wait_until(lambda r=replica: upstream_state(r.url, "a")["state"] == "healthy", 10, "a back")
            wait_until(lambda: _by(_chat(second.url)) == "a", 10, "B sending to a again")


def test_while_redis_is_down_closed_refuses_routed_requests_and_open_serves_them(tmp_path: Path) -> None:
    with fleet("a") as ups, Redis() as redis:
        config = write_config(tmp_path / "g.toml", [{"name": "a", "url": ups["a"].v1}])
        with (
            getgpt_serve(
                "--config", str(config), "--redis", redis.url, "--redis-failure", "closed"
            ) as closed,
            getgpt_serve("--config", str(config), "--redis", redis.url) as open_,
        ):
            assert _by(_chat(closed.url)) == "a"
            redis.stop()
            wait_until(
                lambda: httpx.get(closed.url + "readyz", verify=SSL_CONTEXT).status_code == 503,
                10,
                "closed sees Redis gone",
            )
            refused = _chat(closed.url)
            assert (
                refused.status_code == 503 and refused.json()["error"]["code"] == "shared_state_unavailable"
            )
            embedded = httpx.post(
                closed.url + "v1/embeddings", json={"model": "m", "input": "x"}, verify=SSL_CONTEXT
            )
            assert embedded.status_code == 503
            wait_until(
                lambda: httpx.get(open_.url + "readyz", verify=SSL_CONTEXT).json()["redis"] == "unreachable",
                10,
            )
            assert _by(_chat(open_.url)) == "a"
