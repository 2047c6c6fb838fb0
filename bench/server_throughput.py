"""Benchmark 3: chunks per second a server delivers to fast readers, and what each chunk and each
connection costs the server in CPU.

The getgpt server (echo backend) and a minimal Starlette StreamingResponse app (bench/apps.py)
each echo the same message in the same 4-character ``chat.completion.chunk`` events under the
same uvicorn, both running all the time, measured in turn each round. Readers are raw sockets
(bench/loadgen.py); every reply's text is checked after the timing.

The getgpt server runs three ways (issue 21 chose between the first two by this benchmark): with
the connection bounds ``getgpt serve`` keeps (a protocol in front of uvicorn's, composed through
public contracts), on uvicorn's h11 protocol with the bounds uvicorn's own settings give, and on
uvicorn's httptools protocol with no bounds. Server CPU is read from /proc before and after each
round: per chunk from long replies, per connection from one-chunk replies each on a connection of
its own. :func:`bounds_held` then tries each way with hostile clients: which bounds hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import tempfile
import time

from .apps import PIECE, AppProcess
from .common import machine, table, tree_rss
from .loadgen import chat_body, open_streams, text_of

PATH = "/v1/chat/completions"
TARGET = 3.0
MINIMAL = "minimal Starlette StreamingResponse"
BOUNDED = "getgpt server (echo)"
UNBOUNDED = "getgpt server (echo), no connection bounds"
PUBLIC = "getgpt server (echo), uvicorn's public settings (h11)"
BASELINE = "getgpt server (echo), baseline tree"


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
    """Wall time and server CPU of ``readers`` replies of ``chunks`` chunks, each server in turn.

    CPU is given per chunk, or per connection when each reply is one chunk (what the connection
    costs then outweighs what its chunk does).
    """
    times: dict[str, list[float]] = {name: [] for name in servers}
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    names = list(servers)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            before = servers[name].cpu_seconds()
            times[name].append(one_round(servers[name].port, readers, chunks))
            cpu[name].append(servers[name].cpu_seconds() - before)
    total = readers * chunks
    per_connection = chunks == 1
    units = readers if per_connection else total
    unit = "connection" if per_connection else "chunk"
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    base = medians[MINIMAL]
    bounded_cpu = cpu_medians[BOUNDED]
    rows = [
        [
            name,
            f"{s * 1000:.0f}",
            f"{total / s / 1000:.0f}k",
            f"{base / s:.2f}x",
            f"{cpu_medians[name] / units * 1e6:.1f}",
            f"{cpu_medians[name] / bounded_cpu:.2f}x" if bounded_cpu else "-",
        ]
        for name, s in medians.items()
    ]
    out = f"{readers} reader(s) x {chunks:,} chunks, {rounds} rounds, alternating\n\n" + table(
        ["server", "ms (median)", "chunks/s", "vs minimal app", f"server CPU us/{unit}", "CPU vs getgpt"],
        rows,
    )
    unbounded = medians.get(UNBOUNDED)
    if unbounded:
        cost = medians[BOUNDED] / unbounded - 1
        out += f"\nConnection bounds: {cost:+.1%} time against the same app without them.\n"
    return out


def per_send(chunks: int, rounds: int) -> str:
    """Server CPU per chunk when every chunk is a send of its own: the minimal app on each
    protocol (getgpt's echo writes a read's worth of events at once, which hides a per-send cost)."""
    ways = {
        "minimal app, getgpt serve's connection bounds": ("--bounded",),
        "minimal app, uvicorn's public settings (h11)": ("--public-settings",),
        "minimal app, uvicorn's httptools, no bounds": (),
    }
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(AppProcess("minimal", *options)) for name, options in ways.items()
        }
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        names = list(servers)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                before = servers[name].cpu_seconds()
                one_round(servers[name].port, 1, chunks)
                cpu[name].append(servers[name].cpu_seconds() - before)
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    first = medians[names[0]]
    rows = [[name, f"{m / chunks * 1e6:.2f}", f"{m / first:.2f}x"] for name, m in medians.items()]
    return f"1 reader x {chunks:,} chunks, one send each, {rounds} rounds, alternating\n\n" + table(
        ["server", "server CPU us/chunk", "vs bounds"], rows
    )


# --- which bounds hold --------------------------------------------------------------------------

_HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def _closed_within(port: int, first: bytes, trickle: bytes, limit: float) -> tuple[float | None, bytes]:
    """Send ``first``, then ``trickle`` a byte every 0.5 s; seconds until the server closed (None
    if it had not within ``limit``), and what it sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    received = bytearray()

    async def read() -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                received.extend(data)

    reading = asyncio.ensure_future(read())
    try:
        writer.write(first)
        for byte in trickle:
            if reading.done() or time.monotonic() - started > limit:
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes([byte]))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), 0.5)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(reading), max(0.01, limit - (time.monotonic() - started)))
        return (time.monotonic() - started if reading.done() else None), bytes(received)
    finally:
        reading.cancel()
        writer.transport.abort()


