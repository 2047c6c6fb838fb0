"""The store: keys, the usage ledger and the spend per key, on SQLite or PostgreSQL.

:func:`open_database` takes what ``--db`` says -- a file path (SQLite, created on first use),
``default`` (``getgpt.db`` in the user's data directory) or a ``postgresql://`` URL -- and gives a
:class:`Database`. Both backends run the same SQL (written with ``?`` placeholders, numbered for
PostgreSQL) through the driver alone: the standard ``sqlite3`` on one thread of its own, and
``asyncpg``. The choice was measured (bench/store_libraries.py, bench/RESULTS.md): SQLAlchemy Core
2 async cost 0.75 s of import time and 4-20x the time per batched write; aiosqlite 3x the write
time of ``sqlite3`` driven from a thread; psycopg 3 ~2.5x asyncpg's import time and its writes.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .keys import KeyRecord, day_of, period_start
from .schema import COLUMNS, MIGRATIONS, UsageRecord

__all__ = [
    "ADD_SPEND",
    "GROUPS",
    "Database",
    "DatabaseError",
    "default_path",
    "describe",
    "migration_steps",
    "spend_rows",
]

#: What ``getgpt usage --by`` and ``/admin/usage?by=`` group by.
GROUPS = ("key", "model", "upstream", "day", "route")

_KEY_COLUMNS = (
    "id, name, hash, models, rpm, tpm, budget_tokens, budget_period, created_at, expires_at, "
    "revoked_at, rotated_from, changed_at"
)
_INSERT_KEY = f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ({', '.join('?' * 13)})"
ADD_SPEND = (
    "INSERT INTO key_spend (key_id, day, tokens) VALUES (?, ?, ?) "
    "ON CONFLICT (key_id, day) DO UPDATE SET tokens = key_spend.tokens + excluded.tokens"
)
# The spend of every key with a budget, each over its own period: one query for all keys.
_SPENDS = """
SELECT s.key_id, SUM(s.tokens) FROM key_spend s JOIN api_keys k ON k.id = s.key_id
WHERE k.budget_tokens IS NOT NULL AND (
    k.budget_period = 'total' OR (k.budget_period = 'month' AND s.day >= ?)
    OR (k.budget_period = 'day' AND s.day >= ?))
GROUP BY s.key_id
"""


#: One statement of a transaction: ``(sql, args, many)``.
Step = tuple[str, Sequence[Any] | None, list[Sequence[Any]] | None]


class DatabaseError(Exception):
    """The database could not be reached or refused a statement; ``str()`` says which, never a secret."""


def default_path() -> Path:
    """``getgpt.db`` in the user's data directory (``~/.local/share/getgpt`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("getgpt", appauthor=False)) / "getgpt.db"


def describe(target: str) -> str:
    """Where a ``--db`` value points, for a log line: a path, or a URL without its password."""
    if target.startswith(("postgresql://", "postgres://")):
        scheme, _, rest = target.partition("://")
        credentials, at, place = rest.rpartition("@")
        user = credentials.partition(":")[0]
        return f"{scheme}://{user + '@' if at else ''}{place}"
    return str(default_path() if target == "default" else Path(target))


def _record(row: Sequence[Any]) -> KeyRecord:
    models = row[3]
    return KeyRecord(
        id=row[0],
        name=row[1],
        hash=bytes(row[2]),
        models=tuple(models.split(",")) if models is not None else None,
        rpm=row[4],
        tpm=row[5],
        budget_tokens=row[6],
        budget_period=row[7],
        created_at=row[8],
        expires_at=row[9],
        revoked_at=row[10],
        rotated_from=row[11],
        changed_at=row[12],
    )


def _key_row(record: KeyRecord) -> tuple[Any, ...]:
    return (
        record.id,
        record.name,
        record.hash,
        ",".join(record.models) if record.models is not None else None,
        record.rpm,
        record.tpm,
        record.budget_tokens,
        record.budget_period,
        record.created_at,
        record.expires_at,
        record.revoked_at,
        record.rotated_from,
        record.changed_at,
    )


