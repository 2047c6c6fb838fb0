"""Benchmark 5: what the gateway adds in front of an OpenAI-compatible upstream.

The upstream is the bare emitter (bench/emitter.py); the gateway is the getgpt server with the
``openai`` backend pointed at it. A raw-socket reader (bench/loadgen.py) asks each directly and
through the gateway, alternating request by request: the difference is the gateway's cost.
Latency is measured on short replies, throughput on a long one; every text is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

from .apps import AppProcess
from .common import machine, percentile, table
from .emitter import EmitterProcess
from .loadgen import Stream, chat_body, one_stream, request_bytes, text_of
from .stream import expected_text

PATH = "v1/chat/completions"
TARGET_MS = 1.0


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


def latency(emitter: EmitterProcess, gateway: AppProcess, chunks: int, repeats: int) -> str:
    direct_path = "/" + emitter.base(chunks).split("/", 3)[3] + PATH
    targets = [(emitter.port, direct_path), (gateway.port, "/" + PATH)]
    asyncio.run(_sequence(targets, 20))  # warm up: the gateway's upstream pool, caches
    direct, through = asyncio.run(_sequence(targets, repeats))
    expected = expected_text(chunks)
    _checked(direct, expected)
    _checked(through, expected)
    rows = []
    for what, pick in (("time to first text", "first"), ("whole reply", "ended")):
        d = [(getattr(s, pick) - s.started) * 1000 for s in direct]
        t = [(getattr(s, pick) - s.started) * 1000 for s in through]
        for p in (50, 99):
            rows.append(
                [
                    f"{what} p{p}",
                    f"{percentile(d, p):.2f}",
                    f"{percentile(t, p):.2f}",
                    f"{percentile(t, p) - percentile(d, p):+.2f}",
                ]
            )
    added = [
        (b.ended - b.started - (a.ended - a.started)) * 1000 for a, b in zip(direct, through, strict=True)
    ]
    rows.append(["paired difference, median", "", "", f"{statistics.median(added):+.2f}"])
    return (
        f"latency: {repeats} requests each, {chunks}-chunk replies, alternating, new connection each\n\n"
        + table(["ms", "direct", "through gateway", "added"], rows)
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


def run_gateway(short: int, long: int, repeats: int, rounds: int, with_profile: bool = False) -> str:
    with EmitterProcess(prebuild=(short, long)) as emitter:
        with AppProcess("getgpt", "--backend", "openai", "--upstream", emitter.base(short) + "v1") as gateway:
            lat = latency(emitter, gateway, short, repeats)
        with AppProcess("getgpt", "--backend", "openai", "--upstream", emitter.base(long) + "v1") as gateway:
            thr = throughput(emitter, gateway, long, rounds)
        out = f"{lat}\n\n{thr}\n\nTarget: <= {TARGET_MS:.0f} ms added at p50."
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


def run(quick: bool = False) -> str:
    args = (10, 20_000, 50, 2) if quick else (10, 200_000, 500, 3)
    return "\n".join(["## 5. Gateway overhead", "", run_gateway(*args, with_profile=True), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", type=int, default=10, help="chunks in a latency reply")
    parser.add_argument("--long", type=int, default=200_000, help="chunks in the throughput reply")
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(machine(), "\n")
    print(run_gateway(args.short, args.long, args.repeats, args.rounds, args.profile))


if __name__ == "__main__":
    main()