def _pipelining_growth(server: AppProcess, connections: int) -> float:
    """MiB the server grew while ``connections`` clients each wrote 256 KiB of pipelined
    ``GET /healthz`` and read nothing, measured once each had ~100 answers waiting (or 20 s)."""
    before = tree_rss(server.pid)
    payload = _HEALTH * ((256 << 10) // len(_HEALTH))
    sockets = []
    try:
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.setblocking(False)
            sockets.append(sock)
        for sock in sockets:
            with contextlib.suppress(BlockingIOError):
                sock.send(payload)
        until = time.monotonic() + 20
        peak = before
        while time.monotonic() < until:
            peak = max(peak, tree_rss(server.pid))
            waiting = 0
            for sock in sockets:
                with contextlib.suppress(BlockingIOError, ConnectionError):
                    waiting += len(sock.recv(16 << 10, socket.MSG_PEEK)) >= 16 << 10
            if waiting == connections:
                break
            time.sleep(0.1)
        return (max(peak, tree_rss(server.pid)) - before) / (1 << 20)
    finally:
        for sock in sockets:
            sock.close()


def bounds_held(servers: dict[str, AppProcess], limit: float = 15.0) -> str:
    """Hostile clients against each server (getgpt's defaults: idle 5 s, head 10 s, head 32 KiB)."""
    names = [name for name in servers if name != MINIMAL]

    async def timed() -> dict[str, list[tuple[float | None, bytes]]]:
        probes = {}
        for name in names:
            port = servers[name].port
            probes[name] = asyncio.gather(
                _closed_within(port, b"", b"", limit),  # a connection that sends nothing
                _closed_within(port, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: " + b"s" * 60, limit),
                _closed_within(port, _HEALTH, b"\r\n" * 60, limit),  # kept alive by blank lines
            )
        return {name: list(await probe) for name, probe in probes.items()}

    found = asyncio.run(timed())

    def closed(result: tuple[float | None, bytes]) -> str:
        seconds, received = result
        if seconds is None:
            return f"open after {limit:g} s"
        status = received[9:12].decode() if received.startswith(b"HTTP/1.1 ") else "no answer"
        return f"{seconds:.1f} s ({status})"

    rows = []
    for name in names:
        idle, slow, blank = found[name]
        big = asyncio.run(
            _closed_within(servers[name].port, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (1 << 20), b"", 5)
        )
        rows.append(
            [
                name,
                closed(idle),
                closed(slow),
                closed(blank),
                big[1][9:12].decode() if big[1].startswith(b"HTTP/1.1 ") else "no answer",
                f"+{_pipelining_growth(servers[name], 20):.0f} MiB",
            ]
        )
    return "Which bounds hold (hostile clients; getgpt's defaults):\n\n" + table(
        [
            "server",
            "sends nothing",
            "head trickled",
            "blank lines after a request",
            "1 MiB header line",
            "20 x 256 KiB pipelined, unread",
        ],
        rows,
    )


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
    # Short replies, each on a connection of its own: what a connection costs (the bounds' work
    # is per connection and per request) rather than what a chunk costs. 2,000 so that the CPU
    # read from /proc (in 10 ms ticks) is within a few per cent.
    connections = 100 if quick else 2_000
    out = ["## 3. Server throughput", ""]
    with contextlib.ExitStack() as stack:
        servers = {
            BOUNDED: stack.enter_context(AppProcess("getgpt")),
            PUBLIC: stack.enter_context(AppProcess("getgpt", "--public-settings")),
            UNBOUNDED: stack.enter_context(AppProcess("getgpt", "--unbounded")),
            MINIMAL: stack.enter_context(AppProcess("minimal")),
        }
        if baseline:
            servers[BASELINE] = stack.enter_context(AppProcess("getgpt", src=baseline))
        out += [throughput(1, one, rounds, servers), ""]
        out += [throughput(many, per_reader, rounds, servers), ""]
        out += [throughput(connections, 1, rounds, servers), ""]
        out += [bounds_held(servers, 8.0 if quick else 15.0), ""]
    out += [per_send(5_000 if quick else 50_000, rounds), ""]
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
