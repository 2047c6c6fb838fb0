"""Keys from the store, enforced at admission, and every request written to the usage ledger.

With ``--db`` (``GETGPT_DB``) every request to the chat endpoints and the forwarded routes needs a
key: one of the store's (``getgpt keys create``) or one of ``GETGPT_API_KEYS``, which keep working
beside the store with no limit but ``--rate-limit``. In this order, before the body is read:

1. no key, or a key the store does not know -> 401 ``missing_api_key`` / ``invalid_api_key``;
   a revoked or expired key -> 401 ``revoked_api_key`` / ``expired_api_key``;
2. the key's token budget spent in its period -> 429 ``insufficient_quota``, saying when it resets;
3. the key over its tokens a minute -> 429 ``rate_limit_exceeded`` with ``Retry-After``;
4. the key over its requests a minute -> 429 ``rate_limit_exceeded`` with ``Retry-After``;

then, on the body: a model the key may not use -> 403 ``model_not_allowed`` naming it.

**The limits' exact meaning.** ``rpm N``: a bucket of N requests, refilled continuously at N a
minute (N at once, then one every 60/N s). ``tpm N``: a bucket of N tokens refilled at N a
minute; a request is admitted while the bucket holds at least one token, and takes its real
tokens (prompt + completion, as the upstream reported them) when it ends, so the bucket may go
below empty and then admits nothing until it has refilled to one token. ``budget``: prompt +
completion tokens in the UTC day, the UTC month or in all; a request is admitted while the spend
is below the budget and charged when it ends, so the budget is overrun by at most the requests
in flight when it is reached. A reply without reported usage (a stream cut before it) is charged
the server's estimate (four characters a token), marked ``estimated`` in the ledger; a request
refused before any reply went out is charged nothing.

**Where the counts live.** Keys are served from an in-process cache, refreshed from the database
every ``--key-cache-ttl`` seconds (changed keys only) -- the bound on a revocation reaching a
replica; with ``--redis`` a revocation through the admin API or ``getgpt keys`` is also published
on Redis and evicted at once everywhere. Without ``--redis`` the rpm/tpm buckets are per
process and the spend is the database's (refreshed with the keys) plus what this process charged
since; with ``--redis`` buckets and spend are Redis's, one Lua script per admission and one per
charge, shared by every worker and replica.

**The database unreachable** (``--db-failure``): ``open`` (the default) -- keys in the cache keep
working with their limits, a key not in the cache gets 503 ``database_unavailable``, the ledger
keeps its records in memory (bounded) until the database is back; ``closed`` -- the endpoints
answer 503 ``database_unavailable`` until it is back. ``/readyz`` reports ``"database"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import Scope

from ..api_error import ApiError, retry_in
from ..chat.wire import estimate_tokens
from ..edge.scope import header
from ..operations.logs import REQUEST_ID
from ..store.database import Database, DatabaseError, describe
from ..store.keys import KeyRecord, period_end, period_start, split_key
from ..store.ledger import Ledger
from ..store.opening import open_database
from ..store.schema import UsageRecord
from .slot import TIMING, Slot, Timing

if TYPE_CHECKING:
    from ..config import ServerConfig
    from .shared_state import SharedState

__all__ = ["GRANT", "Grant", "KeyCache", "Keyring", "LocalMeters", "SharedMeters"]

log = logging.getLogger("getgpt.server")

#: Where the key check leaves the request's :class:`Grant` in its ASGI scope.
GRANT = "getgpt.grant"
#: Where the rate limiter reads who the client is (security.py's _WHO).
_WHO = "getgpt.client"
#: The model a request asked for, as the model check saw it.
_ASKED = "getgpt.asked"
#: Once the request's key has been charged: the reply's counts it was charged (see _counts).
_CHARGED = "getgpt.charged"
#: Keys changed this long before the last refresh are read again: clocks of the processes
#: writing keys may differ by up to this much.
CLOCK_SKEW = 60.0
MAX_MISSING = 10_000
CHANNEL = "getgpt:keys"
# "Bearer " and a key of the store's form: gg-, 12 hex digits, -, 43 characters.
_BEARER_LENGTH = 7 + 59
_HEX = b"0123456789abcdef"
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _counts(slot: Slot) -> tuple[int, int, bool]:
    """The reply's prompt and completion tokens, and whether they are the server's estimate.

    The upstream's usage where it says them; the estimate stands in for counts it lacks -- only
    when some of a reply went out: a request refused, upstream or here, before any reply is
    charged nothing. Final once the backend has ended (the pump tallies as it relays)."""
    usage = slot.outcome.usage
    prompt = usage.prompt_tokens if usage is not None else None
    completion = usage.completion_tokens if usage is not None else None
    if prompt is not None and completion is not None:
        return prompt, completion, False
    if slot.sent_tokens <= 0:
        return prompt or 0, completion or 0, False
    return (
        estimate_tokens(slot.prompt_chars) if prompt is None else prompt,
        slot.sent_tokens if completion is None else completion,
        True,
    )


def _id_of(token: bytes) -> str | None:
    """The id of ``gg-<12 hex>-<43 base64url>`` (59 bytes, checked by the caller), else None."""
    # Whether anything is left once the alphabet is deleted: 0.5 us, against 0.8 for two
    # frozenset.issuperset over the bytes and 1.2 for a regular expression.
    if token[15:16] != b"-" or token[3:15].translate(None, _HEX) or token[16:].translate(None, _B64):
        return None
    return token[3:15].decode("ascii")


_MISSING = object()


class EnvKeys(Protocol):
    """What the check needs of security.ApiKeys (GETGPT_API_KEYS)."""

    def match(self, authorization: bytes | None) -> int | None: ...


class Grant:
    """Who a request is, once its key was accepted: the record, or a GETGPT_API_KEYS index. One is
    made per key and kept with it in the cache, so a request costs no new object."""

    __slots__ = ("charged", "key_id", "limited", "record", "timed", "who")

    def __init__(self, key_id: str, record: KeyRecord | None) -> None:
        self.key_id = key_id
        self.record = record
        #: What the rate limiter calls the client (security.py's buckets: one per key).
        self.who = "key " + key_id
        #: Whether admission has limits to look at, and times to compare (saves a clock read).
        self.limited = record is not None and not (
            record.rpm is None and record.tpm is None and record.budget_tokens is None
        )
        self.timed = record is not None and (record.expires_at is not None or record.revoked_at is not None)
        #: Whether a request's tokens are charged to it: it has a tpm or a budget.
        self.charged = record is not None and (record.tpm is not None or record.budget_tokens is not None)


def _unauthorized(message: str, code: str) -> ApiError:
    return ApiError(401, message, code=code, headers={"WWW-Authenticate": "Bearer"})


def _unavailable() -> ApiError:
    return ApiError(
        503,
        "the server cannot reach its database right now; retry shortly",
        type="server_error",
        code="database_unavailable",
        headers={"Retry-After": "1"},
    )


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _spent_error(record: KeyRecord, now: float) -> ApiError:
    period = record.budget_period or "total"
    resets = period_end(period, now)
    if resets is None:
        message = f"the API key's budget of {record.budget_tokens} tokens is spent; it does not reset"
        headers = {}
    else:
        message = (
            f"the API key's budget of {record.budget_tokens} tokens a {period} is spent; "
            f"it resets at {_iso(resets)}"
        )
        headers = {"Retry-After": str(max(1, math.ceil(resets - now)))}
    return ApiError(429, message, type="insufficient_quota", code="insufficient_quota", headers=headers)


def _limited(what: str, limit: int, wait: float) -> ApiError:
    return retry_in(
        wait,
        429,
        f"the API key may use {limit} {what} a minute",
        type="rate_limit_error",
        code="rate_limit_exceeded",
    )


class KeyCache:
    """The store's keys in memory, with the tokens each key with a budget has spent.

    :meth:`get` answers from memory; :meth:`load` asks the database for a key not seen yet;
    :meth:`refresh` (every ``ttl`` seconds) reads the keys changed since the last refresh and
    every budget's spend, in two queries whatever the number of keys.
    """

    def __init__(self, db: Database, ttl: float, clock: Any = time.time) -> None:
        self.db = db
        self.ttl = ttl
        self._clock = clock
        self.records: dict[str, KeyRecord] = {}
        self.grants: dict[str, Grant] = {}
        self._missing: OrderedDict[str, float] = OrderedDict()
        self._spent_db: dict[str, int] = {}
        self._unflushed: dict[str, int] = {}
        self._since: float | None = None
        self.available = True

    def get(self, key_id: str) -> Grant | object | None:
        """The key's grant, None if the store has no such key (as of late), or ``_MISSING``: not known."""
        found = self.grants.get(key_id)
        if found is not None:
            return found
        until = self._missing.get(key_id)
        if until is not None and until > self._clock():
            return None
        return _MISSING

    async def load(self, key_id: str) -> Grant | None:
        record = await self.db.get_key(key_id)
        if record is None:
            self._missing[key_id] = self._clock() + self.ttl
            while len(self._missing) > MAX_MISSING:
                self._missing.popitem(last=False)
            return None
        self._keep(record)
        self._missing.pop(key_id, None)
        return self.grants[key_id]

    def _keep(self, record: KeyRecord) -> None:
        self.records[record.id] = record
        self.grants[record.id] = Grant(record.id, record)

    def evict(self, key_id: str) -> None:
        self.records.pop(key_id, None)
        self.grants.pop(key_id, None)
        self._missing.pop(key_id, None)

    async def refresh(self) -> None:
        now = self._clock()
        since = 0.0 if self._since is None else self._since - CLOCK_SKEW
        changed = await self.db.changed_keys(since)
        spends = await self.db.spends(now)
        for record in changed:  # the first refresh (since 0) loads every key
            self._missing.pop(record.id, None)
            self._keep(record)
        self._spent_db = spends
        self._since = now

    def spent(self, record: KeyRecord) -> int:
        return self._spent_db.get(record.id, 0) + self._unflushed.get(record.id, 0)

    def charged(self, key_id: str, tokens: int) -> None:
        self._unflushed[key_id] = self._unflushed.get(key_id, 0) + tokens

    def written(self, rows: Sequence[UsageRecord]) -> None:
        """The ledger committed ``rows``: their tokens are the database's to count now."""
        unflushed, spent = self._unflushed, self._spent_db
        for row in rows:
            key_id = row.key_id
            if key_id is None or key_id not in unflushed or not row.tokens:
                continue
            moved = min(unflushed[key_id], row.tokens)
            if unflushed[key_id] > moved:
                unflushed[key_id] -= moved
            else:
                del unflushed[key_id]
            spent[key_id] = spent.get(key_id, 0) + moved


