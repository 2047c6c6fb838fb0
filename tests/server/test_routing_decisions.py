"""The routing's decisions, without a network: strategies, health and cooldowns on an injected clock,
the tries of one request and the answer once none is left (the processes are in test_routing.py)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from getgpt.client.transport import Timeouts
from getgpt.server.api_error import ApiError
from getgpt.server.config import Routing, UpstreamEntry
from getgpt.server.upstreams.health import FAILING, LIMITED, Health
from getgpt.server.upstreams.kinds import GetGptUpstream, OpenAIUpstream, Upstream
from getgpt.server.upstreams.routing import Failure, Router
from getgpt.server.upstreams.strategies import Latency, LeastInFlight, Member, Weighted


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _upstreams(*entries: UpstreamEntry) -> dict[str, Upstream]:
    timeouts = Timeouts(1.0, read=1.0, write=1.0, pool=1.0, head=1.0)
    kinds = {"openai": OpenAIUpstream, "getgpt": GetGptUpstream}
    return {
        entry.name: kinds[entry.kind](
            entry.name, entry.url, key=entry.api_key, timeouts=timeouts, max_in_flight=entry.max_in_flight
        )
        for entry in entries
    }


def _router(*entries: UpstreamEntry, clock: Clock | None = None, **options: object) -> Router:
    routing = Routing(tuple(entries), **options)  # type: ignore[arg-type]
    return Router(routing, _upstreams(*entries), clock=clock or Clock(), draw=random.Random(7))


def _entry(name: str, models: tuple[str, ...] = ("llama3",), **fields: object) -> UpstreamEntry:
    return UpstreamEntry(name, f"http://{name}.test/v1", models=tuple((m, None) for m in models), **fields)  # type: ignore[arg-type]


def _error(status: int, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(
        status, f"upstream answered HTTP {status}", type="upstream_error", code=status, headers=headers
    )


# -- strategies ----------------------------------------------------------------------------------


def _members(*weights: int) -> list[Member]:
    upstreams = _upstreams(*(_entry(f"u{i}") for i in range(len(weights))))
    return [Member(upstreams[f"u{i}"], None, weight) for i, weight in enumerate(weights)]


def test_smooth_weighted_round_robin_gives_exact_shares_interleaved() -> None:
    members = _members(1, 2, 3)
    # 3,000 picks, as many as test_routing.py's weights test once sent through a gateway (4 s of
    # CPU there); it now sends 300, to show that the file's weights reach this strategy.
    picks = [Weighted().pick(members).upstream.name for _ in range(3000)]
    assert Counter(picks) == {"u0": 500, "u1": 1000, "u2": 1500}
    assert picks[:6] == ["u2", "u1", "u0", "u2", "u1", "u2"]  # nginx's order: never a run of three


def test_least_in_flight_takes_the_less_loaded_of_two_for_its_weight() -> None:
    members = _members(1, 1, 1)
    members[0].health.in_flight, members[1].health.in_flight, members[2].health.in_flight = 5, 0, 5
    strategy = LeastInFlight(random.Random(1))
    picks = Counter(strategy.pick(members).upstream.name for _ in range(3000))
    # u1 wins every draw it is in (two of three draws); never a loaded one against it.
    assert 1900 < picks["u1"] < 2100
    heavy = _members(1, 4)
    heavy[0].health.in_flight, heavy[1].health.in_flight = 1, 3  # 1/1 against 3/4
    assert {strategy.pick(heavy).upstream.name for _ in range(50)} == {"u1"}


def test_latency_takes_the_fastest_scaled_by_its_load_and_tries_an_unmeasured_one_first() -> None:
    members = _members(1, 1, 1)
    for member, seconds in zip(members, (0.2, 0.05, 0.1), strict=True):
        member.health.succeeded(seconds)
    assert Latency().pick(members).upstream.name == "u1"
    members[1].health.in_flight = 3  # 0.05 x 4 > 0.1 x 1
    assert Latency().pick(members).upstream.name == "u2"
    fresh = _members(1, 1)
    fresh[0].health.succeeded(0.01)
    assert Latency().pick(fresh).upstream.name == "u1"  # not measured yet: 0


def test_the_time_to_first_byte_is_a_moving_average() -> None:
    health = Health()
    health.succeeded(1.0)
    health.succeeded(0.0)
    assert health.ttfb == pytest.approx(0.7)


# -- health --------------------------------------------------------------------------------------


def test_consecutive_failures_cool_an_upstream_and_a_success_clears_the_count() -> None:
    health = Health()
    rules = {"cooldown": 30.0, "failures_to_cool": 3}
    assert health.failed("503", 0.0, **rules) is None
    health.succeeded(0.1)
    assert health.failed("connect", 0.0, **rules) is None
    assert health.failed("timeout", 0.0, **rules) is None
    assert health.failed("502", 1.0, **rules) == 30.0
    assert health.cooled(30.9) and not health.open(30.9) and health.cooled_by == FAILING
    assert health.open(31.0)


def test_a_429_cools_at_once_for_its_retry_after_and_cooldown_0_never_cools() -> None:
    health = Health()
    assert health.failed("429", 0.0, cooldown=30.0, failures_to_cool=3, retry_after=5.0) == 5.0
    assert health.cooled(4.9) and health.open(5.0) and health.cooled_by == LIMITED
    never = Health()
    for _ in range(10):
        assert never.failed("429", 0.0, cooldown=0.0, failures_to_cool=1, retry_after=5.0) is None
    assert never.open(0.0)


def test_an_upstream_at_its_cap_is_not_open() -> None:
    health = Health(max_in_flight=2)
    health.in_flight = 2
    assert not health.open(0.0)
    health.in_flight = 1
    assert health.open(0.0)


# -- the tries of a request ----------------------------------------------------------------------


def test_tries_move_to_another_upstream_never_the_same_twice_within_attempts() -> None:
    router = _router(_entry("a"), _entry("b"), _entry("c"), attempts=2, failures_to_cool=5)
    attempts = router.attempts("llama3", deadline=2000.0)
    tried = []
    while (picked := attempts.next()) is not None:
        member, routed = picked
        assert routed == "llama3"
        tried.append(member.upstream.name)
        assert attempts.failed(member, Failure(_error(503), "503"))
    assert len(tried) == 2 and len(set(tried)) == 2
    error = attempts.error()
    assert error.status == 502 and "2 upstream tries for model 'llama3' failed" in error.message


def test_the_last_failure_decides_the_answer_after_several_tries() -> None:
    router = _router(_entry("a"), _entry("b"), failures_to_cool=5)
    attempts = router.attempts("llama3", deadline=2000.0)
    first = attempts.next()
    assert first is not None
    attempts.failed(first[0], Failure(_error(500), "500"))
    second = attempts.next()
    assert second is not None
    attempts.failed(second[0], Failure(_error(429, {"Retry-After": "7"}), "429", 7.0))
    error = attempts.error()
    assert (error.status, error.headers) == (429, {"Retry-After": "7"})
    timed_out = _router(_entry("a"), _entry("b"), failures_to_cool=5).attempts("llama3", 2000.0)
    for _ in range(2):
        picked = timed_out.next()
        assert picked is not None
        timed_out.failed(picked[0], Failure(ApiError(504, "upstream timed out"), "timeout"))
    assert timed_out.error().status == 504


def test_one_try_answers_as_the_one_upstream_did() -> None:
    router = _router(_entry("a"), attempts=3)
    attempts = router.attempts("llama3", deadline=2000.0)
    picked = attempts.next()
    assert picked is not None
    original = _error(503, {"Retry-After": "2"})
    attempts.failed(picked[0], Failure(original, "503", 2.0))
    assert attempts.next() is None
    assert attempts.error() is original


def test_a_refused_key_is_tried_elsewhere_only_where_another_key_is_held() -> None:
    same = _router(_entry("a", api_key="k1"), _entry("b", api_key="k1"))
    attempts = same.attempts("llama3", deadline=2000.0)
    picked = attempts.next()
    assert picked is not None
    assert not attempts.failed(picked[0], Failure(_error(401), "401"))
    other = _router(_entry("a", api_key="k1"), _entry("b", api_key="k2"))
    attempts = other.attempts("llama3", deadline=2000.0)
    picked = attempts.next()
    assert picked is not None
    assert attempts.failed(picked[0], Failure(_error(403), "403"))


def test_a_models_fallbacks_follow_it_each_with_attempts_of_its_own() -> None:
    router = _router(
        _entry("x", ("gpt-4o",)),
        _entry("y", ("gpt-4o",)),
        _entry("z", ("llama3",)),
        _entry("w", ("mistral",)),
        attempts=1,
        failures_to_cool=5,
        fallbacks=(("gpt-4o", ("llama3",)), ("llama3", ("mistral",))),
    )
    attempts = router.attempts("gpt-4o", deadline=2000.0)
    seen = []
    while (picked := attempts.next()) is not None:
        seen.append((picked[1], picked[0].upstream.name))
        attempts.failed(picked[0], Failure(_error(500), "500"))
    assert [model for model, _ in seen] == ["gpt-4o", "llama3", "mistral"]


def test_an_alias_routes_to_its_model_and_an_unknown_model_is_routed_nowhere() -> None:
    router = _router(_entry("a", ("llama3",)), aliases=(("gpt-3.5-turbo", "llama3"),))
    picked = router.attempts("gpt-3.5-turbo", 2000.0).next()
    assert picked is not None and picked[1] == "llama3"
    nowhere = router.attempts("qwen", 2000.0)
    assert nowhere.next() is None
    error = nowhere.error()
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")


def test_every_upstream_cooled_is_a_503_with_the_wait_until_the_first_comes_back() -> None:
    clock = Clock()
    router = _router(_entry("a"), _entry("b"), clock=clock, failures_to_cool=1, cooldown=30.0)
    router.failed(router.upstreams[0], Failure(_error(500), "500"))
    clock.now += 10
    router.failed(router.upstreams[1], Failure(_error(429), "429", 4.2))
    assert not router.ready()
    attempts = router.attempts("llama3", deadline=clock.now + 60)
    assert attempts.next() is None
    error = attempts.error()
    assert (error.status, error.code, error.headers) == (503, "no_healthy_upstream", {"Retry-After": "5"})
    clock.now += 4.2  # b's Retry-After has passed: b alone is picked
    picked = router.attempts("llama3", deadline=clock.now + 60).next()
    assert picked is not None and picked[0].upstream.name == "b"
    assert router.ready()
    assert [upstream.name for upstream in router.cooled_for_failing()] == ["a"]  # a 429 is not probed


def test_every_upstream_at_its_cap_is_a_503_to_retry_shortly() -> None:
    router = _router(_entry("a", max_in_flight=1))
    router.upstreams[0].health.in_flight = 1
    attempts = router.attempts("llama3", deadline=2000.0)
    assert attempts.next() is None
    error = attempts.error()
    assert (error.status, error.code, error.headers) == (503, "upstreams_full", {"Retry-After": "1"})


def test_no_try_begins_once_the_requests_deadline_has_passed() -> None:
    clock = Clock()
    router = _router(_entry("a"), _entry("b"), clock=clock, failures_to_cool=5)
    attempts = router.attempts("llama3", deadline=clock.now + 1)
    picked = attempts.next()
    assert picked is not None
    attempts.failed(picked[0], Failure(_error(503), "503"))
    clock.now += 1
    assert attempts.next() is None


def test_named_models_take_their_pool_and_others_go_to_the_upstreams_serving_any() -> None:
    router = _router(_entry("named", ("llama3",)), _entry("any", ("*",)))
    assert {router.attempts("llama3", 2000.0).next()[0].upstream.name for _ in range(20)} == {"named"}  # type: ignore[index]
    assert router.attempts("whatever", 2000.0).next()[0].upstream.name == "any"  # type: ignore[index]


def test_forwarded_routes_keep_to_openai_upstreams() -> None:
    router = _router(
        UpstreamEntry("chain", "http://chain.test/", "getgpt", models=(("llama3", None),)),
        _entry("openai"),
    )
    picks = {router.attempts("llama3", 2000.0, routes_only=True).next()[0].upstream.name for _ in range(20)}  # type: ignore[index]
    assert picks == {"openai"}
    only_chain = _router(UpstreamEntry("chain", "http://chain.test/", "getgpt", models=(("llama3", None),)))
    attempts = only_chain.attempts("llama3", 2000.0, routes_only=True)
    assert attempts.next() is None and attempts.error().code == "unsupported_endpoint"
