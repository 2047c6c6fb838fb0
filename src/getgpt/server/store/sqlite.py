"""The store on SQLite: one file, in WAL mode, driven by the standard ``sqlite3`` from one thread.

Every statement of a process runs on that one thread, over one connection, so the event loop
never waits on the disk and statements never contend inside the process; other processes (the
workers of ``--workers N``, a ``getgpt keys`` command) share the file through SQLite's own locks,
waiting up to :data:`BUSY_TIMEOUT_MS` for one. ``synchronous=NORMAL`` in WAL mode: a commit
survives a crash of the process, and the last commits before a power loss may not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from .database import ADD_SPEND, Database, DatabaseError, migration_steps, spend_rows
from .schema import COLUMNS, UsageRecord

__all__ = ["SqliteDatabase"]

#: The most rows one INSERT of the ledger's writes, 15 values each: within the values a statement
#: may bind -- 32,766 by default since SQLite 3.32, 999 before. A power of two, see below.
_ROWS_A_STATEMENT = 512 if sqlite3.sqlite_version_info >= (3, 32) else 64


@cache
def _insert_usage(rows: int) -> str:
    """``INSERT INTO usage_records`` of ``rows`` rows."""
    values = "(" + ", ".join("?" * len(COLUMNS)) + ")"
    return f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES " + ", ".join([values] * rows)


def _parts(rows: int) -> list[int]:
    """``rows`` as statements' sizes: full ones, then the rest's powers of two (1,234 -> 512, 512,
    128, 64, 16, 8, 2). Sizes from a fixed few, so each is prepared once and kept: a statement
    of any size would fill sqlite3's cache of 128 with prepared INSERTs of every size met
    (measured: +32 MiB over 200 batches)."""
    full, rest = divmod(rows, _ROWS_A_STATEMENT)
    return [_ROWS_A_STATEMENT] * full + [
        1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1
    ]


T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
#: Rows the ledger writes on the event loop between two checkpoints of the WAL (on the thread).
CHECKPOINT_EVERY = 10_000
_SQLITE_BUSY = 5  # sqlite3.SQLITE_BUSY from Python 3.11

Step = tuple[str, Sequence[Any] | None, list[Sequence[Any]] | None]


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the write lock."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code == _SQLITE_BUSY if code is not None else "locked" in str(exc)


class SqliteDatabase(Database):
    """SQLite through the standard library's ``sqlite3``.

    Two connections to the file. The *thread's* serves everything that may wait -- on the disk,
    or on another process's write lock (``busy_timeout``) -- on a thread of its own, one call at a
    time. The *loop's* only writes the ledger's rows, on the event loop itself: 1,024 rows at
    most in one go (a few ms), never waiting for the lock (a batch that finds it taken goes to
    the thread instead), never checkpointing (the thread does, every :data:`CHECKPOINT_EVERY`
    rows). Measured on an event loop answering 40-70k small requests a second, a row each: the
    same rows cost ~13 us more CPU each written on the thread than on the loop (3 us) -- the
    thread's work ran beside the loop's, and the two contended for Python's lock and the cores.
    """

    dialect = "sqlite"
    #: Rows the ledger hands :meth:`write_usage` at once: written on the event loop, a few ms.
    write_at_most = 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._db: sqlite3.Connection | None = None
        self._here: sqlite3.Connection | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._unchecked = 0

    async def _call(self, work: Callable[[], T]) -> T:
        if self._thread is None:
            raise DatabaseError("the database is not open")

        def guarded() -> T:
            try:
                return work()
            except (sqlite3.Error, OSError) as exc:  # OSError: its folder cannot be made, say
                raise self._failed(exc) from None

        return await asyncio.get_running_loop().run_in_executor(self._thread, guarded)

    def _failed(self, exc: BaseException) -> DatabaseError:
        """SQLite's error as the store's, on either connection."""
        return DatabaseError(f"SQLite ({self.path}): {exc}")

    async def connect(self) -> None:
        if self._thread is not None:
            return
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="getgpt-sqlite")

        def open_file() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # The file holds key hashes and who used what: its owner's to read.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            self._db = db

        try:
            await self._call(open_file)
        except DatabaseError:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise
        try:
            here = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            here.execute("PRAGMA busy_timeout = 0")  # never wait on the loop
            here.execute("PRAGMA synchronous = NORMAL")  # as the thread's: no fsync at a commit
            here.execute("PRAGMA wal_autocheckpoint = 0")  # the thread checkpoints
        except sqlite3.Error:
            here = None  # every write goes to the thread then
        self._here = here

    async def close(self) -> None:
        if self._thread is None:
            return

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        if self._here is not None:
            self._here.close()
            self._here = None
        await self._call(shut)
        self._thread.shutdown(wait=True)
        self._thread = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.OperationalError("the database is closed")
        return self._db

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return await self._call(lambda: self._conn().execute(sql, tuple(args)).fetchall())

    def _steps(self, steps: Sequence[Step], db: sqlite3.Connection | None = None) -> None:
        db = db or self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args, many in steps:
                if many is not None:
                    db.executemany(sql, many)
                else:
                    db.execute(sql, tuple(args or ()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def run(self, steps: Sequence[Step]) -> None:
        await self._call(lambda: self._steps(steps))

    async def write_usage(self, rows: Sequence[UsageRecord]) -> None:
        # A few multi-row INSERTs (executemany would bind row by row), on the loop's connection
        # while no one else is writing; see the class docstring.
        steps: list[Step] = []
        start = 0
        for size in _parts(len(rows)):
            part = rows[start : start + size]
            steps.append((_insert_usage(size), tuple(chain.from_iterable(part)), None))
            start += size
        spend = spend_rows(rows)
        if spend:
            steps.append((ADD_SPEND, None, list(spend)))
        here = self._here
        if here is not None:
            try:
                self._steps(steps, here)
            except sqlite3.Error as exc:
                if not (isinstance(exc, sqlite3.OperationalError) and _busy(exc)):
                    raise self._failed(exc) from None
            else:
                self._unchecked += len(rows)
                if self._unchecked >= CHECKPOINT_EVERY:
                    self._unchecked = 0
                    await self.fetch("PRAGMA wal_checkpoint(PASSIVE)")
                return
        await self.run(steps)  # the lock is another's: this batch waits its turn on the thread

    async def migrate(self) -> list[int]:
        def apply() -> list[int]:
            db = self._conn()
            db.execute(
                "CREATE TABLE IF NOT EXISTS getgpt_schema "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            applied = []
            for version, _, statements in migration_steps(self.dialect):
                db.execute("BEGIN IMMEDIATE")  # another process migrating waits here
                try:
                    if db.execute("SELECT 1 FROM getgpt_schema WHERE version = ?", (version,)).fetchone():
                        db.execute("ROLLBACK")
                        continue
                    for statement in statements:
                        db.execute(statement)
                    db.execute("INSERT INTO getgpt_schema VALUES (?, ?)", (version, time.time()))
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                applied.append(version)
            return applied

        return await self._call(apply)

    def _day_expression(self) -> str:
        return "strftime('%Y-%m-%d', at, 'unixepoch')"
