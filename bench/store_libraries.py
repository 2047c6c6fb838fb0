"""The database libraries the key store could be built on, side by side (issue 23's choice).

For SQLite and for PostgreSQL in turn: the import time of each library in a fresh interpreter,
the cost of one key lookup by id awaited from the event loop (what a cache miss costs), and of a
batch of ledger rows written in one transaction (rows a second). Contenders:

- SQLite: the standard ``sqlite3`` driven from one thread of its own (``run_in_executor``),
  ``aiosqlite``, and SQLAlchemy Core 2 async on ``aiosqlite``;
- PostgreSQL: ``asyncpg`` (``executemany`` and ``COPY``), ``psycopg`` 3 async (``executemany``
  and ``COPY``), and SQLAlchemy Core 2 async on ``asyncpg``.

PostgreSQL is Debian's, started by ``tests/support/services.Postgres`` in a temporary directory.
Run: ``python -m bench.store_libraries [--rounds N]``. A library that is not installed is named
and skipped (``pip install sqlalchemy aiosqlite asyncpg psycopg`` for the whole table).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import importlib.util
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .common import machine, table

KEYS = 1000
BATCH = 1000

_SCHEMA = (
    "CREATE TABLE keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, hash BYTEA NOT NULL, "
    "models TEXT, rpm INTEGER, tpm INTEGER, revoked_at DOUBLE PRECISION)",
    "CREATE TABLE usage (id BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, key_id TEXT, "
    "model TEXT, served TEXT, upstream TEXT, route TEXT, status INTEGER, prompt INTEGER, "
    "completion INTEGER, first_byte_ms REAL, duration_ms REAL)",
)
_INSERT_ROW = (
    "INSERT INTO usage (at, key_id, model, served, upstream, route, status, prompt, completion, "
    "first_byte_ms, duration_ms) VALUES "
)
_COLUMNS = [
    "at", "key_id", "model", "served", "upstream", "route", "status", "prompt", "completion",
    "first_byte_ms", "duration_ms",
]  # fmt: skip


def _rows(n: int) -> list[tuple[Any, ...]]:
    now = time.time()
    return [
        (now + i, f"k{i % KEYS:04d}", "gpt-4o", "gpt-4o-2024", "main", "/v1/chat/completions", 200, 120, 80,
         12.5, 340.0)
        for i in range(n)
    ]  # fmt: skip


def _sqlite_schema() -> tuple[str, ...]:
    return tuple(
        s.replace("BYTEA", "BLOB").replace("BIGSERIAL", "INTEGER").replace("DOUBLE PRECISION", "REAL")
        for s in _SCHEMA
    )


def _median_us(times: list[float], per: int = 1) -> float:
    return statistics.median(times) / per * 1e6


async def _time(call: Callable[[], Awaitable[object]], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


#: What :func:`import_times` times, by the name its table gives.
IMPORTS = {
    "sqlite3": "import sqlite3",
    "aiosqlite": "import aiosqlite",
    "sqlalchemy async (+aiosqlite)": "import sqlalchemy.ext.asyncio, aiosqlite",
    "asyncpg": "import asyncpg",
    "psycopg 3": "import psycopg",
    "sqlalchemy async (+asyncpg)": "import sqlalchemy.ext.asyncio, asyncpg",
}


def import_times(rounds: int, only: tuple[str, ...] = ()) -> list[list[str]]:
    """Median wall time of ``python -c 'import X'`` beside ``python -c pass``; ``only``: those of
    :data:`IMPORTS` alone (each is a fresh interpreter a round)."""
    modules = {name: code for name, code in IMPORTS.items() if not only or name in only}
    base_times = []
    found: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        base_times.append(time.perf_counter() - started)
        for name, code in modules.items():
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
            found[name].append(time.perf_counter() - started if done.returncode == 0 else float("nan"))
    base = statistics.median(base_times)
    return [[name, f"{(statistics.median(t) - base) * 1000:.1f}"] for name, t in found.items()]


class _Contender:
    name = ""
    needs = ""

    async def open(self) -> None: ...
    async def lookup(self, key_id: str) -> Any: ...
    async def write(self, rows: list[tuple[Any, ...]]) -> None: ...
    async def close(self) -> None: ...


class _Sqlite3Thread(_Contender):
    name = "sqlite3 in a thread"
    needs = "sqlite3"

    def __init__(self, path: str) -> None:
        self.path = path

    async def open(self) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.loop = asyncio.get_running_loop()

        def connect() -> None:
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")

        await self.loop.run_in_executor(self.pool, connect)

    async def lookup(self, key_id: str) -> Any:
        def get() -> Any:
            return self.db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()

        return await self.loop.run_in_executor(self.pool, get)

    async def write(self, rows: list[tuple[Any, ...]]) -> None:
        sql = _INSERT_ROW + "(" + ",".join("?" * len(_COLUMNS)) + ")"

        def put() -> None:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany(sql, rows)

        await self.loop.run_in_executor(self.pool, put)

    async def close(self) -> None:
        await self.loop.run_in_executor(self.pool, self.db.close)
        self.pool.shutdown()


class _Aiosqlite(_Contender):
    name = "aiosqlite"
    needs = "aiosqlite"

    def __init__(self, path: str) -> None:
        self.path = path

    async def open(self) -> None:
        import aiosqlite

        self.db = await aiosqlite.connect(self.path, isolation_level=None)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.execute("PRAGMA synchronous=NORMAL")

    async def lookup(self, key_id: str) -> Any:
        async with self.db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)) as cursor:
            return await cursor.fetchone()

    async def write(self, rows: list[tuple[Any, ...]]) -> None:
        sql = _INSERT_ROW + "(" + ",".join("?" * len(_COLUMNS)) + ")"
        await self.db.execute("BEGIN")
        await self.db.executemany(sql, rows)
        await self.db.execute("COMMIT")

    async def close(self) -> None:
        await self.db.close()


class _Alchemy(_Contender):
    needs = "sqlalchemy"

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name

    async def open(self) -> None:
        import sqlalchemy as sa
        from sqlalchemy.ext.asyncio import create_async_engine

        self.sa = sa
        self.engine = create_async_engine(self.url)
        meta = sa.MetaData()
        self.keys = sa.Table("keys", meta, sa.Column("id", sa.Text, primary_key=True), autoload_with=None)
        self.keys = sa.table("keys", sa.column("id"), sa.column("name"), sa.column("hash"))
        self.usage = sa.table("usage", *(sa.column(c) for c in _COLUMNS))
        self.lookup_q = sa.select(self.keys).where(self.keys.c.id == sa.bindparam("kid"))
        self.conn = await self.engine.connect()

    async def lookup(self, key_id: str) -> Any:
        return (await self.conn.execute(self.lookup_q, {"kid": key_id})).first()

    async def write(self, rows: list[tuple[Any, ...]]) -> None:
        await self.conn.execute(self.usage.insert(), [dict(zip(_COLUMNS, row, strict=True)) for row in rows])
        await self.conn.commit()

    async def close(self) -> None:
        await self.conn.close()
        await self.engine.dispose()


class _Asyncpg(_Contender):
    needs = "asyncpg"

    def __init__(self, url: str, copy: bool) -> None:
        self.url = url
        self.copy = copy
        self.name = "asyncpg COPY" if copy else "asyncpg executemany"

    async def open(self) -> None:
        import asyncpg

        self.db = await asyncpg.connect(self.url)
        self.get = await self.db.prepare("SELECT * FROM keys WHERE id = $1")

    async def lookup(self, key_id: str) -> Any:
        return await self.get.fetchrow(key_id)

    async def write(self, rows: list[tuple[Any, ...]]) -> None:
        async with self.db.transaction():
            if self.copy:
                await self.db.copy_records_to_table("usage", records=rows, columns=_COLUMNS)
            else:
                marks = ",".join(f"${i + 1}" for i in range(len(_COLUMNS)))
                await self.db.executemany(_INSERT_ROW + f"({marks})", rows)

    async def close(self) -> None:
        await self.db.close()


class _Psycopg(_Contender):
    needs = "psycopg"

    def __init__(self, url: str, copy: bool) -> None:
        self.url = url
        self.copy = copy
        self.name = "psycopg 3 COPY" if copy else "psycopg 3 executemany"

    async def open(self) -> None:
        import psycopg

        self.db = await psycopg.AsyncConnection.connect(self.url, autocommit=True, prepare_threshold=0)

    async def lookup(self, key_id: str) -> Any:
        async with self.db.cursor() as cursor:
            await cursor.execute("SELECT * FROM keys WHERE id = %s", (key_id,))
            return await cursor.fetchone()

    async def write(self, rows: list[tuple[Any, ...]]) -> None:
        async with self.db.transaction(), self.db.cursor() as cursor:
            if self.copy:
                async with cursor.copy(f"COPY usage ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        await copy.write_row(row)
            else:
                marks = ",".join(["%s"] * len(_COLUMNS))
                await cursor.executemany(_INSERT_ROW + f"({marks})", rows)

    async def close(self) -> None:
        await self.db.close()


async def _measure(contender: _Contender, lookups: int, batches: int) -> list[str]:
    await contender.open()
    try:
        ids = [f"k{(i * 7919) % KEYS:04d}" for i in range(lookups)]
        for key_id in ids[:50]:  # warm: prepared statements, caches
            assert await contender.lookup(key_id) is not None
        times = []
        for key_id in ids:
            started = time.perf_counter()
            await contender.lookup(key_id)
            times.append(time.perf_counter() - started)
        rows = _rows(BATCH)
        await contender.write(rows)
        writes = await _time(lambda: contender.write(rows), batches)
    finally:
        await contender.close()
    batch = statistics.median(writes)
    return [
        contender.name,
        f"{_median_us(times):.0f}",
        f"{batch * 1000:.1f}",
        f"{BATCH / batch:,.0f}",
    ]


def _fill_sqlite(path: str) -> None:
    db = sqlite3.connect(path)
    for statement in _sqlite_schema():
        db.execute(statement)
    db.executemany(
        "INSERT INTO keys (id, name, hash) VALUES (?, ?, ?)",
        [(f"k{i:04d}", f"person {i}", os.urandom(32)) for i in range(KEYS)],
    )
    db.commit()
    db.close()


async def _fill_postgres(url: str) -> None:
    import asyncpg

    db = await asyncpg.connect(url)
    for statement in _SCHEMA:
        await db.execute(statement)
    await db.executemany(
        "INSERT INTO keys (id, name, hash) VALUES ($1, $2, $3)",
        [(f"k{i:04d}", f"person {i}", os.urandom(32)) for i in range(KEYS)],
    )
    await db.close()


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def run_libraries(
    lookups: int, batches: int, rounds: int, postgres: Any = None, imports: tuple[str, ...] = ()
) -> str:
    """``postgres``: a running tests.support.services.Postgres to take the databases from (a test
    suite's); by default one is started for the run and stopped after. ``imports``: the import
    times of those of :data:`IMPORTS` alone (by default all)."""
    lines = ["## 10. Store libraries (issue 23: which library the key store and ledger use)", ""]
    lines += [
        f"Import time in a fresh interpreter over `python -c pass`, median of {rounds}:",
        "",
        table(["library", "import ms"], import_times(rounds, imports)),
        "",
    ]
    header = ["contender", "lookup us (median)", f"batch of {BATCH} ms", "rows/s"]
    with tempfile.TemporaryDirectory() as where:
        rows_out = []
        for make in (_Sqlite3Thread, _Aiosqlite):
            path = str(Path(where) / f"{make.__name__}.db")
            _fill_sqlite(path)
            contender = make(path)
            if _installed(contender.needs):
                rows_out.append(asyncio.run(_measure(contender, lookups, batches)))
            else:
                rows_out.append([contender.name, "not installed", "", ""])
        if _installed("sqlalchemy") and _installed("aiosqlite"):
            path = str(Path(where) / "alchemy.db")
            _fill_sqlite(path)
            alchemy = _Alchemy(f"sqlite+aiosqlite:///{path}", "sqlalchemy core async (aiosqlite)")
            rows_out.append(asyncio.run(_measure(alchemy, lookups, batches)))
        lines += [f"SQLite (WAL, synchronous=NORMAL), {lookups} lookups, {batches} batches:", ""]
        lines += [table(header, rows_out), ""]
    lines += _postgres_rows(header, lookups, batches, postgres)
    return "\n".join(lines)


def _postgres(running: Any) -> Any:
    """``running`` (left running afterwards), or a server of its own for the run."""
    if running is not None:
        return contextlib.nullcontext(running)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.services import Postgres

    return Postgres()


def _postgres_rows(header: list[str], lookups: int, batches: int, postgres: Any) -> list[str]:
    if not _installed("asyncpg"):
        return ["PostgreSQL: asyncpg is not installed (it fills the tables); skipped.", ""]
    rows_out = []
    with _postgres(postgres) as server:
        contenders: list[_Contender] = [_Asyncpg(server.url(), False), _Asyncpg(server.url(), True)]
        if _installed("psycopg"):
            contenders += [_Psycopg(server.url(), False), _Psycopg(server.url(), True)]
        if _installed("sqlalchemy"):
            contenders.append(
                _Alchemy(server.url().replace("postgresql://", "postgresql+asyncpg://"),
                         "sqlalchemy core async (asyncpg)")
            )  # fmt: skip
        for contender in contenders:
            database = server.create_database()
            asyncio.run(_fill_postgres(database))
            contender.url = database  # type: ignore[attr-defined]
            if isinstance(contender, _Alchemy):
                contender.url = database.replace("postgresql://", "postgresql+asyncpg://")
            rows_out.append(asyncio.run(_measure(contender, lookups, batches)))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return [
        f"PostgreSQL (Debian's, loopback TCP, fsync off), {lookups} lookups, {batches} batches ({when}):",
        "",
        table(header, rows_out),
        "",
    ]


def run(quick: bool) -> str:
    return run_libraries(200 if quick else 5000, 3 if quick else 30, 2 if quick else 7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(machine(), "", run_libraries(args.lookups, args.batches, args.rounds), sep="\n")


if __name__ == "__main__":
    main()
