"""Benchmark 11: keys and the usage ledger (issue 23), side by side in one run.

1. **The key check from the cache**: one request check awaited in a loop, per call -- a
   ``GETGPT_API_KEYS`` key, a store key with no limits, and one with rpm, tpm and a budget
   (buckets and spend in process). Target: <= 10 us.
2. **The ledger's writer** on SQLite and on PostgreSQL: records arriving at 10,000 a second for
   ``--seconds`` on the event loop (as requests would add them) while the writer runs beside them;
   rows written a second, the batches' sizes, the most records ever waiting, and what was left
   when the arrivals stopped. Then a burst of 100,000 records written as fast as it goes. Target:
   keeps up with 10,000 requests/s on both.
3. **The gateway under load** (bench/gateway_load.py's hey run): ``getgpt serve --backend openai
   --workers 2`` with ``GETGPT_API_KEYS``, beside the same with ``--db`` (a store key with limits,
   ledger on) on SQLite and on PostgreSQL. Target: the store's within 10 % of ``GETGPT_API_KEYS``.
4. **Where the ledger's SQLite writes run** (``--only placement``): an event loop answering small
   exchanges on loopback, a ledger record each, with no ledger, with the SQLite writes on the loop
   (the server's way) and on the database's thread; the CPU an exchange, all threads counted.

PostgreSQL is Debian's, started by tests/support/services.Postgres. Run ``python -m bench.keys``
(``--profile`` adds a profile of the key check).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import machine, raise_nofile, table, tree_cpu

TARGET_CHECK_US = 10.0
TARGET_ROWS = 10_000
RATIO_FLOOR = 0.90


def _postgres(running: Any = None) -> Any:
    """``running`` (left running afterwards), or a server of its own for the run."""
    if running is not None:
        return contextlib.nullcontext(running)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.services import Postgres

    return Postgres()


def _make_key(target: str, **settings: Any) -> str:
    from getgpt.server.store import manage
    from getgpt.server.store.opening import open_database

    record, key = manage.create(name="bench", **settings)

    async def add() -> None:
        db = open_database(target)
        await db.connect()
        await db.migrate()
        await db.add_key(record)
        await db.close()

    asyncio.run(add())
    return key


# -- 1. the key check ---------------------------------------------------------------------------


def key_checks(calls: int) -> str:
    from getgpt.server import ServerConfig
    from getgpt.server.admission.keys import Keyring
    from getgpt.server.admission.security import ApiKeys

    with tempfile.TemporaryDirectory() as where:
        target = str(Path(where) / "bench.db")
        plain = _make_key(target)
        limited = _make_key(target, rpm=10**9, tpm=10**9, budget_tokens=10**15, budget_period="month")
        env_key = "an-env-key-" + "x" * 32
        env_keys = ApiKeys([env_key, "another-env-key"])
        keyring = Keyring(ServerConfig(db=target), env_keys)

        async def run() -> dict[str, float]:
            await keyring.start()
            try:
                contenders: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
                    "GETGPT_API_KEYS (2 keys)": (env_keys, env_key),
                    "store key, no limits (cache)": (keyring, plain),
                    "store key, rpm + tpm + budget (cache)": (keyring, limited),
                }
                found: dict[str, list[float]] = {name: [] for name in contenders}
                for round_ in range(5):
                    for name, (check, key) in contenders.items():
                        scope = {"type": "http", "headers": [(b"authorization", f"Bearer {key}".encode())]}
                        for _ in range(200):  # warm
                            await check(dict(scope))
                        started = time.perf_counter()
                        for _ in range(calls):
                            await check(dict(scope))
                        found[name].append((time.perf_counter() - started) / calls * 1e6)
                    del round_
                return {name: statistics.median(times) for name, times in found.items()}
            finally:
                await keyring.aclose()

        medians = asyncio.run(run())
    rows = [[name, f"{us:.2f}", "met" if us <= TARGET_CHECK_US else "MISSED"] for name, us in medians.items()]
    return (
        f"one request check awaited {calls:,} times a round, 5 rounds, median us per call "
        "(a copy of the request's scope made each call, as a request brings its own):\n\n"
        + table(["check", "us per call", f"<= {TARGET_CHECK_US:g} us"], rows)
    )


# -- 2. the ledger --------------------------------------------------------------------------------


def _row(i: int, now: float) -> Any:
    from getgpt.server.store.schema import UsageRecord

    return UsageRecord(now, f"k{i % 50:011d}", f"req{i:016x}", "/v1/chat/completions", "gpt-4o", "gpt-4o",
                       "127.0.0.1:8080", 200, 120, 80, 0, 0, False, 12.5, 340.0)  # fmt: skip


async def _paced(target: str, seconds: float, rate: int) -> dict[str, float]:
    from getgpt.server.store.ledger import Ledger
    from getgpt.server.store.opening import open_database

    db = open_database(target)
    await db.connect()
    await db.migrate()
    batches: list[int] = []
    ledger = Ledger(db, written=lambda rows: batches.append(len(rows)))
    await ledger.start()
    most_waiting = 0
    added = 0
    started = time.perf_counter()
    tick = 0.01  # arrivals in 10 ms steps, as a loaded server's requests end
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) - added
        now = time.time()
        for _ in range(due):
            ledger.add(_row(added, now))
            added += 1
        most_waiting = max(most_waiting, ledger.pending)
        await asyncio.sleep(tick)
    left = ledger.pending
    written_during = ledger.rows_written
    await ledger.aclose()
    count = (await db.fetch("SELECT COUNT(*) FROM usage_records"))[0][0]
    await db.close()
    assert count == added, f"{count} rows written of {added}"
    return {
        "added": added,
        "rate": added / seconds,
        "written_during": written_during / seconds,
        "batches": len(batches),
        "median_batch": statistics.median(batches) if batches else 0,
        "most_waiting": most_waiting,
        "left": left,
        "dropped": ledger.dropped,
    }


async def _burst(target: str, rows: int) -> dict[str, float]:
    from getgpt.server.store.ledger import Ledger
    from getgpt.server.store.opening import open_database

    db = open_database(target)
    await db.connect()
    await db.migrate()
    batches: list[int] = []
    ledger = Ledger(db, max_buffer=rows * 2, written=lambda done: batches.append(len(done)))
    now = time.time()
    for i in range(rows):
        ledger.add(_row(i, now))
    started = time.perf_counter()
    await ledger.flush()
    elapsed = time.perf_counter() - started
    await db.close()
    return {"rows_per_s": rows / elapsed, "batches": len(batches), "batch": statistics.median(batches)}


def ledgers(seconds: float, burst: int, postgres: Any = None) -> str:
    """``postgres``: a running tests.support.services.Postgres to take the databases from (a test
    suite's); by default one is started for the run and stopped after."""
    rows = []
    with tempfile.TemporaryDirectory() as where, _postgres(postgres) as server:
        targets = {
            "SQLite (WAL, synchronous=NORMAL)": (str(Path(where) / "a.db"), str(Path(where) / "b.db")),
            "PostgreSQL (asyncpg, COPY)": (server.create_database(), server.create_database()),
        }
        for name, (paced_target, burst_target) in targets.items():
            paced = asyncio.run(_paced(paced_target, seconds, TARGET_ROWS))
            fast = asyncio.run(_burst(burst_target, burst))
            kept_up = paced["left"] <= paced["rate"] * 1.0 and paced["dropped"] == 0
            rows.append(
                [
                    name,
                    f"{paced['rate']:,.0f}",
                    f"{paced['written_during']:,.0f}",
                    f"{paced['median_batch']:,.0f}",
                    f"{paced['most_waiting']:,.0f}",
                    f"{paced['left']:,.0f}",
                    f"{fast['rows_per_s']:,.0f}",
                    f"{fast['batch']:,.0f}",
                    "met" if kept_up else "MISSED",
                ]
            )
    return (
        f"records added at {TARGET_ROWS:,} a second for {seconds:g} s on the event loop while the writer "
        f"runs (flush every 0.5 s or at 5,000 waiting), then a burst of {burst:,} records written at once; "
        "every record counted in the table afterwards:\n\n"
        + table(
            [
                "database",
                "arrived /s",
                "written /s (during)",
                "rows a batch (median)",
                "most waiting",
                "waiting at the end",
                "burst rows/s",
                "burst batch",
                "keeps up with 10,000/s",
            ],
            rows,
        )
    )


# -- 3. the gateway under load ----------------------------------------------------------------------


def gateway(seconds: float, rounds: int) -> str:
    from .emitter import EmitterProcess
    from .gateway_load import CHUNKS, _check, _hey
    from .workers import ServeProcess

    raise_nofile(65536)
    env_key = "bench-env-key-" + "y" * 30
    limits = {"rpm": 10**9, "tpm": 2 * 10**9, "budget_tokens": 10**15, "budget_period": "month"}
    with (
        tempfile.TemporaryDirectory() as where,
        _postgres() as postgres,
        EmitterProcess(prebuild=(CHUNKS,)) as emitter,
    ):
        upstream = emitter.base(CHUNKS) + "v1"
        common = ("--backend", "openai", "--upstream", upstream, "--max-streams", "4096", "--workers", "2")
        sqlite_target = str(Path(where) / "bench.db")
        pg_target = postgres.create_database()
        sqlite_key = _make_key(sqlite_target, **limits)
        pg_key = _make_key(pg_target, **limits)
        contenders: dict[str, tuple[ServeProcess, str]] = {
            "GETGPT_API_KEYS": (ServeProcess(*common, env={"GETGPT_API_KEYS": env_key}), env_key),
            "--db SQLite: store key with limits, ledger": (
                ServeProcess(*common, "--db", sqlite_target),
                sqlite_key,
            ),
            "--db PostgreSQL: store key with limits, ledger": (
                ServeProcess(*common, "--db", pg_target),
                pg_key,
            ),
        }
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
        try:
            for server, key in contenders.values():
                _check(
                    f"http://127.0.0.1:{server.port}/v1/chat/completions", {"Authorization": f"Bearer {key}"}
                )
            names = list(contenders)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    server, key = contenders[name]
                    url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
                    cpu, database = server.cpu_seconds(), tree_cpu(postgres.process.pid)
                    result = _hey(url, {"Authorization": f"Bearer {key}"}, seconds)
                    served = sum(result["statuses"].values()) or 1
                    result["cpu"] = (server.cpu_seconds() - cpu) * 1e6 / served
                    # PostgreSQL's own processes, on the same two cores as the gateway and hey.
                    result["db_cpu"] = (tree_cpu(postgres.process.pid) - database) * 1e6 / served
                    results[name].append(result)
        finally:
            for server, _ in contenders.values():
                server.close()
        ledger_rows = {
            "SQLite": _count(sqlite_target),
            "PostgreSQL": _count(pg_target),
        }
    base = statistics.median(float(x["rps"]) for x in results["GETGPT_API_KEYS"])
    rows = []
    for name, runs in results.items():
        rps = statistics.median(float(x["rps"]) for x in runs)
        statuses: dict[int, int] = {}
        for run in runs:
            for code, count in run["statuses"].items():
                statuses[code] = statuses.get(code, 0) + count
        ratio = rps / base
        verdict = "-" if name == "GETGPT_API_KEYS" else ("met" if ratio >= RATIO_FLOOR else "MISSED")
        rows.append(
            [
                name,
                f"{rps:,.0f}",
                " / ".join(f"{float(x['rps']):,.0f}" for x in runs),
                f"{statistics.median(float(x['cpu']) for x in runs):.0f}",
                f"{statistics.median(float(x['db_cpu']) for x in runs):.0f}" if "PostgreSQL" in name else "-",
                f"{ratio:.2f}",
                verdict,
                ", ".join(f"{code}: {count:,}" for code, count in sorted(statuses.items())),
            ]
        )
    return (
        f"hey, streamed /v1/chat/completions, 50 concurrent, {seconds:g} s a round, {rounds} rounds rotating "
        "the order, getgpt serve --backend openai --workers 2 on bench/emitter.py's 10-chunk replies:\n\n"
        + table(
            [
                "keys",
                "requests/s (median)",
                "each round",
                "CPU us/req",
                "PostgreSQL's CPU us/req",
                "vs GETGPT_API_KEYS",
                ">= 0.90",
                "statuses",
            ],
            rows,
        )
        + f"\n\nLedger rows written afterwards: SQLite {ledger_rows['SQLite']:,}, PostgreSQL "
        f"{ledger_rows['PostgreSQL']:,} (every 200 above, and the checks' requests)."
    )


# -- 4. where the ledger's SQLite writes run -------------------------------------------------


async def _exchanges(target: str | None, where: str, count: int) -> tuple[float, float]:
    """``count`` small request/response exchanges over 20 loopback connections on this event loop,
    a ledger record added for each (none when ``target`` is None): CPU us an exchange (every
    thread of the process) and exchanges a second."""
    import uuid

    from getgpt.server.store.ledger import Ledger
    from getgpt.server.store.opening import open_database
    from getgpt.server.store.schema import UsageRecord

    ledger = db = None
    if target is not None:
        db = open_database(target)
        await db.connect()
        await db.migrate()
        if where == "thread":
            db._here = None  # type: ignore[attr-defined]  # every write takes the thread's way
        ledger = Ledger(db)
        await ledger.start()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for _ in range(n):
            writer.write(b"x" * 50)
            await reader.read(100)
            row = UsageRecord(
                time.time(), "0123456789ab", uuid.uuid4().hex, "/v1/chat/completions", "m", "m",
                "upstream", 200, 11, 7, 0, 3, False, 1.5, 3.2,
            )  # fmt: skip
            if ledger is not None:
                ledger.add(row)

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(r, w, count // 20) for r, w in connections))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - started
    if ledger is not None and db is not None:
        await ledger.aclose()
        await db.close()
    for _, writer in connections:
        writer.close()
    server.close()
    return cpu * 1e6 / count, count / wall


def placement(count: int, rounds: int) -> str:
    """The ledger's SQLite writes on the event loop (as the server does) against on the thread,
    beside no ledger: the loop's CPU per exchange, the contenders alternating each round."""
    import uvloop

    ways = {
        "no ledger": None,
        "ledger, SQLite writes on the event loop (the server's way)": "loop",
        "ledger, SQLite writes on the thread": "thread",
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(rounds):
            for n, (name, where) in enumerate(ways.items()):
                target = None if where is None else str(Path(folder) / f"{r}-{n}.db")
                results[name].append(uvloop.run(_exchanges(target, where or "", count)))
    base = statistics.median(cpu for cpu, _ in results["no ledger"])
    rows = []
    for name, runs in results.items():
        cpu = statistics.median(c for c, _ in runs)
        rows.append(
            [
                name,
                f"{cpu:.1f}",
                " / ".join(f"{c:.1f}" for c, _ in runs),
                f"{cpu - base:+.1f}",
                f"{statistics.median(rate for _, rate in runs):,.0f}",
            ]
        )
    return (
        f"{count:,} small exchanges over 20 loopback connections on one uvloop event loop, a "
        f"ledger record each, {rounds} rounds alternating:\n\n"
        + table(
            ["ledger", "CPU us/exchange (median)", "each round", "the ledger's share", "exchanges/s"], rows
        )
    )


def _count(target: str) -> int:
    from getgpt.server.store.opening import open_database

    async def count() -> int:
        db = open_database(target)
        await db.connect()
        found = int((await db.fetch("SELECT COUNT(*) FROM usage_records"))[0][0])
        await db.close()
        return found

    return asyncio.run(count())


def profile_gateway(seconds: float) -> str:
    """One gateway process under hey, GETGPT_API_KEYS then a store key with limits on SQLite, each
    under pyinstrument: the top of each profile, for where the store's time goes."""
    from .apps import AppProcess
    from .emitter import EmitterProcess
    from .gateway_load import CHUNKS, _hey

    out = []
    with tempfile.TemporaryDirectory() as where, EmitterProcess(prebuild=(CHUNKS,)) as emitter:
        upstream = emitter.base(CHUNKS) + "v1"
        target = str(Path(where) / "p.db")
        key = _make_key(target, rpm=10**9, tpm=2 * 10**9, budget_tokens=10**15, budget_period="month")
        env_key = "bench-env-key-" + "z" * 30
        for name, options, bearer in (
            ("GETGPT_API_KEYS", ("--api-key", env_key), env_key),
            ("--db SQLite, a store key with limits", ("--db", target), key),
        ):
            path = str(Path(where) / "profile.txt")
            common = ("--backend", "openai", "--upstream", upstream)
            with AppProcess("getgpt", *common, *options, "--profile", path) as gateway:
                rate = _hey(
                    gateway.url + "v1/chat/completions", {"Authorization": f"Bearer {bearer}"}, seconds
                )
            lines = Path(path).read_text().splitlines()[:70]
            out.append(f"### {name}: {float(rate['rps']):,.0f} requests/s while profiled\n")
            out += ["    " + line for line in lines]
            out.append("")
    return "\n".join(out)


def profile(calls: int) -> str:
    """Where the limited key's check spends its time (pyinstrument)."""
    from pyinstrument import Profiler

    from getgpt.server import ServerConfig
    from getgpt.server.admission.keys import Keyring

    with tempfile.TemporaryDirectory() as where:
        target = str(Path(where) / "p.db")
        key = _make_key(target, rpm=10**9, tpm=10**9, budget_tokens=10**15, budget_period="month")
        keyring = Keyring(ServerConfig(db=target))
        scope = {"type": "http", "headers": [(b"authorization", f"Bearer {key}".encode())]}

        async def run() -> str:
            await keyring.start()
            profiler = Profiler(interval=0.0001)
            profiler.start()
            for _ in range(calls):
                await keyring(dict(scope))
            profiler.stop()
            await keyring.aclose()
            return str(profiler.output_text(unicode=False, color=False))

        return asyncio.run(run())


def run_all(
    calls: int, seconds: float, burst: int, load_seconds: float, rounds: int, *, quick: bool = False
) -> str:
    return "\n".join(
        [
            "## 11. Keys and the usage ledger (issue 23)",
            "",
            "### The key check from the cache",
            "",
            key_checks(calls),
            "",
            "### The ledger's writer",
            "",
            ledgers(seconds, burst),
            "",
            "### The gateway with keys from the store and the ledger on",
            "",
            gateway(load_seconds, rounds),
            "",
            "### Where the ledger's SQLite writes run",
            "",
            placement(4_000 if quick else 40_000, rounds),
            "",
        ]
    )


def run(quick: bool = False) -> str:
    if quick:
        return run_all(2_000, 1.0, 5_000, 1.0, 1, quick=True)
    return run_all(100_000, 5.0, 100_000, 10.0, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="of paced ledger arrivals")
    parser.add_argument("--burst", type=int, default=100_000)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("check", "ledger", "gateway", "placement"))
    parser.add_argument("--profile", action="store_true", help="the key check under pyinstrument")
    parser.add_argument("--profile-gateway", action="store_true", help="one gateway process, both ways")
    args = parser.parse_args()
    print(machine(), "", sep="\n")
    if args.profile_gateway:
        print(profile_gateway(args.load_seconds))
    elif args.profile:
        print(profile(args.calls))
    elif args.only == "check":
        print(key_checks(args.calls))
    elif args.only == "ledger":
        print(ledgers(args.seconds, args.burst))
    elif args.only == "gateway":
        print(gateway(args.load_seconds, args.rounds))
    elif args.only == "placement":
        print(placement(40_000, args.rounds))
    else:
        print(run_all(args.calls, args.seconds, args.burst, args.load_seconds, args.rounds))


if __name__ == "__main__":
    main()
