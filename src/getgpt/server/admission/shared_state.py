"""State shared by every worker and replica, in Redis: the rate limit, the replay guard, and the
upstreams' cooldowns.

Without ``--redis`` each process keeps its own buckets and uuids (:mod:`getgpt.server.admission.security`),
so two replicas give a client twice its limit and let a replay through on the other one. With
``--redis URL`` (``GETGPT_REDIS_URL``) the twins here keep them in Redis instead:

- :class:`SharedRateLimiter`: the same limit as :class:`~getgpt.server.admission.security.RateLimiter`
  (``rate_limit`` a minute, ``rate_burst`` saved up), as GCRA in one Lua script: one key per
  client holding its *theoretical arrival time*, read and moved in one atomic step on Redis's
  own clock, so replicas with skewed clocks still agree and two requests can never both take
  the last token.
- :class:`SharedReplayGuard`: ``SET uuid NX PX window`` claims a uuid; ``DEL`` gives it back when
  its request failed before a reply began.
- :class:`SharedCooldowns`: an upstream one process cools is cooled for all: ``SET key why PX ms``
  (the key names the upstream and its URL), read back by every process twice a second with one
  pipelined ``GET`` and ``PTTL`` a key -- the time left as Redis counts it, so clocks need not
  agree; ``DEL`` when a probe finds it back.

**When Redis cannot be reached** (refused, reset, or silent for 250 ms: every socket has that
timeout and no command is retried, so a request never waits longer), the process logs one warning
for the outage, ``/readyz`` reports ``"redis": "unreachable"``, and a probe pings Redis every
second; requests do not touch Redis again until it answers, then the shared state resumes (and an
info line says so). **A reply that cannot be read** -- the rate-limit script answered with a
string, a handshake the client cannot parse, anything a command raises -- is an outage too,
reported as ``"redis": "unusable"``; its probe also runs each twin's own command on a key of its
own and reads the answer, since such a Redis still answers ``PING``. Meanwhile
``--redis-failure`` decides, for both defences alike:

- ``open`` (the default): chat requests are served, and each process applies the rate limit, the
  replay guard and its upstreams' cooldowns on its own, as without ``--redis`` -- limits hold per
  process, a replay is caught only by the process that saw the first request, an upstream is
  cooled by each process that sees it fail. ``/readyz`` stays 200.
- ``closed``: chat requests (and forwarded ones) get 503 ``shared_state_unavailable`` with
  ``Retry-After: 1``; the rest of the server (health, models, the page) answers as usual.
  ``/readyz`` answers 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..api_error import ApiError, try_later

__all__ = [
    "LocalGuard",
    "LocalLimiter",
    "SharedCooldowns",
    "SharedRateLimiter",
    "SharedReplayGuard",
    "SharedState",
    "UnreadableReply",
]

log = logging.getLogger("getgpt.server")

KEY_PREFIX = "getgpt:"
TIMEOUT = 0.25
PROBE_EVERY = 1.0

# GCRA. KEYS[1]: the client's key. ARGV[1]: microseconds between requests at the steady rate;
# ARGV[2]: the burst, in requests. Returns 0 when admitted, else microseconds until it would be.
# Times are whole microseconds of Redis's clock, written with %d: Lua's own number-to-string
# keeps 14 digits, which would round a 16-digit time.
_GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat + interval - burst * interval
if now < allowed_at then return math.ceil(allowed_at - now) end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1)
return 0
"""


def _redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis that cannot be reached raises (anything else a command raises: an unusable one)."""
    from redis.exceptions import ConnectionError, TimeoutError

    # OSError: a socket error the client did not wrap; TimeoutError: asyncio's, likewise.
    return (ConnectionError, TimeoutError, OSError, asyncio.TimeoutError)


class UnreadableReply(Exception):
    """Redis answered a command with what the command never returns."""


def _wait_of(reply: object) -> float:
    """Seconds to wait, from the rate-limit script's reply: whole microseconds, as an integer."""
    if not isinstance(reply, int) or isinstance(reply, bool):
        raise UnreadableReply(f"the rate-limit script answered {type(reply).__name__} {reply!r:.40}")
    return reply / 1_000_000


