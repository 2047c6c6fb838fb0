"""The Redis-backed twins of the rate limiter and the replay guard, against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from getgpt.server import ServerConfig, create_app
from getgpt.server.admission import shared_state
from getgpt.server.admission.security import RateLimiter, ReplayGuard
from getgpt.server.admission.shared_state import SharedRateLimiter, SharedReplayGuard, SharedState
from getgpt.server.api_error import ApiError

from ..support.odd_redis import OddRedis, bulk
from ..support.processes import SSL_CONTEXT
from ..support.servers import serve, wait_until
from ..support.services import Redis


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    with Redis() as server:
        yield server


def _state(redis: Redis, failure: str = "open") -> SharedState:
    # A live Redis, given time to answer on a loaded machine (a command past the server's 0.25 s
    # would fall back to the process's own limits): these tests are about what Redis keeps;
    # the timeout and the fallback have tests of their own (below, and in test_replicas.py).
    return SharedState(redis.url, failure, timeout=5.0)


def test_the_shared_limit_admits_the_burst_then_one_request_per_interval(redis: Redis) -> None:
    async def run() -> tuple[list[float], float]:
        state = _state(redis)
        try:
            # One a second: the four takes below fit in that however loaded the machine, so the
            # fourth is refused (a faster rate could refill the bucket while they run).
            limiter = SharedRateLimiter(state, RateLimiter(60, burst=3))
            waits = [await limiter.take("client a") for _ in range(4)]
            # Waiting as told is the behaviour under test, on Redis's clock (TIME), which no test
            # can move: the named wait must be enough.
            await asyncio.sleep(waits[-1] + 0.01)
            return waits, await limiter.take("client a")
        finally:
            await state.aclose()

    waits, later = asyncio.run(run())
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0 < waits[3] <= 1.0
    assert later == 0.0


def test_concurrent_requests_never_share_the_last_token(redis: Redis) -> None:
    async def run() -> list[float]:
        states = [_state(redis) for _ in range(4)]  # four processes' worth of clients
        try:
            limiters = [SharedRateLimiter(state, RateLimiter(1, burst=10)) for state in states]
            return await asyncio.gather(*(limiters[i % 4].take("client b") for i in range(100)))
        finally:
            for state in states:
                await state.aclose()

    waits = asyncio.run(run())
    assert waits.count(0.0) == 10


def test_clients_have_buckets_of_their_own(redis: Redis) -> None:
    async def run() -> tuple[float, float]:
        state = _state(redis)
        try:
            limiter = SharedRateLimiter(state, RateLimiter(1, burst=1))
            await limiter.take("client c")
            return await limiter.take("client c"), await limiter.take("client d")
        finally:
            await state.aclose()

    again, other = asyncio.run(run())
    assert again > 50 and other == 0.0


def test_a_uuid_is_claimed_once_until_released_or_expired(redis: Redis) -> None:
    async def run() -> list[bool]:
        state = _state(redis)
        try:
            # A window of a second: the claims below fit in it however loaded the machine.
            first = SharedReplayGuard(state, ReplayGuard(1.0))
            second = SharedReplayGuard(state, ReplayGuard(1.0))  # another process
            seen = [await first.claim("u-1"), await second.claim("u-1")]
            await second.release("u-1")
            seen.append(await second.claim("u-1"))
            seen.append(await first.claim("u-1"))
            # Expiry is the behaviour under test, kept by Redis (PX) on its own clock: waited out.
            await asyncio.sleep(1.05)
            seen.append(await first.claim("u-1"))
            return seen
        finally:
            await state.aclose()

    assert asyncio.run(run()) == [True, False, True, False, True]


def test_without_redis_open_falls_back_to_this_process_and_closed_refuses() -> None:
    async def run() -> tuple[list[float], bool, bool, ApiError, float]:
        dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
        open_state, closed_state = SharedState(dead, "open"), SharedState(dead, "closed")
        try:
            started = time.monotonic()
            # One a minute after a burst of 2: the fallback's bucket cannot refill during the test.
            limiter = SharedRateLimiter(open_state, RateLimiter(1, burst=2))
            waits = [await limiter.take("client e") for _ in range(3)]
            guard = SharedReplayGuard(open_state, ReplayGuard(60))
            claims = await guard.claim("u-2"), await guard.claim("u-2")
            with pytest.raises(ApiError) as refused:
                await SharedRateLimiter(closed_state, RateLimiter(1, burst=2)).take("client e")
            assert not open_state.available and not closed_state.available
            return waits, claims[0], claims[1], refused.value, time.monotonic() - started
        finally:
            await open_state.aclose()
            await closed_state.aclose()

    waits, first, second, error, elapsed = asyncio.run(run())
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0  # this process's own bucket of 2
    assert (first, second) == (True, False)
    assert error.status == 503 and error.code == "shared_state_unavailable"
    assert error.headers["Retry-After"] == "1"
    assert elapsed < 2


# A Redis (or a proxy posing as one) that answers the rate-limit script with a string: every chat
# request was a 500 under both policies, while /readyz said all was well. One whose handshake
# answer cannot be read stopped the server at start.
UNREADABLE = {
    "script answers a string": {"EVALSHA": bulk("soon"), "EVAL": bulk("soon")},
    "handshake answers a string": {"HELLO": bulk("what")},
}


@pytest.mark.parametrize("replies", list(UNREADABLE.values()), ids=list(UNREADABLE))
@pytest.mark.parametrize(
    ("policy", "chat_status", "ready"),
    [("open", 200, (200, "degraded")), ("closed", 503, (503, "unavailable"))],
)
def test_a_redis_reply_that_cannot_be_read_counts_as_redis_down(
    replies: dict[str, bytes], policy: str, chat_status: int, ready: tuple[int, str]
) -> None:
    with OddRedis(replies) as redis:
        config = ServerConfig(
            redis_url=redis.url, redis_failure=policy, rate_limit=600, rate_burst=100, replay_window=60
        )
        with serve(create_app(config)) as url:
            body = {"messages": [{"role": "user", "content": "hi"}]}
            answers = [
                httpx.post(url + "v1/chat/completions", json=body, timeout=5, verify=SSL_CONTEXT)
                for _ in range(3)
            ]
            assert [answer.status_code for answer in answers] == [chat_status] * 3
            if policy == "closed":
                assert answers[0].json()["error"]["code"] == "shared_state_unavailable"

            def readyz() -> tuple[int, str, str]:
                answer = httpx.get(url + "readyz", timeout=5, verify=SSL_CONTEXT)
                return answer.status_code, answer.json()["status"], answer.json()["redis"]

            assert readyz() == (*ready, "unusable")
            # It may still answer PING: the probe must not take that for "back" while the
            # answers to the twins' own commands still cannot be read. Two probes more:
            asked = len(redis.commands)
            wait_until(lambda: len(redis.commands) > asked + 1, 5)
            assert readyz() == (*ready, "unusable")
            assert (
                httpx.post(url + "v1/chat/completions", json=body, timeout=5, verify=SSL_CONTEXT).status_code
                == chat_status
            )


def test_unreadable_replies_of_the_shared_twins_raise_for_the_outage_and_good_ones_are_read() -> None:
    assert shared_state._wait_of(250_000) == 0.25
    assert shared_state._claimed(True) is True and shared_state._claimed(None) is False
    for reply in (b"soon", "12", 1.5, True, [1], None):
        with pytest.raises(shared_state.UnreadableReply):
            shared_state._wait_of(reply)
    for reply in (False, b"OK", 1):
        with pytest.raises(shared_state.UnreadableReply):
            shared_state._claimed(reply)
