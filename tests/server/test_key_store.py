"""The key store itself, on a real SQLite file and a real PostgreSQL server: migrations, keys kept
as hashes, revocation and rotation, the ledger's batches and the spend they add up to."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from getgpt.server.store import manage
from getgpt.server.store.database import Database
from getgpt.server.store.keys import KeyRecord, hash_key, period_end, period_start, split_key
from getgpt.server.store.ledger import Ledger
from getgpt.server.store.opening import open_database
from getgpt.server.store.schema import MIGRATIONS, UsageRecord

from ..support.keystore import make_key, on_db, records


def _row(
    key_id: str | None, prompt: int, completion: int, *, at: float | None = None, **rest: object
) -> UsageRecord:
    values: dict[str, object] = {
        "at": time.time() if at is None else at,
        "key_id": key_id,
        "request_id": "r",
        "route": "/v1/chat/completions",
        "model": "m",
        "served": "m",
        "upstream": "up",
        "status": 200,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "estimated": False,
        "first_byte_ms": 1.5,
        "duration_ms": 2.5,
    }
    values.update(rest)
    return UsageRecord(**values)  # type: ignore[arg-type]


def test_migrations_are_applied_once_and_recorded(db_target: str) -> None:
    async def run(db: Database) -> tuple[list[int], int]:
        return await db.migrate(), await db.version()

    again, version = on_db(db_target, run)  # on_db migrated it already
    assert again == []
    assert version == MIGRATIONS[-1][0]


def test_replicas_migrating_at_once_apply_each_migration_once(db_target: str) -> None:
    async def run() -> list[list[int]]:
        databases = [open_database(db_target) for _ in range(4)]
        for db in databases:
            await db.connect()
        try:
            return list(await asyncio.gather(*(db.migrate() for db in databases)))
        finally:
            for db in databases:
                await db.close()

    applied = asyncio.run(run())
    assert sorted(version for found in applied for version in found) == [v for v, _, _ in MIGRATIONS]


def test_a_key_is_kept_as_its_hash_and_its_id_is_readable_in_it(db_target: str) -> None:
    record, key = make_key(
        db_target, "alice", models=["a", "b"], rpm=5, budget_tokens=100, budget_period="day"
    )
    assert split_key(key) == record.id and key.startswith(f"gg-{record.id}-")
    found = on_db(db_target, lambda db: db.get_key(record.id))
    assert found == record
    assert found is not None and found.matches(key) and found.hash == hash_key(key)
    assert not found.matches(key[:-1] + ("A" if key[-1] != "A" else "B"))
    secret = key.split("-", 2)[2]  # gg-<id>-<secret>; the secret itself may hold "-"
    if db_target.startswith("postgresql://"):
        dump = subprocess.run(
            ["pg_dump", "--data-only", db_target], capture_output=True, text=True, check=False
        ).stdout or _pg_rows(db_target)
    else:
        dump = Path(db_target).read_bytes().decode("latin-1") + _wal(db_target)
    assert record.id in dump
    assert secret not in dump and key not in dump


def _wal(path: str) -> str:
    wal = Path(path + "-wal")
    return wal.read_bytes().decode("latin-1") if wal.exists() else ""


def _pg_rows(target: str) -> str:
    async def rows(db: Database) -> str:
        found = await db.fetch("SELECT * FROM api_keys")
        return repr([tuple(row) for row in found])

    return on_db(target, rows)


def test_a_revoked_key_says_so_and_revoking_again_keeps_the_first_time(db_target: str) -> None:
    record, _ = make_key(db_target)

    async def run(db: Database) -> tuple[KeyRecord, KeyRecord]:
        first = await manage.revoke(db, record.id)
        return first, await manage.revoke(db, record.id)

    first, second = on_db(db_target, run)
    assert first.revoked_at is not None and first.refusal(time.time()) == "revoked"
    assert second.revoked_at == first.revoked_at
    with pytest.raises(manage.KeyNotFound):
        on_db(db_target, lambda db: manage.revoke(db, "000000000000"))


def test_rotation_makes_a_key_with_the_same_settings_and_the_old_one_expires_after_the_grace(
    db_target: str,
) -> None:
    old, old_key = make_key(db_target, "bob", models=["m"], tpm=50, budget_tokens=10, budget_period="month")
    before = time.time()
    new, new_key = on_db(db_target, lambda db: manage.rotate(db, old.id, "1h"))
    after = on_db(db_target, lambda db: db.get_key(old.id))
    assert new_key != old_key and new.rotated_from == old.id
    assert (new.name, new.models, new.tpm, new.budget_tokens, new.budget_period) == (
        "bob",
        ("m",),
        50,
        10,
        "month",
    )
    assert after is not None and after.expires_at is not None
    assert before + 3600 <= after.expires_at <= time.time() + 3600
    assert after.refusal(time.time()) is None and after.refusal(time.time() + 3601) == "expired"


def test_key_settings_that_make_no_sense_are_refused() -> None:
    for bad in (
        {"name": " "},
        {"name": "x", "models": []},
        {"name": "x", "rpm": 0},
        {"name": "x", "tpm": 2**31},
        {"name": "x", "rpm": "5"},
        {"name": "x", "budget_tokens": True},
        {"name": "x", "budget_period": "day"},
        {"name": "x", "budget_tokens": 5, "budget_period": "week"},
        {"name": "x", "expires": "soon"},
    ):
        with pytest.raises(ValueError):
            manage.create(**bad)  # type: ignore[arg-type]


def test_the_ledger_writes_in_batches_and_adds_up_the_spend_per_key_and_day(db_target: str) -> None:
    yesterday = time.time() - 86400

    async def run(db: Database) -> tuple[int, dict[str, int], int, int, list[dict[str, object]]]:
        written: list[int] = []
        ledger = Ledger(db, batch=3, flush_every=60, written=lambda rows: written.append(len(rows)))
        await ledger.start()
        for i in range(7):
            ledger.add(_row("k1", 10, i))
        ledger.add(_row("k2", 5, 5, model="other"))
        ledger.add(_row("k1", 100, 0, at=yesterday))
        ledger.add(_row(None, 0, 0, status=401))
        await ledger.aclose()  # the drain: whatever is left is written
        assert sum(written) == 10
        month = await db.spent("k1", "month", time.time())
        today = await db.spent("k1", "day", time.time())
        return (
            ledger.rows_written,
            {"month": month},
            today,
            await db.spent("k2", "total", time.time()),
            (await db.usage(0, "model")),
        )

    written, month, today, k2, by_model = on_db(db_target, run)
    assert written == 10
    assert today == 70 + sum(range(7))
    same_month = period_start("month", time.time()) <= period_start("day", yesterday)
    assert month["month"] == today + (100 if same_month else 0)
    assert k2 == 10
    assert {row["model"]: row["requests"] for row in by_model} == {"m": 9, "other": 1}
    assert len(records(db_target)) == 10


def test_a_large_batch_is_written_whole_in_order_with_every_value_as_given(db_target: str) -> None:
    # More rows than one INSERT of SQLite's takes (two full statements and a part), every column
    # varied, None and False among them: what is read back is what was added, row for row.
    rows = [
        UsageRecord(
            1_790_000_000.25 + i,
            None if i % 7 == 0 else f"k{i % 3}",
            f"request-{i}",
            "/v1/chat/completions" if i % 2 else "/v1/embeddings",
            f"model-{i % 5}",
            f"served-{i % 4}",
            "upstream-" + "ab"[i % 2],
            200 if i % 11 else 502,
            i,
            2 * i,
            i % 9,
            i % 13,
            i % 17 == 0,
            None if i % 5 == 0 else i / 8,
            i / 4,
        )
        for i in range(1234)
    ]

    async def run(db: Database) -> None:
        await db.write_usage(rows)

    on_db(db_target, run)
    assert records(db_target) == rows


def test_sqlite_batches_of_any_size_are_written_with_a_fixed_few_statements(tmp_path: Path) -> None:
    # Each INSERT size is prepared once and kept by sqlite3: batches of every size must not make
    # one statement each (the cache of 128 would fill with INSERTs of ~0.25 MiB apiece).
    from getgpt.server.store import sqlite

    sizes = [*range(1, 65), *range(1000, 1064)]

    async def run(db: Database) -> None:
        for size in sizes:
            await db.write_usage([_row("k", 1, 1)] * size)

    on_db(str(tmp_path / "getgpt.db"), run)
    assert len(records(str(tmp_path / "getgpt.db"))) == sum(sizes)
    assert sqlite._insert_usage.cache_info().currsize <= 10


def test_sqlite_ledger_rows_wait_on_the_thread_while_another_writer_holds_the_lock(tmp_path: Path) -> None:
    # The loop's connection never waits for the write lock: a batch that finds it taken goes to the
    # thread, which waits its turn, while the event loop goes on serving.
    target = str(tmp_path / "getgpt.db")

    async def run(db: Database) -> None:
        other = sqlite3.connect(target, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write, say
        try:
            writing = asyncio.ensure_future(db.write_usage([_row("k", 1, 2)] * 700))
            turns = 0
            for _ in range(50):
                await asyncio.sleep(0)
                turns += 1
            assert turns == 50 and not writing.done()  # the loop runs; the batch waits
        finally:
            other.execute("COMMIT")
            other.close()
        await asyncio.wait_for(writing, 10)

    on_db(target, run)
    assert len(records(target)) == 700


def test_sqlite_ledger_writes_keep_the_wal_checkpointed(tmp_path: Path) -> None:
    # The loop's connection does not checkpoint (it may wait on the disk); the thread does, every
    # CHECKPOINT_EVERY rows: the WAL stays a fraction of the file instead of holding every row.
    target = str(tmp_path / "getgpt.db")

    async def run(db: Database) -> tuple[int, int]:
        for _ in range(80):
            await db.write_usage([_row("k", 1, 2)] * 1024)
        return os.path.getsize(target + "-wal"), os.path.getsize(target)  # before the close's checkpoint

    wal, whole = on_db(target, run)
    assert wal < whole / 3, (wal, whole)


def test_a_usage_answer_counts_each_row_once_while_a_write_commits_during_its_read(db_target: str) -> None:
    # The interleaving of a page asking for its usage right after a reply: the ledger's write of
    # that reply's row commits while the database is being read. The read saw the database before
    # the commit; the row has left the ledger after it: counted nowhere, unless read again.
    from getgpt.server.admission.admin import with_waiting
    from getgpt.server.store.ledger import usage_now

    async def run(db: Database) -> list[int]:
        ledger = Ledger(db, flush_every=60)
        counts = []
        for _ in range(3):
            ledger.add(_row("k", 1, 2))
            first = True

            async def read() -> list[dict[str, object]]:
                nonlocal first
                rows = await db.usage(0, "key", key_id="k")
                if first:  # the write commits between this read and the answer
                    first = False
                    assert await ledger.flush()
                return rows

            rows, waiting = await usage_now(ledger, read)
            answer = with_waiting(rows, waiting, "key", 0, "k")
            counts.append(sum(int(row["requests"]) for row in answer))  # type: ignore[call-overload]
        return counts

    assert on_db(db_target, run) == [1, 2, 3]


def test_the_ledger_keeps_rows_being_written_among_those_waiting_until_they_commit(tmp_path: Path) -> None:
    # While a write is under way (on the database's thread, say), its rows are in neither the
    # database nor, if the ledger let go of them first, what is waiting: a usage answer then
    # would miss them.
    target = str(tmp_path / "getgpt.db")

    async def run(db: Database) -> tuple[int, int, int]:
        ledger = Ledger(db, flush_every=60)
        release = asyncio.Event()
        writing = asyncio.Event()
        write = db.write_usage

        async def slow_write(rows: Sequence[UsageRecord]) -> None:
            writing.set()
            await release.wait()
            await write(rows)

        db.write_usage = slow_write  # type: ignore[method-assign]
        for _ in range(5):
            ledger.add(_row("k", 1, 2))
        flushing = asyncio.ensure_future(ledger.flush())
        await writing.wait()
        during = len(ledger.waiting())
        release.set()
        assert await flushing
        return during, len(ledger.waiting()), ledger.rows_written

    assert on_db(target, run) == (5, 0, 5)


def test_the_ledgers_writer_writes_the_rows_there_as_it_woke_and_leaves_later_ones_for_its_next_turn(
    tmp_path: Path,
) -> None:
    # Writing on while rows kept coming, a loaded server made a transaction of ~45 rows every
    # 12 ms instead of one of ~1,200 every half second (bench/keys.py: PostgreSQL's CPU).
    target = str(tmp_path / "getgpt.db")

    async def run(db: Database) -> list[int]:
        ledger = Ledger(db, flush_every=3600, batch=3)  # woken by 3 rows waiting, never by the clock
        writes: list[int] = []
        release = asyncio.Event()
        write = db.write_usage

        async def held_write(rows: Sequence[UsageRecord]) -> None:
            writes.append(len(rows))
            await release.wait()
            await write(rows)

        db.write_usage = held_write  # type: ignore[method-assign]
        await ledger.start()
        try:
            for i in range(3):
                ledger.add(_row("k", i, 1))
            while not writes:
                await asyncio.sleep(0)
            ledger.add(_row("k", 3, 1))  # while the first write is under way:
            ledger.add(_row("k", 4, 1))  # 2 rows more, fewer than a batch
            release.set()
            while ledger.batches_written < 1:
                await asyncio.sleep(0)
            for _ in range(50):  # the writer's turns: it would write the 2 now if it went on
                await asyncio.sleep(0)
            seen = [len(writes), ledger.pending]
            ledger.add(_row("k", 5, 1))  # a batch waiting again: written at once
            while ledger.batches_written < 2:
                await asyncio.sleep(0)
            return seen + writes
        finally:
            await ledger.aclose()

    assert on_db(target, run) == [1, 2, 3, 3]
    assert len(records(target)) == 6


def test_the_ledger_keeps_its_rows_in_memory_while_the_database_is_away_and_drops_the_oldest_past_its_bound(
    tmp_path: Path,
) -> None:
    target = str(tmp_path / "away" / "getgpt.db")

    async def run() -> tuple[bool, int, int, bool, int]:
        db = open_database(target)
        ledger = Ledger(db, max_buffer=5, flush_every=60)  # never connected: every write fails
        for i in range(8):
            ledger.add(_row("k", i, 0))
        failed = await ledger.flush()
        kept, dropped = ledger.pending, ledger.dropped
        await db.connect()
        await db.migrate()
        written = await ledger.flush()
        rows = await db.records()
        await db.close()
        return failed, kept, dropped, written, [r.prompt_tokens for r in rows]  # type: ignore[return-value]

    failed, kept, dropped, written, prompts = asyncio.run(run())
    assert (failed, kept, dropped, written) == (False, 5, 3, True)
    assert prompts == [3, 4, 5, 6, 7]  # the newest five, in order


def test_usage_adds_up_by_every_grouping(db_target: str) -> None:
    async def run(db: Database) -> dict[str, list[dict[str, object]]]:
        await db.write_usage(
            [
                _row("a", 1, 2, model="x", upstream="u1"),
                _row("a", 3, 4, model="y", upstream="u2", estimated=True),
                _row("b", 5, 6, model="x", upstream="u1", status=500),
            ]
        )
        return {by: await db.usage(0, by) for by in ("key", "model", "upstream", "day", "route")}

    found = on_db(db_target, run)
    assert [(r["key"], r["requests"], r["total_tokens"], r["estimated"]) for r in found["key"]] == [
        ("a", 2, 10, 1),
        ("b", 1, 11, 0),
    ]
    assert [(r["model"], r["prompt_tokens"], r["errors"]) for r in found["model"]] == [
        ("x", 6, 1),
        ("y", 3, 0),
    ]
    assert [(r["upstream"], r["completion_tokens"]) for r in found["upstream"]] == [("u1", 8), ("u2", 4)]
    assert [r["requests"] for r in found["day"]] == [3]
    assert found["route"][0]["route"] == "/v1/chat/completions"


def test_budget_periods_are_utc_calendar_periods() -> None:
    at = 1_767_225_599.0  # 2025-12-31 23:59:59 UTC
    assert period_start("day", at) == "2025-12-31" and period_start("month", at) == "2025-12-01"
    assert period_end("day", at) == at + 1 and period_end("month", at) == at + 1
    assert period_end("total", at) is None
