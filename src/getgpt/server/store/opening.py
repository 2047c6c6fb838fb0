"""Opening the store that ``--db`` names."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from .database import Database, default_path

__all__ = ["migrated", "open_database"]


def open_database(target: str) -> Database:
    """The database ``target`` names -- a file path (SQLite), ``default`` (SQLite in the user's data
    directory) or a ``postgresql://`` URL -- not yet connected: call :meth:`Database.connect`."""
    if target.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresDatabase

        return PostgresDatabase(target)
    from .sqlite import SqliteDatabase

    return SqliteDatabase(default_path() if target == "default" else Path(target))


@contextlib.asynccontextmanager
async def migrated(target: str) -> AsyncIterator[Database]:
    """The database ``target`` names, connected and its schema brought up to date; closed after."""
    db = open_database(target)
    await db.connect()
    try:
        await db.migrate()
        yield db
    finally:
        await db.close()