def _claimed(reply: object) -> bool:
    """Whether ``SET NX`` stored the key: redis-py reads ``OK`` as True, nothing as None."""
    if reply is True or reply is None:
        return reply is True
    raise UnreadableReply(f"SET NX answered {reply!r:.40}")


class LocalLimiter(Protocol):
    """What a twin needs of :class:`~getgpt.server.admission.security.RateLimiter` (and falls back on)."""

    rate: float  # requests a second
    burst: float

    def take(self, client: str) -> float: ...


class LocalGuard(Protocol):
    """What a twin needs of :class:`~getgpt.server.admission.security.ReplayGuard`."""

    window: float

    def claim(self, uuid: str) -> bool: ...

    def release(self, uuid: str) -> None: ...


def _key(kind: str, name: str) -> str:
    # A digest, so a long uuid costs Redis no more than a short one.
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return KEY_PREFIX + kind + ":" + digest


class SharedState:
    """One process's Redis client, and whether Redis is answering."""

    def __init__(self, url: str, failure: str, *, timeout: float = TIMEOUT, probe_every: float = PROBE_EVERY):
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.redis: Any = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.fail_open = failure == "open"
        self.available = True
        #: Why it is not available: "unreachable", or "unusable" (it answered what cannot be read).
        self.reason = "unreachable"
        self.errors = _redis_errors()
        #: Each twin's own command, run by the probe while Redis is down: a Redis whose answers
        #: cannot be read still answers PING.
        self.checks: list[Callable[[], Awaitable[None]]] = []
        self._probe_every = probe_every
        self._down_since: float | None = None
        self._probe: asyncio.Task[None] | None = None
        self.gcra = self.redis.register_script(_GCRA)

    @property
    def status(self) -> str:
        return "ok" if self.available else self.reason

    def lost(self, exc: BaseException) -> None:
        """Redis failed a command: note the outage (logged once) and stop using Redis until it is back."""
        reason = "unreachable" if isinstance(exc, self.errors) else "unusable"
        if not self.available:
            self.reason = reason  # what the probe found last
            return
        self.available = False
        self.reason = reason
        self._down_since = time.monotonic()
        policy = (
            "each process applies the rate limit and replay guard on its own"
            if self.fail_open
            else "chat requests get 503"
        )
        log.warning("Redis is %s (%s); until it is back, %s", reason, type(exc).__name__, policy)

    def _back(self) -> None:
        if self.available:
            return
        self.available = True
        down = time.monotonic() - (self._down_since or time.monotonic())
        log.warning("Redis is reachable again after %.1f s; limits are shared again", down)

    async def probe(self) -> None:
        """Ping Redis now (and, while it is down, run the twins' own commands); note whether it answered."""
        try:
            await self.redis.ping()
            if not self.available:
                for check in self.checks:
                    await check()
        except Exception as exc:  # whatever a command raises, Redis is of no use now
            self.lost(exc)
        else:
            self._back()

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._probe_every)
            await self.probe()

    async def start(self) -> None:
        await self.probe()
        self._probe = asyncio.ensure_future(self._probe_forever())

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        await self.redis.aclose()

    def unavailable(self) -> ApiError:
        """The answer to a chat request while Redis is down and the policy is closed."""
        return try_later(
            "the server cannot reach its shared state (Redis) right now",
            "shared_state_unavailable",
            type="server_error",
        )


