"""Benchmark 5: what the gateway adds in front of an OpenAI-compatible upstream.

The upstream is the bare emitter (bench/emitter.py); the gateway is the getgpt server with the
``openai`` backend pointed at it. A raw-socket reader (bench/loadgen.py) asks each directly and
through the gateway, alternating request by request: the difference is the gateway's cost.
Latency is measured on short replies, throughput on a long one; every text is checked.

Load: streamed requests per second with 50 clients at once, each a 10-chunk reply, sent by
``hey`` (Debian's ``hey`` package; bench/loadgen.py's keep-alive workers when it is missing) at
the upstream directly and through the gateway, in turn, round after round. ``--baseline-src
DIR`` runs a second gateway from another source tree (the code before a change) beside it, so
before and after are measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

from .apps import AppProcess
from .common import machine, percentile, table
from .emitter import EmitterProcess
from .loadgen import Stream, chat_body, keepalive_load, one_stream, request_bytes, text_of
from .stream import expected_text

PATH = "v1/chat/completions"
TARGET_MS = 0.3
LOAD_CHUNKS = 10
LOAD_CLIENTS = 50


async def _sequence(targets: list[tuple[int, str]], repeats: int) -> list[list[Stream]]:
    body = chat_body("Hi")
    out: list[list[Stream]] = [[] for _ in targets]
    for r in range(repeats):
        order = list(range(len(targets)))
        if r % 2:
            order.reverse()
        for i in order:
            port, path = targets[i]
            stream = Stream()
            await one_stream(port, request_bytes(port, path, body), stream, 30.0)
            out[i].append(stream)
    return out


def _checked(streams: list[Stream], expected: str) -> None:
    for stream in streams:
        if stream.error:
            raise AssertionError(f"a request failed: {stream.error}")
        if text_of(stream) != expected:
            raise AssertionError("a reply has the wrong text")


def latency(
    emitter: EmitterProcess,
    gateway: AppProcess,
    chunks: int,
    repeats: int,
    baseline: AppProcess | None = None,
) -> str:
    """Added latency, the gateway's and, with ``baseline``, another tree's gateway in the same sequence."""
    direct_path = "/" + emitter.base(chunks).split("/", 3)[3] + PATH
    gateways = {"through gateway": gateway, **({"through baseline gateway": baseline} if baseline else {})}
    targets = [(emitter.port, direct_path)] + [(gw.port, "/" + PATH) for gw in gateways.values()]
    asyncio.run(_sequence(targets, 20))  # warm up: the gateway's upstream pool, caches
    direct, *throughs = asyncio.run(_sequence(targets, repeats))
    expected = expected_text(chunks)
    for streams in (direct, *throughs):
        _checked(streams, expected)
    rows = []
    for what, pick in (("time to first text", "first"), ("whole reply", "ended")):
        d = [(getattr(s, pick) - s.started) * 1000 for s in direct]
        for p in (50, 99):
            row = [f"{what} p{p}", f"{percentile(d, p):.2f}"]
            for through in throughs:
                t = [(getattr(s, pick) - s.started) * 1000 for s in through]
                row += [f"{percentile(t, p):.2f}", f"{percentile(t, p) - percentile(d, p):+.2f}"]
            rows.append(row)
    paired = ["paired difference, median", ""]
    for through in throughs:
        added = [
            (b.ended - b.started - (a.ended - a.started)) * 1000 for a, b in zip(direct, through, strict=True)
        ]
        paired += ["", f"{statistics.median(added):+.2f}"]
    rows.append(paired)
    header = ["ms", "direct"]
    for name in gateways:
        header += [name, "added"]
    return (
        f"latency: {repeats} requests each, {chunks}-chunk replies, alternating, new connection each\n\n"
        + table(header, rows)
    )


def throughput(emitter: EmitterProcess, gateway: AppProcess, chunks: int, rounds: int) -> str:
    direct_path = "/" + emitter.base(chunks).split("/", 3)[3] + PATH
    targets = [(emitter.port, direct_path), (gateway.port, "/" + PATH)]
    expected = expected_text(chunks)
    times: list[list[float]] = [[], []]
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            port, path = targets[i]
            stream = Stream()
            started = time.perf_counter()
            asyncio.run(one_stream(port, request_bytes(port, path, chat_body("Hi")), stream, 300.0))
            times[i].append(time.perf_counter() - started)
            _checked([stream], expected)
    direct, through = (statistics.median(t) for t in times)
    rows = [
        ["direct", f"{direct * 1000:.0f}", f"{chunks / direct / 1000:.0f}k"],
        ["through gateway", f"{through * 1000:.0f}", f"{chunks / through / 1000:.0f}k"],
    ]
    return f"throughput: one {chunks:,}-chunk reply, {rounds} rounds, alternating\n\n" + table(
        ["", "ms (median)", "chunks/s"], rows
    )


def _hey(port: int, path: str, body: bytes, total: int) -> tuple[float, float, float]:
    """Requests/s, p50 and p99 in ms, from one ``hey`` run; raises if any request failed."""
    out = subprocess.run(
        [
            "hey",
            "-n",
            str(total),
            "-c",
            str(LOAD_CLIENTS),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-d",
            body.decode(),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    if codes != [("200", str(total))] or "Error distribution" in out:
        raise AssertionError(f"hey saw failures:\n{out}")

    def seconds(pattern: str) -> float | None:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else None

    rate = seconds(r"Requests/sec:\s+([\d.]+)") or 0.0
    slowest = seconds(r"Slowest:\s+([\d.]+)") or 0.0
    # hey leaves out a percentile its few samples cannot give (it prints "0% in 0.0000 secs").
    p50, p99 = ((seconds(rf"\b{p}% in ([\d.]+) secs") or slowest) * 1000 for p in (50, 99))
    return rate, p50, p99


def _own(port: int, path: str, body: bytes, total: int) -> tuple[float, float, float]:
    seconds, each, failed = asyncio.run(keepalive_load(port, path, body, LOAD_CLIENTS, total))
    if failed:
        raise AssertionError(f"{failed} of {total} requests failed")
    ms = [s * 1000 for s in each]
    return total / seconds, percentile(ms, 50), percentile(ms, 99)


def load(emitter: EmitterProcess, gateways: dict[str, AppProcess], total: int, rounds: int) -> str:
    """Streamed requests per second, 50 at once, 10-chunk replies: the upstream directly and
    through each gateway, measured in turn, the order rotating each round."""
    body = chat_body("Hi")
    direct_path = "/" + emitter.base(LOAD_CHUNKS).split("/", 3)[3] + PATH
    targets = {"upstream directly": (emitter.port, direct_path)}
    targets.update({name: (gw.port, "/" + PATH) for name, gw in gateways.items()})
    expected = expected_text(LOAD_CHUNKS)
    for port, path in targets.values():  # every target answers the right text before it is timed
        stream = Stream()
        asyncio.run(one_stream(port, request_bytes(port, path, body), stream, 30.0))
        _checked([stream], expected)
    tool = _hey if shutil.which("hey") else _own
    total = max(total // LOAD_CLIENTS, 1) * LOAD_CLIENTS  # hey sends n/c requests from each client
    for port, path in targets.values():  # warm up: pools, caches
        tool(port, path, body, max(total // 10, LOAD_CLIENTS))
    names = list(targets)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    # A gateway's own CPU a request: its processes' CPU time over a round, which other work on a
    # shared machine moves far less than it moves requests per second.
    cpu: dict[str, list[float]] = {name: [] for name in gateways}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gateway = gateways.get(name)
            before = gateway.cpu_seconds() if gateway is not None else 0.0
            results[name].append(tool(*targets[name], body, total))
            if gateway is not None:
                cpu[name].append((gateway.cpu_seconds() - before) / total * 1e6)
    base = statistics.median(rate for rate, _, _ in results["upstream directly"])
    rows = []
    for name in names:
        rate = statistics.median(x[0] for x in results[name])
        p50 = statistics.median(x[1] for x in results[name])
        p99 = statistics.median(x[2] for x in results[name])
        us = f"{statistics.median(cpu[name]):.0f}" if cpu.get(name) else "-"
        rows.append([name, f"{rate:,.0f}", f"{rate / base:.2f}x", f"{p50:.1f}", f"{p99:.1f}", us])
    how = "hey" if tool is _hey else "bench.loadgen keep-alive workers (hey not installed)"
    return (
        f"load: {total:,} streamed requests x {rounds} rounds, {LOAD_CLIENTS} at once, "
        f"{LOAD_CHUNKS}-chunk replies, by {how}; medians\n\n"
        + table(["target", "requests/s", "vs direct", "p50 ms", "p99 ms", "CPU us/request"], rows)
    )


def _gateway(emitter: EmitterProcess, chunks: int, src: str | None = None) -> AppProcess:
    return AppProcess("getgpt", "--backend", "openai", "--upstream", emitter.base(chunks) + "v1", src=src)


def run_gateway(
    short: int,
    long: int,
    repeats: int,
    rounds: int,
    with_profile: bool = False,
    *,
    requests: int = 5000,
    load_rounds: int = 3,
    baseline: str | None = None,
) -> str:
    with EmitterProcess(prebuild=(short, long, LOAD_CHUNKS)) as emitter:
        with _gateway(emitter, short) as gateway, contextlib.ExitStack() as stack:
            old = stack.enter_context(_gateway(emitter, short, src=baseline)) if baseline else None
            lat = latency(emitter, gateway, short, repeats, old)
        with _gateway(emitter, long) as gateway:
            thr = throughput(emitter, gateway, long, rounds)
        with _gateway(emitter, LOAD_CHUNKS) as gateway:
            gateways = {"through the gateway": gateway}
            with contextlib.ExitStack() as stack:
                if baseline:
                    gateways["through the baseline gateway"] = stack.enter_context(
                        _gateway(emitter, LOAD_CHUNKS, src=baseline)
                    )
                ld = load(emitter, gateways, requests, load_rounds)
        out = f"{lat}\n\n{thr}\n\n{ld}\n\nTarget: <= {TARGET_MS} ms added at p50."
        if with_profile:
            out += f"\n\nProfile of the gateway relaying one {long:,}-chunk reply (pyinstrument):\n\n"
            out += profile(emitter, long)
    return out


def profile(emitter: EmitterProcess, chunks: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "profile.txt")
        upstream = emitter.base(chunks) + "v1"
        with AppProcess("getgpt", "--backend", "openai", "--upstream", upstream, "--profile", path) as gw:
            stream = Stream()
            asyncio.run(one_stream(gw.port, request_bytes(gw.port, "/" + PATH, chat_body("Hi")), stream, 300))
        with open(path) as report:
            return "\n".join("    " + line for line in report.read().splitlines()[:80])


def run(quick: bool = False, baseline: str | None = None) -> str:
    """``baseline``: a source tree whose gateway runs beside, measured in the same sequence."""
    args = (10, 20_000, 50, 2) if quick else (10, 200_000, 500, 3)
    requests = 500 if quick else 5000
    report = run_gateway(*args, with_profile=True, requests=requests, baseline=baseline)
    return "\n".join(["## 5. Gateway overhead", "", report, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", type=int, default=10, help="chunks in a latency reply")
    parser.add_argument("--long", type=int, default=200_000, help="chunks in the throughput reply")
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--requests", type=int, default=5000, help="requests in each load round")
    parser.add_argument("--load-rounds", type=int, default=3)
    parser.add_argument("--baseline-src", metavar="DIR", help="also a gateway run from this source tree")
    args = parser.parse_args()
    print(machine(), "\n")
    print(
        run_gateway(
            args.short,
            args.long,
            args.repeats,
            args.rounds,
            args.profile,
            requests=args.requests,
            load_rounds=args.load_rounds,
            baseline=args.baseline_src,
        )
    )


if __name__ == "__main__":
    main()
