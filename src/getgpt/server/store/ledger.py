"""The usage ledger's writer: records kept in memory, written in batches off the request path.

A request adds its :class:`~getgpt.server.store.schema.UsageRecord` with :meth:`Ledger.add`, a
list append that never waits. A task of its own writes what has gathered every
:data:`FLUSH_EVERY` seconds, or at once when :data:`BATCH` rows are waiting, in one transaction
(rows and the spend per key and day together). It writes the rows there as it woke; those that
come while it writes wait for its next turn. (Written as they came, a loaded server made one
transaction of ~45 rows every 12 ms, each a few round trips: PostgreSQL's own CPU per request
was 4x its rows' cost. bench/keys.py.) So a crash of the process loses at most the
records of the last :data:`FLUSH_EVERY` seconds and of the write under way: under one second.
On drain (SIGTERM) :meth:`Ledger.aclose` writes everything left, so a stop loses nothing.

While the database cannot be reached the rows stay in memory and the writer tries again at its
next turn; past :data:`MAX_BUFFER` rows the oldest are dropped, counted in :attr:`Ledger.dropped`
and in a warning, so an outage never grows the process without bound nor blocks a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .database import Database, DatabaseError
from .schema import UsageRecord

__all__ = ["BATCH", "FLUSH_EVERY", "MAX_BUFFER", "Ledger", "usage_now"]

log = logging.getLogger("getgpt.server")

FLUSH_EVERY = 0.5
BATCH = 5000
MAX_BUFFER = 200_000


class Ledger:
    """See the module docstring. ``written`` is called with each batch once it is committed."""

    def __init__(
        self,
        db: Database,
        *,
        flush_every: float = FLUSH_EVERY,
        batch: int = BATCH,
        max_buffer: int = MAX_BUFFER,
        written: Callable[[Sequence[UsageRecord]], None] | None = None,
    ) -> None:
        self.db = db
        self.flush_every = flush_every
        self.batch = batch
        self.max_buffer = max_buffer
        self._written = written
        self._rows: list[UsageRecord] = []
        # How many of the first rows a write under way holds (they stay until it commits).
        self._writing = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Whether the last write succeeded.
        self.available = True
        self.rows_written = 0
        self.batches_written = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._rows)

    def waiting(self) -> list[UsageRecord]:
        """The records not committed yet (a copy), those being written included: what a usage
        answer adds to the database's. A row leaves it only as its write commits, and
        :attr:`rows_written` then changes (see :func:`usage_now`)."""
        return list(self._rows)

    def add(self, row: UsageRecord) -> None:
        """Keep ``row`` for the next write (never waits)."""
        rows = self._rows
        rows.append(row)
        if len(rows) - self._writing >= self.batch and self._wake is not None:
            self._wake.set()
        if len(rows) > self.max_buffer:
            # The oldest past the write under way, which keeps its rows until it has committed.
            over = len(rows) - self.max_buffer
            del rows[self._writing : self._writing + over]
            self.dropped += over
            log.warning("usage ledger: %d records dropped (the database is behind or unreachable)", over)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self.flush_every)
            wake.clear()
            await self.flush(len(self._rows))

    async def flush(self, at_most: int | None = None) -> bool:
        """Write what is waiting, those that come meanwhile included, or only the first
        ``at_most`` rows; False if the database refused (the rows are kept)."""
        left = sys.maxsize if at_most is None else at_most
        while self._rows and left > 0:
            # The rows stay in _rows (and in waiting()) until their write has committed: in
            # neither place meanwhile, a usage answer read then would miss them.
            rows = self._rows[: min(self.db.write_at_most, left)]
            self._writing = len(rows)
            try:
                await self.db.write_usage(rows)
            except DatabaseError as exc:
                self._writing = 0
                if self.available:
                    self.available = False
                    log.warning("usage ledger: cannot write (%s); keeping records in memory", exc)
                return False
            del self._rows[: self._writing]
            self._writing = 0
            left -= len(rows)
            if not self.available:
                self.available = True
                log.warning("usage ledger: writing again")
            self.rows_written += len(rows)
            self.batches_written += 1
            if self._written is not None:
                self._written(rows)
            if self._rows and left > 0:
                await asyncio.sleep(0)  # a write on the loop (SQLite's): the requests' turn between two
        return True

    async def aclose(self, patience: float = 10.0) -> None:
        """Stop the writer and write everything left, trying for up to ``patience`` seconds."""
        # Not cancelled: a write under way (on SQLite's thread, say) would finish anyway, and
        # its rows, put back as unwritten, would then be written twice.
        self._stopping = True
        if self._task is not None and self._wake is not None:
            self._wake.set()
            await self._task
            self._task = None
        # A database already away gets two seconds more, not the whole patience: a stop must not
        # hang on an outage that has lasted all along.
        deadline = time.monotonic() + (patience if self.available else min(patience, 2.0))
        while not await self.flush():
            if time.monotonic() >= deadline:
                log.error("usage ledger: %d records could not be written before the stop", len(self._rows))
                return
            await asyncio.sleep(0.2)


async def usage_now(
    ledger: Ledger, read: Callable[[], Awaitable[list[dict[str, Any]]]]
) -> tuple[list[dict[str, Any]], list[UsageRecord]]:
    """The database's usage (``read``) and the ledger's rows not in it yet, as of one moment. A
    write that commits while the database is read moves its rows from the ledger to the database
    in between: counted twice or not at all. So the database is read again (up to three times)
    while :attr:`Ledger.rows_written` moved during the read."""
    for _ in range(3):
        written = ledger.rows_written
        rows = await read()
        if ledger.rows_written == written:
            break
    return rows, ledger.waiting()