class SharedRateLimiter:
    """:class:`~getgpt.server.admission.security.RateLimiter`'s limit, kept in Redis for every process."""

    def __init__(self, state: SharedState, local: LocalLimiter) -> None:
        self.state = state
        self.local = local
        self._interval = str(round(1_000_000 / local.rate))
        self._burst = str(int(local.burst))
        state.checks.append(self._check)

    async def _gcra(self, client: str) -> float:
        reply = await self.state.gcra(keys=[_key("rate", client)], args=[self._interval, self._burst])
        return _wait_of(reply)

    async def _check(self) -> None:
        await self._gcra("\0probe")  # no client's name: theirs are "ip ..." or "key #..."

    async def take(self, client: str) -> float:
        """Spend a request of ``client``'s: 0.0 if admitted, else the seconds until it would be."""
        state = self.state
        if state.available:
            try:
                return await self._gcra(client)
            except Exception as exc:  # unreachable, or an answer that cannot be read: down either way
                state.lost(exc)
        if state.fail_open:
            return self.local.take(client)
        raise state.unavailable()


class SharedReplayGuard:
    """:class:`~getgpt.server.admission.security.ReplayGuard`'s uuids, kept in Redis for every process."""

    def __init__(self, state: SharedState, local: LocalGuard) -> None:
        self.state = state
        self.local = local
        self._window_ms = max(1, math.ceil(local.window * 1000))
        state.checks.append(self._check)

    async def _set(self, uuid: str, window_ms: int) -> bool:
        return _claimed(await self.state.redis.set(_key("replay", uuid), b"1", nx=True, px=window_ms))

    async def _check(self) -> None:
        await self._set("\0probe", 1)  # no request's uuid, and gone a millisecond later

    async def claim(self, uuid: str) -> bool:
        """Record ``uuid``; False if any process recorded it within the window."""
        state = self.state
        if state.available:
            try:
                return await self._set(uuid, self._window_ms)
            except Exception as exc:  # unreachable, or an answer that cannot be read: down either way
                state.lost(exc)
        if state.fail_open:
            return self.local.claim(uuid)
        raise state.unavailable()

    async def release(self, uuid: str) -> None:
        """Forget ``uuid``: its request failed before a reply began."""
        self.local.release(uuid)
        state = self.state
        if state.available:
            try:
                await state.redis.delete(_key("replay", uuid))
            except Exception as exc:  # unreachable, or an answer that cannot be read: down either way
                state.lost(exc)


class SharedCooldowns:
    """Upstream cooldowns kept in Redis for every process
    (:class:`getgpt.server.upstreams.health.SharedCooldowns`)."""

    def __init__(self, state: SharedState) -> None:
        self.state = state
        self.fail_open = state.fail_open
        self._writes: set[asyncio.Future[None]] = set()

    @property
    def available(self) -> bool:
        return self.state.available

    def unavailable(self) -> ApiError:
        return self.state.unavailable()

    def _write(self, command: Any) -> None:
        """Run the Redis ``command`` (a coroutine) without making the caller wait for it."""

        async def run() -> None:
            try:
                await command
            except self.state.errors as exc:
                self.state.lost(exc)

        if not self.state.available:
            command.close()
            return
        task = asyncio.ensure_future(run())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def publish(self, key: str, seconds: float, why: str) -> None:
        """Cool ``key``'s upstream for everyone, ``seconds`` from now."""
        self._write(
            self.state.redis.set(
                KEY_PREFIX + "cool:" + key, why.encode(), px=max(1, math.ceil(seconds * 1000))
            )
        )

    def withdraw(self, key: str) -> None:
        """Take ``key``'s upstream back, for everyone."""
        self._write(self.state.redis.delete(KEY_PREFIX + "cool:" + key))

    async def read(self, keys: list[str]) -> list[tuple[float, str] | None] | None:
        """Seconds left of each key's cooldown and why (None: not cooled); None if Redis is down."""
        state = self.state
        if not state.available or not keys:
            return None if not state.available else []
        pipe = state.redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(KEY_PREFIX + "cool:" + key)
            pipe.pttl(KEY_PREFIX + "cool:" + key)
        try:
            answers = await pipe.execute()
        except state.errors as exc:
            state.lost(exc)
            return None
        found: list[tuple[float, str] | None] = []
        for why, left in zip(answers[::2], answers[1::2], strict=True):
            if why is None or left is None or int(left) <= 0:
                found.append(None)
            else:
                found.append((int(left) / 1000, why.decode() if isinstance(why, bytes) else str(why)))
        return found
