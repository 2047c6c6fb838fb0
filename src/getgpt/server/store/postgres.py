"""The store on PostgreSQL, through ``asyncpg`` (``pip install 'getgpt[postgres]'``).

A small pool of connections; every statement has :data:`TIMEOUT` seconds, so a database that
stops answering costs a request path nothing (the key cache answers) and the ledger's writer
at most that long before it keeps its rows for the next try. The ledger's rows go in by ``COPY``
(3x ``executemany``'s rows a second, bench/store_libraries.py). Migrations take an advisory
lock, so replicas starting together apply each one once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from .database import ADD_SPEND, Database, DatabaseError, describe, migration_steps, spend_rows
from .schema import COLUMNS, UsageRecord

__all__ = ["PostgresDatabase"]

TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
POOL_SIZE = 4
# Any number both sides agree on: the lock migrations take.
_MIGRATION_LOCK = 0x67657467  # "getg"
_MARK = re.compile(r"\?")

Step = tuple[str, Sequence[Any] | None, list[Sequence[Any]] | None]


def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    count = 0

    def number(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return _MARK.sub(number, sql)


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = describe(url)
        self._pool: Any = None
        self._errors: tuple[type[BaseException], ...] = ()

    def _failed(self, exc: BaseException) -> DatabaseError:
        # The exception's text, never the URL (which may hold a password).
        return DatabaseError(f"PostgreSQL ({self.where}): {type(exc).__name__}: {exc}")

    async def connect(self) -> None:
        if self._pool is not None:
            return
        import asyncio

        import asyncpg

        self._errors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=0,
                max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT,
                command_timeout=TIMEOUT,
                # A connection found broken is replaced, never reused.
                max_inactive_connection_lifetime=60,
            )
        except self._errors as exc:
            raise self._failed(exc) from None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await pool.close()
            except self._errors:
                pool.terminate()

    def _ready(self) -> Any:
        if self._pool is None:
            raise DatabaseError("the database is not open")
        return self._pool

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]:
        pool = self._ready()
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                return list(await conn.fetch(_numbered(sql), *args))
        except self._errors as exc:
            raise self._failed(exc) from None

    async def _steps(self, conn: Any, steps: Sequence[Step]) -> None:
        for sql, args, many in steps:
            if many is not None:
                if many:
                    await conn.executemany(_numbered(sql), many)
            else:
                await conn.execute(_numbered(sql), *(args or ()))

    async def run(self, steps: Sequence[Step]) -> None:
        pool = self._ready()
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
                await self._steps(conn, steps)
        except self._errors as exc:
            raise self._failed(exc) from None

    async def write_usage(self, rows: Sequence[UsageRecord]) -> None:
        pool = self._ready()
        spend = spend_rows(rows)
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
                await conn.copy_records_to_table("usage_records", records=rows, columns=COLUMNS)
                if spend:
                    await conn.executemany(_numbered(ADD_SPEND), spend)
        except self._errors as exc:
            raise self._failed(exc) from None

    async def migrate(self) -> list[int]:
        pool = self._ready()
        applied = []
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                async with conn.transaction():
                    # Two replicas creating the table at once would collide without the lock.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS getgpt_schema "
                        "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                    )
                for version, _, statements in migration_steps(self.dialect):
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                        if await conn.fetchval("SELECT 1 FROM getgpt_schema WHERE version = $1", version):
                            continue
                        for statement in statements:
                            await conn.execute(statement)
                        await conn.execute("INSERT INTO getgpt_schema VALUES ($1, $2)", version, time.time())
                    applied.append(version)
        except self._errors as exc:
            raise self._failed(exc) from None
        return applied

    def _day_expression(self) -> str:
        return "to_char(to_timestamp(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
