"""Benchmark 4: many concurrent slow streams held by one getgpt server process.

The server (echo backend, ``--echo-delay`` between pieces) runs in its own process; this one
opens every stream over ``--spread`` seconds with raw asyncio sockets (bench/loadgen.py). Each
reply lasts at least 5 s. Reported: time to first chunk (from the start of connecting to the
first text), errors, and whether every stream's text arrived complete.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

from .apps import PIECE, AppProcess
from .common import machine, percentile, raise_nofile, table
from .loadgen import chat_body, open_streams, text_of

PATH = "/v1/chat/completions"
DELAY = 0.25
PIECES = 21  # 20 pauses of DELAY: each reply lasts 5 s
SPREAD = 2.0
TARGET_P99_MS_AT_1000 = 250.0


def _text(i: int) -> str:
    # A different message per stream, so a mixed-up reply cannot pass the check.
    return f"{i:08d}" + "s" * (PIECES * PIECE - 8)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: The columns of a :func:`hold` row.
HOLD_COLUMNS = [
    "streams",
    "TTFC p50 ms",
    "TTFC p99 ms",
    "TTFC max ms",
    "shortest s",
    "wall s",
    "server CPU/wall",
    "load generator CPU/wall",
    "complete",
    "errors",
]


def hold(server: AppProcess, count: int, spread: float) -> list[str]:
    texts = [_text(i) for i in range(count)]
    bodies = [chat_body(t) for t in texts]
    server_cpu, own_cpu = server.cpu_seconds(), _own_cpu()
    started = time.perf_counter()
    streams = asyncio.run(open_streams(server.port, PATH, bodies, spread, timeout=120.0))
    wall = time.perf_counter() - started
    # CPU seconds per wall second: near 1.0 means that process was saturated on one core.
    server_load = (server.cpu_seconds() - server_cpu) / wall
    own_load = (_own_cpu() - own_cpu) / wall
    errors: dict[str, int] = {}
    complete = 0
    for stream, text in zip(streams, texts, strict=True):
        problem = stream.error
        if problem is None:
            try:
                if text_of(stream) == text:
                    complete += 1
                    continue
                problem = "wrong text"
            except ValueError as exc:
                problem = str(exc)[:80]
        errors[problem] = errors.get(problem, 0) + 1
    ttfc = [s.ttfc * 1000 for s in streams if s.ttfc is not None]
    lengths = [s.ended - s.started for s in streams if s.ended is not None]
    return [
        f"{count:,}",
        f"{percentile(ttfc, 50):.1f}",
        f"{percentile(ttfc, 99):.1f}",
        f"{max(ttfc, default=float('nan')):.1f}",
        f"{min(lengths, default=float('nan')):.2f}",
        f"{wall:.1f}",
        f"{server_load:.2f}",
        f"{own_load:.2f}",
        f"{complete:,}",
        f"{sum(errors.values()):,}"
        + (f" ({'; '.join(f'{n}x {e}' for e, n in errors.items())})" if errors else ""),
    ]


def run_counts(counts: list[int], spread: float) -> str:
    limit = raise_nofile(max(counts) + 1024)
    rows = []
    for count in counts:
        # A fresh server for each level, so one level's leftovers cannot slow the next.
        with AppProcess(
            "getgpt", "--echo-delay", str(DELAY), "--max-streams", str(max(counts) * 2)
        ) as server:
            rows.append(hold(server, count, spread))
    return (
        f"each stream: {PIECES} pieces {DELAY} s apart (>= {(PIECES - 1) * DELAY:.0f} s), all opened over "
        f"{spread:.0f} s; open-files limit {limit}\n\n"
        + table(HOLD_COLUMNS, rows)
        + f"\n\nTargets: 10,000 held with nothing lost; TTFC p99 < {TARGET_P99_MS_AT_1000:.0f} ms at 1,000."
    )


def run(quick: bool = False) -> str:
    counts = [100, 300] if quick else [100, 1_000, 10_000]
    return "\n".join(["## 4. Concurrency", "", run_counts(counts, SPREAD), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("counts", type=int, nargs="*", default=[100, 1_000, 10_000])
    parser.add_argument("--spread", type=float, default=SPREAD)
    args = parser.parse_args()
    print(machine(), "\n")
    print(run_counts(args.counts, args.spread))


if __name__ == "__main__":
    main()
