"""getgpt keys, getgpt usage and getgpt db, as real processes on a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from getgpt.server.store.schema import UsageRecord

from ..support.keystore import on_db, records
from ..support.processes import SRC
from ..support.serve_process import run_getgpt


def _json(*args: str) -> object:
    done = run_getgpt(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_keys_are_made_listed_shown_rotated_and_revoked_from_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    settings = ["--models", "a,b", "--rpm", "5", "--tpm", "900", "--budget-tokens", "1000"]
    settings += ["--budget-period", "day", "--expires", "30d"]
    made = _json("keys", "create", "--name", "alice", *settings, "--db", db)
    assert isinstance(made, dict)
    key, key_id = made["key"], made["id"]
    assert key.startswith(f"gg-{key_id}-") and made["models"] == ["a", "b"] and made["status"] == "active"
    plain = run_getgpt("keys", "create", "--name", "bob", "--db", db)
    assert plain.returncode == 0 and plain.stdout.startswith("gg-") and "shown this once" in plain.stderr
    listing = run_getgpt("keys", "list", "--db", db).stdout
    assert "alice" in listing and "bob" in listing and "1000/day" in listing and key not in listing
    shown = _json("keys", "show", key_id, "--db", db)
    assert isinstance(shown, dict) and shown["spent"] == 0 and "key" not in shown
    rotated = _json("keys", "rotate", key_id, "--grace", "1h", "--db", db)
    assert isinstance(rotated, dict) and rotated["rotated_from"] == key_id and rotated["rpm"] == 5
    revoked = _json("keys", "revoke", key_id, "--db", db)
    assert isinstance(revoked, dict) and revoked["status"] == "revoked"
    missing = run_getgpt("keys", "revoke", "000000000000", "--db", db)
    assert missing.returncode == 1 and "no key with id" in missing.stderr
    bad = run_getgpt("keys", "create", "--name", "x", "--budget-period", "day", "--db", db)
    assert bad.returncode == 1 and "budget_period needs budget_tokens" in bad.stderr
    assert run_getgpt("keys", "create", "--name", "x", "--rpm", "0", "--db", db).returncode == 2


def test_usage_adds_up_the_ledger_as_a_table_csv_and_json(tmp_path: Path) -> None:
    db = str(tmp_path / "usage.db")
    now = time.time()
    chat = "/v1/chat/completions"
    rows = [
        UsageRecord(now, "k1", "r1", chat, "m1", "m1", "up", 200, 10, 5, 0, 0, False, 1.0, 2.0),
        UsageRecord(now, "k1", "r2", chat, "m2", "m2", "up", 200, 1, 2, 0, 0, True, 1.0, 2.0),
        UsageRecord(now - 30 * 86400, "k2", "r3", "/v1/embeddings", "m1", "m1", "up", 200, 7, 0, 0, 0, False,
                    None, 2.0),
    ]  # fmt: skip
    on_db(db, lambda database: database.write_usage(rows))
    assert len(records(db)) == 3
    by_model = json.loads(run_getgpt("usage", "--by", "model", "--format", "json", "--db", db).stdout)
    assert [(r["model"], r["total_tokens"], r["estimated"]) for r in by_model] == [
        ("m1", 15, 0),
        ("m2", 3, 1),
    ]
    as_csv = run_getgpt("usage", "--since", "60d", "--format", "csv", "--db", db).stdout
    older = list(csv.DictReader(io.StringIO(as_csv)))
    assert {row["key"]: row["total_tokens"] for row in older} == {"k1": "18", "k2": "7"}
    table = run_getgpt("usage", "--by", "key", "--db", db).stdout
    assert table.splitlines()[0].split()[:3] == ["key", "requests", "prompt_tokens"] and "k1" in table


def test_db_upgrade_applies_the_schema_once(tmp_path: Path) -> None:
    db = str(tmp_path / "fresh.db")
    first, again = run_getgpt("db", "upgrade", "--db", db), run_getgpt("db", "upgrade", "--db", db)
    assert first.stdout == f"{db}: schema version 1 (applied 1)\n"
    assert again.stdout == f"{db}: schema version 1 (nothing to apply)\n"


def test_getgpt_db_names_the_default_store_from_the_environment(tmp_path: Path) -> None:
    db = str(tmp_path / "from-env.db")
    done = run_getgpt("db", "upgrade", env={"GETGPT_DB": db})
    assert done.returncode == 0 and done.stdout.startswith(db)


def test_getgpt_help_loads_no_database_code() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "getgpt", "--help"],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "keys" in done.stdout and "usage" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "getgpt.cli.admin" in imported
    assert not {"sqlite3", "asyncpg", "getgpt.server.store", "getgpt.server.admission"} & imported