def spend_rows(rows: Iterable[UsageRecord]) -> list[tuple[str, str, int]]:
    """The tokens of ``rows`` added up per key and UTC day, for ``key_spend``."""
    # By the day's number first, and each day written out once: strftime for every row was most
    # of a batch's time (bench/keys.py).
    sums: dict[tuple[str, int], int] = {}
    for row in rows:
        if row.key_id is not None:
            tokens = row.prompt_tokens + row.completion_tokens
            if tokens:
                where = (row.key_id, int(row.at // 86400))
                sums[where] = sums.get(where, 0) + tokens
    days: dict[int, str] = {}
    for _, number in sums:
        if number not in days:
            days[number] = day_of(number * 86400.0)
    return [(key_id, days[number], tokens) for (key_id, number), tokens in sums.items()]


def _usage_row(row: Sequence[Any]) -> UsageRecord:
    values = list(row)
    values[COLUMNS.index("estimated")] = bool(values[COLUMNS.index("estimated")])
    return UsageRecord(*values)


class Database(abc.ABC):
    """What the server, the CLI and the admin API ask of the store."""

    dialect = ""
    #: Where it is, for log lines and ``getgpt db upgrade`` (no password).
    where = ""
    #: The most rows the ledger hands :meth:`write_usage` at once (one transaction).
    write_at_most = 20_000

    # What each backend provides: statements with ``?`` placeholders, run in one transaction.
    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]: ...

    @abc.abstractmethod
    async def run(
        self, steps: Sequence[tuple[str, Sequence[Any] | None, list[Sequence[Any]] | None]]
    ) -> None:
        """Run ``(sql, args, many)`` steps in one transaction: ``many`` runs ``sql`` once a row."""

    @abc.abstractmethod
    async def migrate(self) -> list[int]:
        """Apply the missing migrations, one transaction each, safe against another process doing
        the same at once; return the versions applied."""

    @abc.abstractmethod
    async def write_usage(self, rows: Sequence[UsageRecord]) -> None:
        """Add ``rows`` to the ledger and their tokens to ``key_spend``, in one transaction."""

    # The rest is the same SQL on both.
    async def version(self) -> int:
        try:
            found = await self.fetch("SELECT MAX(version) FROM getgpt_schema")
        except DatabaseError:
            return 0
        return int(found[0][0] or 0)

    async def ping(self) -> None:
        await self.fetch("SELECT 1")

    async def add_key(self, record: KeyRecord) -> None:
        await self.run([(_INSERT_KEY, _key_row(record), None)])

    async def get_key(self, key_id: str) -> KeyRecord | None:
        found = await self.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
        return _record(found[0]) if found else None

    async def list_keys(self) -> list[KeyRecord]:
        found = await self.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return [_record(row) for row in found]

    async def changed_keys(self, since: float) -> list[KeyRecord]:
        """Keys created or changed at or after ``since``."""
        found = await self.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE changed_at >= ?", (since,))
        return [_record(row) for row in found]

    async def revoke(self, key_id: str, at: float | None = None) -> KeyRecord | None:
        at = time.time() if at is None else at
        await self.run(
            [
                (
                    "UPDATE api_keys SET revoked_at = ?, changed_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (at, at, key_id),
                    None,
                )
            ]
        )
        return await self.get_key(key_id)

    async def rotate(self, old: KeyRecord, new: KeyRecord, old_until: float) -> None:
        """Add ``new`` and let ``old`` expire at ``old_until`` (sooner if it already expires sooner)."""
        until = old_until if old.expires_at is None else min(old.expires_at, old_until)
        await self.run(
            [
                (_INSERT_KEY, _key_row(new), None),
                (
                    "UPDATE api_keys SET expires_at = ?, changed_at = ? WHERE id = ?",
                    (until, new.changed_at, old.id),
                    None,
                ),
            ]
        )

    async def spends(self, now: float) -> dict[str, int]:
        """Tokens spent by each key with a budget in its budget's current period."""
        found = await self.fetch(_SPENDS, (period_start("month", now), period_start("day", now)))
        return {row[0]: int(row[1]) for row in found}

    async def spent(self, key_id: str, period: str, now: float) -> int:
        found = await self.fetch(
            "SELECT SUM(tokens) FROM key_spend WHERE key_id = ? AND day >= ?",
            (key_id, period_start(period, now)),
        )
        return int(found[0][0] or 0)

    def _day_expression(self) -> str:
        raise NotImplementedError

    async def usage(
        self, since: float, by: str, key_id: str | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """The ledger since ``since``, added up by ``key``, ``model``, ``upstream``, ``day`` or ``route``."""
        if by not in GROUPS:
            raise ValueError(f"usage is grouped by one of {', '.join(GROUPS)}, not {by!r}")
        group = {"key": "key_id", "model": "model", "upstream": "upstream", "route": "route"}.get(by)
        group = group or self._day_expression()
        where, args = "at >= ?", [since]
        args_any: list[Any] = args
        if until is not None:
            where += " AND at < ?"
            args_any.append(until)
        if key_id is not None:
            where += " AND key_id = ?"
            args_any.append(key_id)
        sql = (
            f"SELECT {group} AS grp, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
            "SUM(cached_tokens), SUM(reasoning_tokens), "
            "SUM(CASE WHEN estimated THEN 1 ELSE 0 END), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) "
            f"FROM usage_records WHERE {where} GROUP BY grp ORDER BY grp"
        )
        found = await self.fetch(sql, args_any)
        return [
            {
                by: row[0],
                "requests": int(row[1]),
                "prompt_tokens": int(row[2] or 0),
                "completion_tokens": int(row[3] or 0),
                "total_tokens": int(row[2] or 0) + int(row[3] or 0),
                "cached_tokens": int(row[4] or 0),
                "reasoning_tokens": int(row[5] or 0),
                "estimated": int(row[6] or 0),
                "errors": int(row[7] or 0),
            }
            for row in found
        ]

    async def records(self, since: float = 0.0) -> list[UsageRecord]:
        """The ledger's rows since ``since``, oldest first (tests, exports)."""
        found = await self.fetch(
            f"SELECT {', '.join(COLUMNS)} FROM usage_records WHERE at >= ? ORDER BY id", (since,)
        )
        return [_usage_row(row) for row in found]


def migration_steps(dialect: str) -> list[tuple[int, str, list[str]]]:
    from .schema import statements

    return [(version, what, statements(dialect, body)) for version, what, body in MIGRATIONS]
