"""``getgpt keys``, ``getgpt usage`` and ``getgpt db``: the key store and the ledger by hand.

Each works on the database ``--db`` names, else ``$GETGPT_DB``, else ``getgpt.db`` in the user's
data directory -- the one ``getgpt serve --db default`` uses. Only the standard library is imported
here; the store loads inside the command, so ``getgpt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..server.store.database import Database

__all__ = ["add_admin_parsers"]

T = TypeVar("T")
_PERIODS = ("day", "month", "total")
_GROUPS = ("key", "model", "upstream", "day", "route")


def _target(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("GETGPT_DB") or "default")


def _with_db(args: argparse.Namespace, work: Callable[[Database], Awaitable[T]]) -> T:
    import asyncio

    from ..server.store.opening import migrated

    async def run() -> T:
        async with migrated(_target(args)) as db:
            return await work(db)

    return asyncio.run(run())


def _announce(args: argparse.Namespace, key_id: str) -> None:
    """Tell running servers at once that ``key_id`` changed, when they share a Redis (--redis)."""
    url = getattr(args, "redis", None) or os.environ.get("GETGPT_REDIS_URL")
    if not url:
        return
    import asyncio

    async def publish() -> None:
        from redis.asyncio import Redis

        from ..server.admission.keys import CHANNEL

        redis: Any = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            await redis.publish(CHANNEL, key_id)
        finally:
            await redis.aclose()

    try:
        asyncio.run(publish())
    except Exception as exc:  # the servers still see it within --key-cache-ttl
        print(f"getgpt: could not tell the servers through Redis ({type(exc).__name__}); "
              "they see the change within --key-cache-ttl", file=sys.stderr)  # fmt: skip


def _print_key(record: dict[str, Any], key: str | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**record, **({"key": key} if key else {})}, indent=2))
        return
    if key:
        print(key)
        print("  (shown this once: the store keeps only its hash)", file=sys.stderr)
    for name, value in record.items():
        if value is not None:
            shown = ",".join(value) if isinstance(value, list) else value
            print(f"  {name}: {shown}", file=sys.stderr if key else sys.stdout)


def _keys_create(args: argparse.Namespace) -> int:
    from ..server.store import manage

    record, key = manage.create(
        name=args.name,
        models=args.models.split(",") if args.models else None,
        rpm=args.rpm,
        tpm=args.tpm,
        budget_tokens=args.budget_tokens,
        budget_period=args.budget_period,
        expires=args.expires,
    )

    async def add(db: Database) -> str:
        await db.add_key(record)
        return db.where

    where = _with_db(args, add)
    _print_key(record.public(), key, args.json)
    if not args.json:
        print(f"  stored in: {where}", file=sys.stderr)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    async def listed(db: Database) -> list[dict[str, Any]]:
        now = time.time()
        return [record.public(now) for record in await db.list_keys()]

    records = _with_db(args, listed)
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    header = ["id", "name", "status", "models", "rpm", "tpm", "budget", "expires_at"]
    rows = [
        [
            r["id"],
            r["name"],
            r["status"],
            ",".join(r["models"]) if r["models"] else "all",
            r["rpm"] or "-",
            r["tpm"] or "-",
            f"{r['budget_tokens']}/{r['budget_period']}" if r["budget_tokens"] else "-",
            r["expires_at"] or "-",
        ]
        for r in records
    ]
    print(_table(header, rows))
    return 0


def _keys_show(args: argparse.Namespace) -> int:
    async def show(db: Database) -> dict[str, Any] | None:
        record = await db.get_key(args.id)
        if record is None:
            return None
        found = record.public()
        if record.budget_tokens is not None:
            found["spent"] = await db.spent(record.id, record.budget_period or "total", time.time())
        return found

    found = _with_db(args, show)
    if found is None:
        raise LookupError(f"no key with id {args.id!r} (getgpt keys list shows them)")
    _print_key(found, None, args.json)
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from ..server.store import manage

    record = _with_db(args, lambda db: manage.revoke(db, args.id))
    _announce(args, args.id)
    _print_key(record.public(), None, args.json)
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from ..server.store import manage

    record, key = _with_db(args, lambda db: manage.rotate(db, args.id, args.grace))
    _announce(args, args.id)
    _print_key(record.public(), key, args.json)
    return 0


def _usage(args: argparse.Namespace) -> int:
    from ..server.store.keys import parse_duration

    since = time.time() - parse_duration(args.since)
    rows = _with_db(args, lambda db: db.usage(since, args.by, key_id=args.key))
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        if rows:
            writer.writerow(rows[0].keys())
            writer.writerows(row.values() for row in rows)
        sys.stdout.write(out.getvalue())
    else:
        header = list(rows[0].keys()) if rows else [args.by, "requests", "total_tokens"]
        print(_table(header, [["-" if v is None else v for v in row.values()] for row in rows]))
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    import asyncio

    from ..server.store.opening import open_database

    async def upgrade() -> tuple[str, list[int], int]:
        db = open_database(_target(args))
        await db.connect()
        try:
            applied = await db.migrate()
            return db.where, applied, await db.version()
        finally:
            await db.close()

    where, applied, version = asyncio.run(upgrade())
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
    print(f"{where}: schema version {version} ({done})")
    return 0


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH|URL",
        help="the store: a SQLite file, 'default' or a postgresql:// URL (default: $GETGPT_DB, else "
        "getgpt.db in the user's data directory)",
    )


def _count(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_admin_parsers(commands: Any, texts: Callable[[str], str]) -> None:
    """``keys``, ``usage`` and ``db`` under ``commands`` (the top parser's subparsers)."""
    keys = commands.add_parser(
        "keys",
        help=texts("keys.help"),
        description="API keys of the store getgpt serve --db uses: each with its own limits, models "
        "and budget. A key is shown once, when made; the store keeps only its hash.",
    )
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--models", metavar="A,B", help="the models it may use (default: all)")
    create.add_argument("--rpm", type=_count, metavar="N", help="requests a minute (default: no limit)")
    create.add_argument("--tpm", type=_count, metavar="N", help="tokens a minute (default: no limit)")
    create.add_argument("--budget-tokens", type=_count, metavar="N", help="tokens it may use in a period")
    create.add_argument(
        "--budget-period", choices=_PERIODS, help="the budget's period, in UTC (default month)"
    )
    create.add_argument("--expires", metavar="30d", help="it stops working after this long (s, m, h, d, w)")
    create.set_defaults(run=_keys_create)
    listing = actions.add_parser("list", help="every key, without secrets")
    listing.set_defaults(run=_keys_list)
    show = actions.add_parser("show", help="one key and what it has spent")
    show.add_argument("id", help="the key's id: the 12 hex digits after gg-")
    show.set_defaults(run=_keys_show)
    revoke = actions.add_parser("revoke", help="stop a key at once (servers see it within --key-cache-ttl)")
    revoke.add_argument("id")
    revoke.set_defaults(run=_keys_revoke)
    rotate = actions.add_parser("rotate", help="a new key with the same settings; the old one expires")
    rotate.add_argument("id")
    rotate.add_argument("--grace", default="0", metavar="1h", help="how long the old key keeps working")
    rotate.set_defaults(run=_keys_rotate)
    for sub in (create, listing, show, revoke, rotate):
        _db_option(sub)
        sub.add_argument("--json", action="store_true", help="print JSON")
    for sub in (revoke, rotate):
        sub.add_argument("--redis", metavar="URL", help="tell servers sharing this Redis at once "
                         "(default: $GETGPT_REDIS_URL)")  # fmt: skip

    usage = commands.add_parser(
        "usage",
        help=texts("usage.help"),
        description="Requests and tokens from the usage ledger, added up.",
    )
    usage.add_argument("--since", default="7d", metavar="7d", help="how far back (default 7d)")
    usage.add_argument("--by", choices=_GROUPS, default="key", help="what to add up by (default key)")
    usage.add_argument("--key", metavar="ID", help="only this key's requests")
    usage.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _db_option(usage)
    usage.set_defaults(run=_usage)

    db = commands.add_parser(
        "db", help=texts("db.help"), description="The store's schema (getgpt serve --db applies it at start)."
    )
    db_actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    upgrade = db_actions.add_parser("upgrade", help="apply the schema migrations the database lacks")
    _db_option(upgrade)
    upgrade.set_defaults(run=_db_upgrade)
