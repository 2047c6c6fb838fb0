"""The store's tables, as numbered migrations, and the usage record the ledger writes.

Each migration is a list of statements written once in a dialect both databases read; the few
words that differ (a binary column, an auto-increment key, a double) are spelled as ``{blob}``,
``{serial}``, ``{real}`` and filled in per database. Applied migrations are listed in
``getgpt_schema``; a database is brought up to date by applying the missing ones in order, each
in its own transaction, at server start and by ``getgpt db upgrade``. A migration once released
is never edited: a change to the schema is a new migration at the end of the list.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["COLUMNS", "MIGRATIONS", "UsageRecord", "statements"]


class UsageRecord(NamedTuple):
    """One request, as the ledger keeps it. Times are Unix seconds; durations milliseconds."""

    at: float
    key_id: str | None  # the key's id (never its secret); env-N for a GETGPT_API_KEYS key
    request_id: str
    route: str
    model: str  # asked for
    served: str  # what the upstream said it served, else what was asked for
    upstream: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    estimated: bool  # the counts are the server's estimate: no usage was reported
    first_byte_ms: float | None
    duration_ms: float

    @property
    def tokens(self) -> int:
        """What a budget or a token limit is charged: prompt and completion tokens."""
        return self.prompt_tokens + self.completion_tokens


COLUMNS = UsageRecord._fields

_V1 = [
    """CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash {blob} NOT NULL,
        models TEXT,
        rpm INTEGER,
        tpm INTEGER,
        budget_tokens BIGINT,
        budget_period TEXT,
        created_at {real} NOT NULL,
        expires_at {real},
        revoked_at {real},
        rotated_from TEXT,
        changed_at {real} NOT NULL
    )""",
    "CREATE INDEX api_keys_changed ON api_keys (changed_at)",
    """CREATE TABLE usage_records (
        id {serial},
        at {real} NOT NULL,
        key_id TEXT,
        request_id TEXT NOT NULL,
        route TEXT NOT NULL,
        model TEXT NOT NULL,
        served TEXT NOT NULL,
        upstream TEXT NOT NULL,
        status INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        estimated BOOLEAN NOT NULL,
        first_byte_ms {real},
        duration_ms {real} NOT NULL
    )""",
    # One index: a key's own usage (GET /v1/usage, the page after each reply) is asked often; all
    # keys' usage over a period (getgpt usage, /admin/usage) rarely, and may scan. Each index
    # roughly halved the rows SQLite writes a second (bench/keys.py).
    "CREATE INDEX usage_records_key_at ON usage_records (key_id, at)",
    # Tokens charged per key and UTC day, kept by the ledger beside its rows: a budget's spend is
    # then at most 31 rows to add (a month), not a scan of the ledger.
    """CREATE TABLE key_spend (
        key_id TEXT NOT NULL,
        day TEXT NOT NULL,
        tokens BIGINT NOT NULL,
        PRIMARY KEY (key_id, day)
    )""",
]

#: (version, what it does, statements), oldest first.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "keys, the usage ledger and the spend per key and day", _V1),
]

_WORDS = {
    # The rowid as the ledger's id: AUTOINCREMENT's own table cost a third of the rows a second.
    "sqlite": {"blob": "BLOB", "serial": "INTEGER PRIMARY KEY", "real": "REAL"},
    "postgresql": {"blob": "BYTEA", "serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"},
}


def statements(dialect: str, migration: list[str]) -> list[str]:
    """A migration's statements in ``dialect`` (``sqlite`` or ``postgresql``)."""
    return [statement.format(**_WORDS[dialect]) for statement in migration]
