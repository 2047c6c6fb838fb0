"""What every benchmark shares: the machine's description, alternating rounds, medians, tables."""

from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from functools import cache
from importlib import metadata
from typing import Any

__all__ = [
    "compare",
    "machine",
    "percentile",
    "raise_nofile",
    "rss",
    "stop",
    "table",
    "tls",
    "tree_cpu",
    "tree_pids",
    "tree_rss",
]

_LIBRARIES = (
    "getgpt", "httpx", "httpcore", "h11", "msgspec", "orjson", "requests", "httpx-sse", "openai",
    "starlette", "sse-starlette", "uvicorn", "httptools", "uvloop",
)  # fmt: skip


@cache
def tls() -> Any:
    """httpx's default TLS context, built once, for the benchmarks' own checks and polls (the
    contenders are left as their users write them): httpx builds one for every client and every
    one-off ``httpx.get``, ``http://`` included, reading the CA bundle -- ~27 ms of CPU each."""
    import httpx

    return httpx.create_ssl_context()


def machine() -> str:
    """One paragraph saying where the numbers come from."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for name in _LIBRARIES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    # Other work on the machine moves every number: say how busy it was.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    source = _source()
    return (
        f"nproc {os.cpu_count()}, CPU {cpu}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"load average {load}\n{source}\n" + ", ".join(versions)
    )


def _source() -> str:
    """The commit measured, and whether the library's source differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=True
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "source: not a git checkout"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"source: commit {head}" + (
        f" with uncommitted changes in {', '.join(changed)}" if changed else ""
    )


def compare(
    contenders: dict[str, Callable[[], object]], rounds: int, check: Callable[[str, object], None]
) -> dict[str, float]:
    """Median wall time of each contender over ``rounds``, running them in turn each round.

    The order rotates every round so that no contender always runs first (or right after the
    most expensive one) on a noisy machine. ``check`` sees every result: a contender that
    returns the wrong answer must not get a time.
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            start = time.perf_counter()
            result = contenders[name]()
            times[name].append(time.perf_counter() - start)
            check(name, result)
    return {name: statistics.median(values) for name, values in times.items()}


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0..100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, so the printout pastes into RESULTS.md as it is."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def rss() -> int:
    """Resident set size of this process now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def raise_nofile(want: int) -> int:
    """Raise this process's open-files limit towards ``want``; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def stop(process: subprocess.Popen[Any], signum: int, grace: float) -> None:
    """Send ``signum`` to ``process``, give it ``grace`` seconds to end, then kill it."""
    process.send_signal(signum)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every process below it (a supervisor's workers, say), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(child) for child in children.read().split()]
            except OSError:
                pass
    return found


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and the processes below it that still run."""
    total = 0.0
    for each in tree_pids(pid):
        try:
            with open(f"/proc/{each}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def tree_rss(pid: int) -> int:
    """Resident set size of ``pid`` and the processes below it, in bytes."""
    total = 0
    for each in tree_pids(pid):
        try:
            with open(f"/proc/{each}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total


def every_worker_up(port: int, workers: int, patience: float = 30.0) -> None:
    """Wait until ``workers`` distinct worker processes of the server on ``port`` have answered
    ``/healthz`` (a new connection each, which the kernel spreads over the workers' queues): a
    measurement then starts with all of them, not only the first to listen. (It was a fixed
    2 s sleep; the workers are up in well under one here.)"""
    import httpx

    seen: set[int] = set()
    deadline = time.monotonic() + patience
    # One client (each new one builds a TLS context: 29 ms of CPU, 2 ms a request with one), and
    # "Connection: close" so that each request still comes on a new connection.
    with httpx.Client(headers={"Connection": "close"}, timeout=patience) as client:
        while len(seen) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {workers} workers answered within {patience:g} s")
            seen.add(int(client.get(f"http://127.0.0.1:{port}/healthz").json()["pid"]))
