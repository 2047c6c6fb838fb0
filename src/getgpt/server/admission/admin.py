"""The admin API over the key store and the ledger, and a key's own usage (``GET /v1/usage``).

The admin routes exist only when ``GETGPT_ADMIN_KEY`` is set (with ``--db``) and need it as
``Authorization: Bearer <admin key>``, compared in constant time:

- ``GET /admin/keys`` -- every key, without secrets; ``POST /admin/keys`` -- create one (``name``,
  ``models``, ``rpm``, ``tpm``, ``budget_tokens``, ``budget_period``, ``expires`` like ``30d``):
  201 with the key itself, shown this once;
- ``GET /admin/keys/{id}`` -- one key and its spend; ``POST /admin/keys/{id}/revoke``;
  ``POST /admin/keys/{id}/rotate`` (``{"grace": "1h"}``: the old key's time left) -- 201 with the
  new key;
- ``GET /admin/usage?since=7d&by=key|model|upstream|day|route&key=ID`` -- the ledger added up.

``GET /v1/usage?since=30d&by=day`` answers any valid key (revoked or expired ones get 401) with
its own usage and budget, and spends none of its limits.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..api_error import ApiError
from ..store import manage
from ..store.database import GROUPS, DatabaseError
from ..store.keys import day_of, parse_duration, period_end
from ..store.ledger import usage_now
from ..store.schema import UsageRecord

if TYPE_CHECKING:
    from .keys import Keyring

__all__ = ["routes"]

_decode = msgspec.json.Decoder(dict[str, Any]).decode
_FIELDS = {"name", "models", "rpm", "tpm", "budget_tokens", "budget_period", "expires"}


def _error(exc: ApiError) -> Response:
    return Response(exc.json(), exc.status, exc.headers, media_type="application/json")


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_request")


def _down() -> ApiError:
    return ApiError(503, "the database is unreachable; retry shortly", type="server_error",
                    code="database_unavailable", headers={"Retry-After": "1"})  # fmt: skip


def _since(request: Request, default: str) -> float:
    raw = request.query_params.get("since", default)
    try:
        return time.time() - parse_duration(raw)
    except ValueError as exc:
        raise _bad(str(exc), "since") from None


def _by(request: Request, default: str) -> str:
    by = request.query_params.get("by", default)
    if by not in GROUPS:
        raise _bad(f"by is one of {', '.join(GROUPS)}, not {by!r}", "by")
    return by


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return _decode(raw)
    except msgspec.DecodeError:
        raise _bad("the body is not a JSON object") from None


_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
           "reasoning_tokens", "estimated", "errors")  # fmt: skip


def with_waiting(
    rows: list[dict[str, Any]], waiting: list[UsageRecord], by: str, since: float, key_id: str | None
) -> list[dict[str, Any]]:
    """``rows`` (the database's, grouped ``by``) with the records not written yet added in."""
    groups = {row[by]: dict(row) for row in rows}
    for record in waiting:
        if record.at < since or (key_id is not None and record.key_id != key_id):
            continue
        name = {"key": record.key_id, "model": record.model, "upstream": record.upstream,
                "route": record.route}.get(by) if by != "day" else day_of(record.at)  # fmt: skip
        group = groups.setdefault(name, {by: name, **dict.fromkeys(_COUNTS, 0)})
        added = (1, record.prompt_tokens, record.completion_tokens, record.tokens, record.cached_tokens,
                 record.reasoning_tokens, int(record.estimated), int(record.status >= 400))  # fmt: skip
        for count, value in zip(_COUNTS, added, strict=True):
            group[count] += value
    return sorted(groups.values(), key=lambda row: (row[by] is not None, row[by] or ""))


def routes(keyring: Keyring, admin_key: str | None) -> list[Route]:
    """``GET /v1/usage``, and the admin routes when ``admin_key`` is set."""
    db = keyring.db

    async def own_usage(request: Request) -> Response:
        try:
            grant = await keyring.authenticate(request.scope)
            since, by = _since(request, "30d"), _by(request, "day")
            # What this process has not written yet counts too: a page asking right after a reply
            # sees that reply.
            rows, waiting = await usage_now(keyring.ledger, lambda: db.usage(since, by, key_id=grant.key_id))
            rows = with_waiting(rows, waiting, by, since, grant.key_id)
        except ApiError as exc:
            return _error(exc)
        except DatabaseError:
            return _error(_down())
        answer: dict[str, Any] = {"object": "usage", "key": grant.key_id, "by": by, "data": rows}
        record = grant.record
        if record is not None:
            answer["name"] = record.name
            if record.budget_tokens is not None:
                period = record.budget_period or "total"
                resets = period_end(period, time.time())
                answer["budget"] = {
                    "tokens": record.budget_tokens,
                    "period": period,
                    "spent": keyring.cache.spent(record),
                    "resets_at": None if resets is None else int(resets),
                }
            answer["limits"] = {"rpm": record.rpm, "tpm": record.tpm, "models": record.public()["models"]}
        return JSONResponse(answer)

    found = [Route("/v1/usage", own_usage, methods=["GET"])]
    if admin_key is None:
        return found
    expected = b"Bearer " + admin_key.strip().encode()

    def admitted(request: Request) -> None:
        presented = request.headers.get("authorization", "").encode("latin-1", "replace")
        if not hmac.compare_digest(presented, expected):
            raise ApiError(401, "the admin API needs the admin key", code="invalid_admin_key",
                           headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                admitted(request)
                return await handler(request)  # type: ignore[no-any-return]
            except ApiError as exc:
                return _error(exc)
            except DatabaseError:
                return _error(_down())

        return endpoint

    async def list_keys(request: Request) -> Response:
        now = time.time()
        return JSONResponse({"object": "list", "data": [k.public(now) for k in await db.list_keys()]})

    async def create_key(request: Request) -> Response:
        body = await _body(request)
        unknown = set(body) - _FIELDS
        if unknown:
            raise _bad(f"unknown field(s): {', '.join(sorted(unknown))}", sorted(unknown)[0])
        models = body.get("models")
        if isinstance(models, str):
            models = models.split(",")
        try:
            record, key = manage.create(
                name=str(body.get("name") or ""),
                models=models,
                rpm=body.get("rpm"),
                tpm=body.get("tpm"),
                budget_tokens=body.get("budget_tokens"),
                budget_period=body.get("budget_period"),
                expires=body.get("expires"),
            )
        except (ValueError, TypeError) as exc:
            raise _bad(str(exc)) from None
        await db.add_key(record)
        return JSONResponse({**record.public(), "key": key}, status_code=201)

    async def _record(request: Request) -> Any:
        key_id = request.path_params["key_id"]
        record = await db.get_key(key_id)
        if record is None:
            raise ApiError(404, f"no key with id {key_id!r}", code="key_not_found")
        return record

    async def show_key(request: Request) -> Response:
        record = await _record(request)
        answer = record.public()
        if record.budget_tokens is not None:
            answer["spent"] = await db.spent(record.id, record.budget_period or "total", time.time())
        return JSONResponse(answer)

    async def revoke_key(request: Request) -> Response:
        record = await _record(request)
        revoked = await manage.revoke(db, record.id)
        await keyring.announce(record.id)
        return JSONResponse(revoked.public())

    async def rotate_key(request: Request) -> Response:
        record = await _record(request)
        grace = (await _body(request)).get("grace", 0)
        try:
            new, key = await manage.rotate(
                db, record.id, grace if isinstance(grace, (int, float, str)) else 0
            )
        except ValueError as exc:
            raise _bad(str(exc), "grace") from None
        await keyring.announce(record.id)
        return JSONResponse({**new.public(), "key": key}, status_code=201)

    async def usage(request: Request) -> Response:
        since, by = _since(request, "7d"), _by(request, "key")
        key_id = request.query_params.get("key")
        rows, waiting = await usage_now(keyring.ledger, lambda: db.usage(since, by, key_id=key_id))
        rows = with_waiting(rows, waiting, by, since, key_id)
        return JSONResponse({"object": "usage", "by": by, "since": int(since), "data": rows})

    found += [
        Route("/admin/keys", guarded(list_keys), methods=["GET"]),
        Route("/admin/keys", guarded(create_key), methods=["POST"]),
        Route("/admin/keys/{key_id}", guarded(show_key), methods=["GET"]),
        Route("/admin/keys/{key_id}/revoke", guarded(revoke_key), methods=["POST"]),
        Route("/admin/keys/{key_id}/rotate", guarded(rotate_key), methods=["POST"]),
        Route("/admin/usage", guarded(usage), methods=["GET"]),
    ]
    return found