class LocalMeters:
    """Each key's rpm and tpm buckets in this process (theoretical arrival times, GCRA)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._rpm: dict[str, float] = {}
        self._tpm: dict[str, float] = {}

    def admit(self, record: KeyRecord) -> tuple[str, float] | None:
        """None if admitted (one request taken), else which limit refused and the seconds to wait."""
        now = self._clock()
        if record.tpm:
            # Admitted while the bucket holds a token: at most a minute less one token's time owed.
            owed = self._tpm.get(record.id, now) - now
            room = 60.0 - 60.0 / record.tpm
            if owed > room:
                return "tokens", owed - room
        if record.rpm:
            interval = 60.0 / record.rpm
            new = max(self._rpm.get(record.id, now), now) + interval
            if new - now > 60.0 + 1e-9:
                return "requests", new - now - 60.0
            self._rpm[record.id] = new
        return None

    def charge(self, record: KeyRecord, tokens: int) -> None:
        if record.tpm and tokens > 0:
            now = self._clock()
            self._tpm[record.id] = max(self._tpm.get(record.id, now), now) + tokens * 60.0 / record.tpm


# One round trip admits a request: the budget (its counter seeded from the database when Redis
# has none for this period), then the tpm bucket, then the rpm bucket (taken only if all pass).
# KEYS: rpm, tpm, spend. ARGV: rpm interval us (0: none), tpm interval us (0: none), budget (-1:
# none), spend seed, spend ttl ms. Returns {0} admitted, {1} budget spent, {2, us} tpm, {3, us} rpm.
_ADMIT = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local budget = tonumber(ARGV[3])
if budget >= 0 then
  local spent = redis.call('GET', KEYS[3])
  if not spent then
    redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5], 'NX')
    spent = redis.call('GET', KEYS[3])
  end
  if tonumber(spent) >= budget then return {1, 0} end
end
local window = 60000000
local tpm = tonumber(ARGV[2])
if tpm > 0 then
  local tat = tonumber(redis.call('GET', KEYS[2]) or now)
  if tat - now > window - tpm then return {2, tat - now - window + tpm} end
end
local rpm = tonumber(ARGV[1])
if rpm > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or now)
  if tat < now then tat = now end
  local new = tat + rpm
  if new - now > window then return {3, new - now - window} end
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1)
end
return {0, 0}
"""
# KEYS: tpm, spend. ARGV: tpm interval us (0: none), tokens, 1 if the key has a budget, spend
# seed, spend ttl ms.
_CHARGE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local tokens = tonumber(ARGV[2])
local tpm = tonumber(ARGV[1])
if tpm > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or now)
  if tat < now then tat = now end
  local new = tat + tokens * tpm
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1)
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5], 'NX')
  redis.call('INCRBY', KEYS[2], tokens)
