"""The key store from a test: make keys, read the ledger, on whichever database ``--db`` names."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx

from getgpt.server.store import manage
from getgpt.server.store.database import Database
from getgpt.server.store.keys import KeyRecord
from getgpt.server.store.opening import migrated
from getgpt.server.store.schema import UsageRecord

__all__ = ["make_key", "on_db", "records", "records_of", "revoke"]

T = TypeVar("T")


def on_db(target: str, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on the database ``target`` (migrated first) in an event loop of its own."""

    async def run() -> T:
        async with migrated(target) as db:
            return await work(db)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    # Called where a loop runs already (the browser's thread): a thread of its own for this one.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, run()).result()


def make_key(target: str, name: str = "tester", **settings: Any) -> tuple[KeyRecord, str]:
    """A new key in the store: its record and the key itself."""
    record, key = manage.create(name=name, **settings)

    async def add(db: Database) -> None:
        await db.add_key(record)

    on_db(target, add)
    return record, key


def revoke(target: str, key_id: str) -> None:
    on_db(target, lambda db: manage.revoke(db, key_id))


def records(target: str) -> list[UsageRecord]:
    """Every row of the ledger, in the order they were written."""
    return on_db(target, lambda db: db.records())


def records_of(target: str, answers: Sequence[httpx.Response]) -> list[UsageRecord]:
    """The ledger's row of each answer (by its ``x-request-id``), in the order of ``answers``.

    A row is written as its request settles, after its reply's last byte: a client's next request,
    refused at once, can settle and be written ahead of the reply it followed (seen on CI), so the
    ledger's own order is not the order requests were sent.
    """
    by_id = {row.request_id: row for row in records(target)}
    return [by_id[answer.headers["x-request-id"]] for answer in answers]
