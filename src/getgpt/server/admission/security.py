"""The server's optional defences: API keys, CORS, per-client rate limits, replay refusal.

All are off by default -- a server on loopback for one person needs none of them -- and each is
switched on by a :class:`~getgpt.server.config.ServerConfig` field (so by a ``GETGPT_*`` variable
or a ``getgpt serve`` flag):

- ``api_keys`` (only from ``GETGPT_API_KEYS``, comma-separated: a key on a command line would show
  in ``ps``): the chat endpoints then need ``Authorization: Bearer <key>``; keys are compared in
  constant time; a missing or wrong key gets 401 with ``WWW-Authenticate: Bearer``.
- ``cors_origins``: browsers on these origins may call the API; without it no CORS header is sent
  at all, so browsers keep other sites' pages from reading the answers.
- ``api_keys`` fails closed: a ``GETGPT_API_KEYS`` that is set but holds no key (``","``, ``""``)
  is a startup error (see :mod:`getgpt.server.config`), never a server without keys.
- ``rate_limit`` (requests a minute) and ``rate_burst``: a token bucket per client -- its API key
  when it sent a valid one, else its IP address (an IPv6 address's /64) -- refilled continuously;
  an empty bucket gets 429 with ``Retry-After`` (whole seconds until a token is back). Requests
  refused for their key spend their address's tokens, so keys cannot be guessed faster than the
  limit. The address is the peer's: ``X-Forwarded-For`` counts only from the proxies named in
  ``forwarded_allow_ips`` (see :mod:`getgpt.server.running.serving`). At most
  :attr:`RateLimiter.MAX_CLIENTS` buckets are kept, least recently seen dropped first, in O(1).
- ``replay_window`` (seconds): a request whose ``uuid`` was already answered within the window gets
  409. A request that carries no ``uuid`` (every OpenAI request, unless its client adds one) is
  let through and takes no room in the table: its own fresh uuid could never be replayed. A
  request that failed before its reply began (a 5xx, a 429, ...) does not spend its ``uuid``, so
  a client retrying the same request is not refused. This stops verbatim replays and accidental
  duplicates only: the envelope's key travels with it, so whoever holds a captured request can
  re-seal it with a new ``uuid``. Only HTTPS keeps a request from being captured.

The checks hook into the app's ``request_checks`` (before the body is read, so refusals are cheap)
and ``chat_checks`` (on the parsed request); CORS and the replay release are ASGI middleware.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..api_error import ApiError, retry_in
from ..config import LONE_UPSTREAM
from ..edge.scope import header

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..chat.request import Chat
    from ..config import ServerConfig
    from .shared_state import SharedRateLimiter, SharedReplayGuard

__all__ = ["KNOWN_AS", "ApiKeys", "RateLimiter", "ReplayGuard", "install"]

Clock = Callable[[], float]

# Where the checks leave what later steps need, in the request's ASGI scope.
#: Whom the key check knew the client as ("key #0": an index, never the key itself), for the
#: rate limit's bucket and the reply slot's record.
KNOWN_AS = "getgpt.client"
_SPENT = "getgpt.replay"


class ApiKeys:
    """``Authorization: Bearer <key>`` against a set of keys, compared in constant time."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [key.strip().encode() for key in keys if key.strip()]
        if not self._keys:
            raise ValueError("api_keys holds no key")

    def match(self, authorization: bytes | None) -> int | None:
        """The index of the key ``authorization`` carries, or None."""
        if authorization is None:
            return None
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = token.strip()
        found = None
        # Every key is compared, whatever matches, so the time taken tells nothing about the keys.
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(token, key):
                found = index
        return found

    async def __call__(self, scope: Scope) -> None:
        authorization = header(scope, b"authorization")
        index = self.match(authorization)
        if index is None:
            missing = authorization is None
            raise ApiError(
                401,
                "this server needs an API key: send Authorization: Bearer <key>"
                if missing
                else "the API key is not valid",
                code="missing_api_key" if missing else "invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scope[KNOWN_AS] = f"key #{index}"  # an index, so the key itself is kept nowhere else


class RateLimiter:
    """A token bucket per client: ``per_minute`` tokens a minute, at most ``burst`` saved up."""

    #: Buckets kept (about 260 bytes each, so ~26 MB at most); past it the least recently seen
    #: client's is dropped, in O(1). A dropped client starts again from a full bucket, as it
    #: would after enough idle time anyway; only a table full of clients seen within one refill
    #: time makes that a gain for any of them.
    MAX_CLIENTS = 100_000

    def __init__(self, per_minute: float, burst: int = 0, clock: Clock = time.monotonic) -> None:
        if not per_minute > 0:
            raise ValueError(f"rate_limit must be a positive number of requests a minute, not {per_minute}")
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst > 0 else max(1, math.ceil(per_minute / 6)))
        self._clock = clock
        # client -> (tokens, when counted), least recently seen first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        #: Set by :func:`install` with ``--redis``: the buckets then live there, for every process.
        self.shared: SharedRateLimiter | None = None

    def take(self, client: str) -> float:
        """Spend a token of ``client``'s: 0.0 if there was one, else the seconds until there is."""
        now = self._clock()
        buckets = self._buckets
        found = buckets.get(client)
        if found is None:
            tokens = self.burst
            if len(buckets) >= self.MAX_CLIENTS:
                buckets.popitem(last=False)
        else:
            tokens = min(self.burst, found[0] + (now - found[1]) * self.rate)
            buckets.move_to_end(client)
        if tokens >= 1.0:
            buckets[client] = (tokens - 1.0, now)
            return 0.0
        buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    async def __call__(self, scope: Scope) -> None:
        client = scope.get(KNOWN_AS)
        if client is None:
            peer = scope.get("client")
            client = _address_bucket(peer[0] if peer else "unknown")
        wait = self.take(client) if self.shared is None else await self.shared.take(client)
        if wait > 0:
            raise retry_in(
                wait,
                429,
                f"too many requests: at most {self.rate * 60:g} a minute",
                type="rate_limit_error",
                code="rate_limit_exceeded",
            )