end
return 0
"""


def _spend_ttl_ms(record: KeyRecord, now: float) -> int:
    end = period_end(record.budget_period or "total", now)
    # A period's counter outlives it by a day (a late charge still lands); "total" is read again
    # from the database after 30 days.
    return int(((end - now) if end is not None else 30 * 86400) * 1000) + 86_400_000


class SharedMeters:
    """The rpm/tpm buckets and the budget spend in Redis, for every worker and replica."""

    def __init__(self, state: SharedState, cache: KeyCache) -> None:
        self.state = state
        self.cache = cache
        self.admit_script = state.redis.register_script(_ADMIT)
        self.charge_script = state.redis.register_script(_CHARGE)

    @staticmethod
    def _keys(record: KeyRecord, now: float) -> list[str]:
        period = period_start(record.budget_period or "total", now)
        prefix = "getgpt:key:" + record.id
        return [prefix + ":rpm", prefix + ":tpm", f"{prefix}:spend:{period}"]

    async def admit(self, record: KeyRecord) -> tuple[str, float] | None:
        now = time.time()
        args = [
            round(60_000_000 / record.rpm) if record.rpm else 0,
            round(60_000_000 / record.tpm) if record.tpm else 0,
            record.budget_tokens if record.budget_tokens is not None else -1,
            self.cache.spent(record),
            _spend_ttl_ms(record, now),
        ]
        code, wait = await self.admit_script(keys=self._keys(record, now), args=args)
        code = int(code)
        if code == 0:
            return None
        return ("budget", "tokens", "requests")[code - 1], int(wait) / 1_000_000

    async def charge(self, record: KeyRecord, tokens: int) -> None:
        now = time.time()
        keys = self._keys(record, now)
        args = [
            round(60_000_000 / record.tpm) if record.tpm else 0,
            tokens,
            1 if record.budget_tokens is not None else 0,
            self.cache.spent(record) - tokens,  # the seed: what was spent before this request
            _spend_ttl_ms(record, now),
        ]
        await self.charge_script(keys=keys[1:], args=args)


class Keyring:
    """Everything ``--db`` switches on: the database, the key cache, the meters, the ledger, and
    the checks the app runs. Started and stopped by the app's lifespan."""

    def __init__(
        self,
        config: ServerConfig,
        env_keys: EnvKeys | None = None,
        shared: SharedState | None = None,
        *,
        upstream: str = "",
    ) -> None:
        assert config.db is not None
        self.db = open_database(config.db)
        self.where = describe(config.db)
        self.cache = KeyCache(self.db, config.key_cache_ttl)
        self.env_keys = env_keys
        self.shared = shared
        self.fail_open = config.db_failure == "open"
        self.local = LocalMeters()
        self.meters = SharedMeters(shared, self.cache) if shared is not None else None
        self.ledger = Ledger(self.db, written=self.cache.written)
        self.upstream = upstream
        self.aliases = config.aliases
        self.upstream_model = config.upstream_model if config.backend == "openai" else None
        self._tasks: list[asyncio.Task[None]] = []
        self._env_grants = [Grant(f"env-{index}", None) for index in range(len(config.api_keys))]
        self._down_since: float | None = None
        # The ledger's id of a request that has none of its own (no X-Request-Id): unique to this
        # process and its count, 0.2 us against uuid4's 1.9.
        self._prefix = uuid.uuid4().hex[:16] + "-"
        self._numbers = itertools.count(1)

    # -- running
    async def start(self) -> None:
        try:
            await self.db.connect()
            applied = await self.db.migrate()
            await self.cache.refresh()
        except DatabaseError as exc:
            # The server starts all the same; the policy decides what requests get meanwhile.
            self._lost(exc)
        else:
            if applied:
                log.info("database %s: schema migrations %s applied", self.where, applied)
        await self.ledger.start()
        self._tasks.append(asyncio.ensure_future(self._refresh_forever()))
        if self.shared is not None:
            self._tasks.append(asyncio.ensure_future(self._listen()))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.ledger.aclose()
        await self.db.close()

    @property
    def available(self) -> bool:
        return self.cache.available and self.ledger.available

    @property
    def status(self) -> str:
        return "ok" if self.available else "unreachable"

    def _lost(self, exc: BaseException) -> None:
        if self.cache.available:
            self.cache.available = False
            self._down_since = time.monotonic()
            policy = "cached keys keep working" if self.fail_open else "requests get 503"
            log.warning("database %s is unreachable (%s); until it is back, %s", self.where, exc, policy)

    def _back(self) -> None:
        if not self.cache.available:
            self.cache.available = True
            down = time.monotonic() - (self._down_since or time.monotonic())
            log.warning("database %s is reachable again after %.1f s", self.where, down)

    async def _refresh_forever(self) -> None:
        ttl = self.cache.ttl
        while True:
            # Down, it is tried every second at least, so service resumes soon after it is back.
            await asyncio.sleep(ttl if self.cache.available else min(ttl, 1.0))
            try:
                if self.cache._since is None:
                    await self.db.migrate()
                await self.cache.refresh()
            except DatabaseError as exc:
                self._lost(exc)
            else:
                self._back()

    async def _listen(self) -> None:
        """Evict keys named on the Redis channel (revoked or rotated elsewhere), reconnecting."""
        assert self.shared is not None
        while True:
            try:
                pubsub = self.shared.redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                try:
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None and message.get("type") == "message":
                            key_id = message["data"].decode("ascii", "replace")
                            self.cache.evict(key_id)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down: try again in a second; the TTL bound holds meanwhile
                await asyncio.sleep(1.0)

    async def announce(self, key_id: str) -> None:
        """Tell every replica that ``key_id`` changed (with ``--redis``), and forget it here."""
        self.cache.evict(key_id)
        if self.shared is not None:
            with contextlib.suppress(*self.shared.errors):
                await self.shared.redis.publish(CHANNEL, key_id)

    # -- the checks
    async def authenticate(self, scope: Scope) -> Grant:
        """The request's key, or the :class:`ApiError` refusing it (rules 1 of the module docstring)."""
        authorization = header(scope, b"authorization")
        if authorization is None:
            raise _unauthorized(
                "this server needs an API key: send Authorization: Bearer <key>", "missing_api_key"
            )
        if self.env_keys is not None:
            index = self.env_keys.match(authorization)
            if index is not None:
                if not self.fail_open and not self.available:
                    raise _unavailable()
                return self._env_grants[index]
        # The usual form, read from the bytes as they came (the regular expression's 1.2 us saved);
        # anything else (another case, more spaces) goes the long way.
        if len(authorization) == _BEARER_LENGTH and authorization.startswith(b"Bearer gg-"):
            token = authorization[7:]
            key_id = _id_of(token)
        else:
            scheme, _, spaced = authorization.strip().partition(b" ")
            token = spaced.strip()
            key_id = split_key(token.decode("latin-1")) if scheme.lower() == b"bearer" else None
        if key_id is None:
            raise _unauthorized("the API key is not valid", "invalid_api_key")
        if not self.available and not self.fail_open:
            raise _unavailable()
        found = self.cache.get(key_id)
        if found is _MISSING:
            if not self.cache.available:
                raise _unavailable()
            try:
                found = await self.cache.load(key_id)
            except DatabaseError as exc:
                self._lost(exc)
                raise _unavailable() from None
        if not isinstance(found, Grant) or found.record is None:
            raise _unauthorized("the API key is not valid", "invalid_api_key")
        if not hmac.compare_digest(hashlib.sha256(token).digest(), found.record.hash):
            raise _unauthorized("the API key is not valid", "invalid_api_key")
        if found.timed:
            refusal = found.record.refusal(time.time())
            if refusal is not None:
                message = "the API key was revoked" if refusal == "revoked" else "the API key expired"
                raise _unauthorized(message, f"{refusal}_api_key")
        return found

    async def __call__(self, scope: Scope) -> None:
        """The request check: authenticate, then the budget and the rpm/tpm limits."""
        grant = await self.authenticate(scope)
        scope[GRANT] = grant
        scope[_WHO] = grant.who
        if not grant.limited:
            return
        record = grant.record
        assert record is not None
        refused = None
        meters = self.meters
        if meters is not None and meters.state.available:
            try:
                refused = await meters.admit(record)
            except meters.state.errors as exc:
                meters.state.lost(exc)
                meters = None
        else:
            meters = None
        if meters is None:
            if self.shared is not None and not self.shared.fail_open:
                raise self.shared.unavailable()
            if record.budget_tokens is not None and self.cache.spent(record) >= record.budget_tokens:
                refused = ("budget", 0.0)
            else:
                refused = self.local.admit(record)
        if refused is None:
            return
        what, wait = refused
        if what == "budget":
            raise _spent_error(record, time.time())
        if what == "tokens":
            raise _limited("tokens", record.tpm or 0, wait)
        raise _limited("requests", record.rpm or 0, wait)

    async def check_model(self, scope: Scope, model: str | None) -> None:
        """403 for a model the request's key may not use."""
        scope[_ASKED] = model  # for the ledger, should the request be refused
        grant: Grant | None = scope.get(GRANT)
        if grant is None or grant.record is None or grant.record.models is None:
            return
        if model is None or not grant.record.allows(model):
            named = f"the model '{model}'" if model is not None else "a request without a model"
            raise ApiError(
                403,
                f"the API key may not use {named}; it may use: {', '.join(grant.record.models)}",
                type="invalid_request_error",
                param="model",
                code="model_not_allowed",
            )

    # -- after the request
    async def settle(self, scope: Scope, route: str, slot: Slot | None) -> None:
        """Write the request's record to the ledger and charge its key its tokens, once its answer
        has gone. ``slot`` is the admitted request's (its outcome and estimate); None for a request
        refused before it had one, which spent nothing."""
        # Written for speed: this runs for every request (bench/keys.py, the gateway under load).
        now = time.perf_counter()
        timing: Timing | None = scope.get(TIMING)
        if timing is not None:
            arrived, first, status = timing.arrived, timing.first_body, timing.status
        else:
            arrived, first, status = now, None, 0
        grant: Grant | None = scope.get(GRANT)
        cached = reasoning = 0
        upstream = self.upstream
        if slot is not None:
            model = slot.model or scope.get(_ASKED) or ""
            outcome = slot.outcome
            # The upstream that answered, as the backend names it (routing's, or the lone one);
            # the configured name for the echo.
            upstream = outcome.upstream or upstream
            usage = outcome.usage
            if usage is not None:
                if usage.prompt_tokens_details:
                    cached = int(usage.prompt_tokens_details.get("cached_tokens") or 0)
                if usage.completion_tokens_details:
                    reasoning = int(usage.completion_tokens_details.get("reasoning_tokens") or 0)
            prompt, completion, estimate = scope.get(_CHARGED) or _counts(slot)
        else:
            model = scope.get(_ASKED) or ""
            estimate = False
            prompt = completion = 0
        # Positional: a NamedTuple made by keywords costs twice as much.
        row = UsageRecord(
            time.time(),
            grant.key_id if grant is not None else None,
            REQUEST_ID.get() or f"{self._prefix}{next(self._numbers):x}",
            route,
            model,
            self.upstream_model or self.aliases.get(model, model),
            upstream,
            status,
            prompt,
            completion,
            cached,
            reasoning,
            estimate,
            None if first is None else int((first - arrived) * 1_000_000) / 1000,
            int((now - arrived) * 1_000_000) / 1000,
        )
        self.ledger.add(row)
        if grant is not None and grant.charged and not scope.get(_CHARGED):
            await self._charge(scope, grant, (prompt, completion, estimate))

    async def charge(self, scope: Scope, slot: Slot) -> None:
        """Charge the request's key the tokens its reply used, now: called as the backend ends,
        before the reply's last bytes go out, so a client that sends its next request on reading
        them (to another replica, say) finds the spend already counted. Never raises."""
        grant: Grant | None = scope.get(GRANT)
        if grant is None or not grant.charged or scope.get(_CHARGED):
            return
        try:
            await self._charge(scope, grant, _counts(slot))
        except Exception:  # a charge must never break the reply it follows
            log.exception("charging key %s failed", grant.key_id)

    async def _charge(self, scope: Scope, grant: Grant, counts: tuple[int, int, bool]) -> None:
        # The counts stay in the scope: the ledger's row (settle) says what was charged.
        scope[_CHARGED] = counts
        tokens = counts[0] + counts[1]
        if tokens <= 0:
            return
        record = grant.record
        assert record is not None
        self.cache.charged(record.id, tokens)
        meters = self.meters
        if meters is not None and meters.state.available:
            try:
                await meters.charge(record, tokens)
                return
            except meters.state.errors as exc:
                meters.state.lost(exc)
        self.local.charge(record, tokens)
