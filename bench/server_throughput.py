"""Benchmark 3: chunks per second a server delivers to fast readers.

The getgpt server (echo backend) and a minimal Starlette StreamingResponse app (bench/apps.py)
each echo the same message in the same 4-character ``chat.completion.chunk`` events under the
same uvicorn, both running all the time, measured in turn each round. Readers are raw sockets
(bench/loadgen.py); every reply's text is checked after the timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time

from .apps import PIECE, AppProcess
from .common import machine, table
from .loadgen import chat_body, open_streams, text_of

PATH = "/v1/chat/completions"
TARGET = 3.0


def message(chunks: int) -> str:
    sentence = "The quick brown fox jumps over the lazy dog. "
    return (sentence * (chunks * PIECE // len(sentence) + 1))[: chunks * PIECE]


def one_round(port: int, readers: int, chunks: int) -> float:
    """Seconds from the first request to the last reply's end; raises if any reply is wrong."""
    text = message(chunks)
    bodies = [chat_body(text)] * readers
    started = time.perf_counter()
    streams = asyncio.run(open_streams(port, PATH, bodies, spread=0.0))
    elapsed = max(s.ended or time.perf_counter() for s in streams) - started
    for stream in streams:
        if stream.error:
            raise AssertionError(f"a reader failed: {stream.error}")
        if text_of(stream) != text:
            raise AssertionError("a reader got the wrong text")
    return elapsed


def throughput(readers: int, chunks: int, rounds: int, servers: dict[str, AppProcess]) -> str:
    times: dict[str, list[float]] = {name: [] for name in servers}
    names = list(servers)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(one_round(servers[name].port, readers, chunks))
    total = readers * chunks
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["minimal Starlette StreamingResponse"]
    rows = [
        [name, f"{s * 1000:.0f}", f"{total / s / 1000:.0f}k", f"{base / s:.2f}x"]
        for name, s in medians.items()
    ]
    out = f"{readers} reader(s) x {chunks:,} chunks, {rounds} rounds, alternating\n\n" + table(
        ["server", "ms (median)", "chunks/s", "vs minimal app"], rows
    )
    unbounded = medians.get("getgpt server (echo), no connection bounds")
    if unbounded:
        cost = medians["getgpt server (echo)"] / unbounded - 1
        out += f"\nConnection bounds: {cost:+.1%} time against the same app without them.\n"
    return out


def profile(chunks: int) -> str:
    """pyinstrument's view of the getgpt server serving one fast reader."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "profile.txt")
        with AppProcess("getgpt", "--profile", path) as server:
            one_round(server.port, 1, chunks)
        with open(path) as report:
            lines = report.read().splitlines()
    return "\n".join("    " + line for line in lines[:70])


def run(quick: bool = False, with_profile: bool = True, baseline: str | None = None) -> str:
    """``baseline``: a source tree whose getgpt server runs beside, measured in the same rounds."""
    one, many, per_reader, rounds = (20_000, 10, 1_000, 2) if quick else (200_000, 100, 4_000, 5)
    # Short replies, each on a connection of its own: what a connection costs (the bounds' timers
    # and bookkeeping are per connection and per request) rather than what a chunk costs.
    connections = 100 if quick else 1_000
    out = ["## 3. Server throughput", ""]
    with contextlib.ExitStack() as stack:
        # The second shows what getgpt serve's connection bounds cost: the same app on
        # uvicorn's own protocol.
        servers = {
            "getgpt server (echo)": stack.enter_context(AppProcess("getgpt")),
            "getgpt server (echo), no connection bounds": stack.enter_context(
                AppProcess("getgpt", "--unbounded")
            ),
            "minimal Starlette StreamingResponse": stack.enter_context(AppProcess("minimal")),
        }
        if baseline:
            servers["getgpt server (echo), baseline tree"] = stack.enter_context(
                AppProcess("getgpt", src=baseline)
            )
        out += [throughput(1, one, rounds, servers), ""]
        out += [throughput(many, per_reader, rounds, servers), ""]
        out += [throughput(connections, 1, rounds, servers), ""]
    out.append(f"Target: getgpt >= {TARGET:.0f}x the minimal app.")
    if with_profile:
        out += ["", f"Profile of the getgpt server, one reader, {one:,} chunks (pyinstrument):", ""]
        out.append(profile(one))
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--baseline-src", metavar="DIR", help="also the getgpt server of this source tree")
    args = parser.parse_args()
    print(machine(), "\n")
    print(run(args.quick, not args.no_profile, args.baseline_src))


if __name__ == "__main__":
    main()