def _address_bucket(host: str) -> str:
    """The bucket of a client known by its address: the address, or an IPv6 address's /64.

    One IPv6 subscriber routinely holds a whole /64 -- 2**64 addresses -- so a bucket per IPv6
    address would let one client pick a fresh bucket for every request."""
    if ":" not in host:
        return f"ip {host}"
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return f"ip {host}"
    if address.ipv4_mapped is not None:  # a dual-stack socket's IPv4 peer
        return f"ip {address.ipv4_mapped}"
    return f"ip {ipaddress.IPv6Network((address, 64), strict=False)}"


class ReplayGuard:
    """Refuses a request ``uuid`` seen within ``window`` seconds, unless its earlier use failed."""

    #: The most uuids remembered; past it the oldest are forgotten early (rate limits keep it rare).
    MAX_ENTRIES = 100_000

    def __init__(self, window: float, clock: Clock = time.monotonic) -> None:
        if not window > 0:
            raise ValueError(f"replay_window must be a positive number of seconds, not {window}")
        self.window = window
        self._clock = clock
        # uuid -> when it expires; insertion order is expiry order, as the window is fixed.
        self._seen: OrderedDict[str, float] = OrderedDict()
        #: Set by :func:`install` with ``--redis``: the uuids then live there, for every process.
        self.shared: SharedReplayGuard | None = None

    def claim(self, uuid: str) -> bool:
        """Record ``uuid``; False if it is already recorded and unexpired."""
        now = self._clock()
        seen = self._seen
        while seen:
            oldest, expires = next(iter(seen.items()))
            if expires > now and len(seen) < self.MAX_ENTRIES:
                break
            del seen[oldest]
        if uuid in seen:
            return False
        seen[uuid] = now + self.window
        return True

    def release(self, uuid: str) -> None:
        """Forget ``uuid``: its request failed before a reply began, so it may be sent again."""
        self._seen.pop(uuid, None)

    async def __call__(self, scope: Scope, request: Chat) -> None:
        uuid = request.sent_uuid
        if uuid is None:
            return  # a uuid made for the request names nothing a replay could repeat: no room spent
        claimed = self.claim(uuid) if self.shared is None else await self.shared.claim(uuid)
        if not claimed:
            raise ApiError(
                409,
                f"request {uuid[:64]!r} was already answered; send a new uuid for a new request",
                code="replayed_request",
            )
        spent = scope.get(_SPENT)
        if spent is not None:
            spent.append(uuid)


class _ReleaseFailed:
    """ASGI middleware: gives back the uuid of a request answered with an error status."""

    def __init__(self, app: ASGIApp, guard: ReplayGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        spent: list[str] = []
        scope[_SPENT] = spent
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if not 200 <= status < 300:
                shared = self.guard.shared
                for uuid in spent:
                    if shared is None:
                        self.guard.release(uuid)
                    else:
                        await shared.release(uuid)


def _check_origins(origins: tuple[str, ...]) -> list[str]:
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"a CORS origin is '*' or starts with http:// or https://, not {origin!r}")
        if origin.endswith("/"):
            raise ValueError(f"a CORS origin has no path, not even '/': {origin!r}")
    return list(origins)


def _keys_then_limit(
    keys: Callable[[Scope], Awaitable[None]], limiter: RateLimiter
) -> Callable[[Scope], Awaitable[None]]:
    """The key check, then the limit: by key for a valid key, by address for a refused one."""

    async def check(scope: Scope) -> None:
        try:
            await keys(scope)
        except ApiError:
            # Refusals spend the address's tokens too, so guessing keys is as slow as the limit;
            # once they are spent the answer is 429 rather than 401.
            await limiter(scope)
            raise
        await limiter(scope)

    return check


def _upstream_name(config: ServerConfig) -> str:
    """What the ledger calls the upstream of a request no upstream answered (refused first):
    ``--upstream``'s one by the name routing gives it, else the backend's name (``echo``)."""
    return LONE_UPSTREAM if config.upstream and config.routing is None else config.backend


def install(app: Starlette, config: ServerConfig) -> None:
    """Switch on what ``config`` asks for; raise :class:`ValueError` for settings that make no sense."""
    state: Any = app.state
    env_keys = ApiKeys(config.api_keys) if config.api_keys else None
    keys: Callable[[Scope], Awaitable[None]] | None = env_keys
    limiter = RateLimiter(config.rate_limit, config.rate_burst) if config.rate_limit else None
    if config.rate_burst and limiter is None:
        raise ValueError("rate_burst needs rate_limit")
    guard = ReplayGuard(config.replay_window) if config.replay_window else None
    shared = None
    # Redis holds the limits, the replay guard, the keys' limits and the routing's cooldowns.
    if config.redis_url and (
        limiter is not None or guard is not None or config.db is not None or config.routing is not None
    ):
        from .shared_state import SharedRateLimiter, SharedReplayGuard, SharedState

        shared = SharedState(config.redis_url, config.redis_failure, timeout=config.redis_timeout)
        state.shared = shared
        if limiter is not None:
            limiter.shared = SharedRateLimiter(shared, limiter)
        if guard is not None:
            guard.shared = SharedReplayGuard(shared, guard)
    if config.db is not None:
        from .keys import Keyring

        # The store's keys, and GETGPT_API_KEYS's beside them, in one check.
        keyring = Keyring(config, env_keys, shared, upstream=_upstream_name(config))
        state.keyring = keyring
        keys = keyring
        state.model_checks.append(keyring.check_model)
    if keys is not None and limiter is not None:
        state.request_checks.append(_keys_then_limit(keys, limiter))
    elif keys is not None:
        state.request_checks.append(keys)
    elif limiter is not None:
        state.request_checks.append(limiter)
    if guard is not None:
        state.chat_checks.append(guard)
        app.add_middleware(_ReleaseFailed, guard=guard)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=_check_origins(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
