"""Benchmark 8: several worker processes on one port -- how they share it, measured.

A burst of 10,000 streams (each >= 5 s; all opened over 2 s by raw asyncio sockets, as in
benchmark 4) against the echo backend run three ways, one after another in the same run:

- ``getgpt serve``: one process (the figure the issue starts from);
- ``uvicorn supervisor x2``: two workers under uvicorn's own supervisor, which binds one
  listening socket and shares it (one accept queue for both);
- ``getgpt serve --workers 2``: two workers, each listening on sockets of its own bound with
  ``SO_REUSEPORT`` (the kernel spreads connections over their accept queues): one socket each,
  and as many as ``--max-streams`` needs at the kernel's cap on one queue (``somaxconn``);
- the same two ways with one process.

Reported: time to first chunk (p50, p99, max), streams complete, errors, and the servers' CPU.
Then the server's memory per open idle stream: 10,000 streams opened on ``getgpt serve --workers
2`` whose echo replies pause for minutes after their first piece; resident memory of every server
process summed, before and with all of them open.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time

from getgpt.server.running.supervisor import somaxconn

from .apps import AppProcess, _wait_listening
from .common import every_worker_up, machine, raise_nofile, stop, table, tree_cpu, tree_rss
from .concurrency import DELAY, HOLD_COLUMNS, PIECES, hold
from .loadgen import _FIRST_TEXT, chat_body, request_bytes

TARGET_P99_MS = 1000.0
MB = 1024 * 1024


class ServeProcess:
    """``getgpt serve`` with the given options in a child process, on a free loopback port."""

    def __init__(self, *options: str, env: dict[str, str] | None = None) -> None:
        """``env``: variables added to this process's (``GETGPT_API_KEYS``, say)."""
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self._port = int(probe.getsockname()[1])
        args = [sys.executable, "-m", "getgpt", "serve", "--port", str(self._port), "--log-level", "warning"]
        self._proc = subprocess.Popen([*args, *options], env={**os.environ, **env} if env else None)
        self._workers = int(options[options.index("--workers") + 1]) if "--workers" in options else 1
        self._up = False

    @property
    def port(self) -> int:
        """Its port, once it listens (and every worker answers): waited for on first use, so
        servers started one after another boot side by side, as bench.apps.AppProcess's do."""
        if not self._up:
            _wait_listening(self._port)
            if self._workers > 1:
                every_worker_up(self._port, self._workers)
            self._up = True
        return self._port

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the server and its workers."""
        return tree_cpu(self._proc.pid)

    def rss(self) -> int:
        return tree_rss(self._proc.pid)

    def close(self) -> None:
        stop(self._proc, signal.SIGTERM, 60)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _contenders(max_streams: int, delay: float) -> dict[str, list[str]]:
    # --idle-timeout 60: the load generator, one Python process opening 5,000 connections a
    # second, may send a request seconds after its connection was accepted when the machine is
    # busy; the server's 5 s idle deadline would then (rightly) close it, which measures the load
    # generator, not the server. Both supervisors get the same.
    common = ["--echo-delay", str(delay), "--max-streams", str(max_streams), "--idle-timeout", "60"]
    queues = str(-(-max_streams // somaxconn()))
    return {
        "getgpt serve, 1 process, 1 queue": ["serve", "--accept-queues", "1", *common],
        f"getgpt serve, 1 process, {queues} queues": ["serve", *common],
        "uvicorn supervisor x2, 1 shared queue": ["uvicorn", *common],
        "getgpt serve --workers 2, 1 queue each": [
            "serve",
            "--workers",
            "2",
            "--accept-queues",
            "1",
            *common,
        ],
        f"getgpt serve --workers 2, {queues} queues each": ["serve", "--workers", "2", *common],
    }


def _start(kind: list[str]) -> ServeProcess | AppProcess:
    what, *options = kind
    if what == "uvicorn":
        return AppProcess("getgpt", "--workers", "2", *options)
    return ServeProcess(*options)


def burst(count: int, spread: float, delay: float = DELAY, only: tuple[str, ...] = ()) -> str:
    """The burst against each contender (those whose name starts with one of ``only``, if given)."""
    limit = raise_nofile(count * 2 + 1024)
    rows = []
    for name, kind in _contenders(count * 2, delay).items():
        if only and not name.startswith(only):
            continue
        with _start(kind) as server:
            rows.append([name, *hold(server, count, spread)])  # type: ignore[arg-type]
    header = ["server", *HOLD_COLUMNS]
    return (
        f"each stream: {PIECES} pieces {delay} s apart, all opened over {spread:.0f} s; "
        f"open-files limit {limit}\n\n"
        + table(header, rows)
        + f"\n\nTarget (--workers 2): nothing lost, TTFC p99 < {TARGET_P99_MS:.0f} ms."
    )


class _Idle(asyncio.Protocol):
    """One stream held open: it notes its first text and then only waits."""

    def __init__(self, request: bytes, first: asyncio.Event, seen: list[int]) -> None:
        self.request, self.first, self.seen = request, first, seen
        self.transport: asyncio.Transport | None = None
        self.got = b""
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.got or not _FIRST_TEXT.search(self.got):
            self.got += data
            if _FIRST_TEXT.search(self.got):
                self.seen[0] += 1
                if self.seen[0] == self.seen[1]:
                    self.first.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


async def _hold_idle(
    port: int, count: int, spread: float, measure: object, settle: float
) -> tuple[int, float, int]:
    loop = asyncio.get_running_loop()
    first = asyncio.Event()
    seen = [0, count]
    protocols: list[_Idle] = []
    step = spread / count
    started = time.perf_counter()
    for i in range(count):
        request = request_bytes(port, "/v1/chat/completions", chat_body(f"{i:08d}" + "i" * 8))
        protocol = _Idle(request, first, seen)
        protocols.append(protocol)
        await loop.create_connection(lambda p=protocol: p, "127.0.0.1", port)  # type: ignore[misc]
        delay = started + (i + 1) * step - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.wait_for(first.wait(), 120)
    await asyncio.sleep(settle)  # let the servers settle before reading their memory
    held = measure()  # type: ignore[operator]
    lost = sum(p.lost for p in protocols)
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.abort()
    return int(held), time.perf_counter() - started, lost


def idle_memory(count: int, spread: float, settle: float = 1.0) -> str:
    """``settle``: seconds between the last stream's first piece and reading the servers' memory."""
    raise_nofile(count * 2 + 1024)
    # Two pieces 600 s apart: after its first piece each stream stays open and idle.
    with ServeProcess("--workers", "2", "--echo-delay", "600", "--max-streams", str(count * 2)) as server:
        asyncio.run(_warm(server.port))
        before = server.rss()
        held, wall, lost = asyncio.run(_hold_idle(server.port, count, spread, server.rss, settle))
    growth = held - before
    rows = [
        [
            f"{count:,}",
            f"{before / MB:.1f}",
            f"{held / MB:.1f}",
            f"{growth / MB:+.1f}",
            f"{growth / count / 1024:.1f}",
            f"{lost}",
        ]
    ]
    return (
        f"getgpt serve --workers 2, {count:,} streams opened over {spread:.0f} s ({wall:.0f} s to all open), "
        "each idle after its first piece; RSS of all server processes\n\n"
        + table(
            ["streams", "RSS before MB", "RSS open MB", "growth MB", "KiB per stream", "closed early"], rows
        )
    )


async def _warm(port: int) -> None:
    # A few whole requests first, so what is measured is streams, not the first request's imports.
    reader_writer = []
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes(port, "/v1/chat/completions", chat_body("warm")))
        reader_writer.append((reader, writer))
    for reader, writer in reader_writer:
        await reader.read(4096)
        writer.close()


def profile(count: int, spread: float) -> str:
    """Where one worker's time goes: one process under pyinstrument taking ``count`` streams."""
    import os
    import tempfile

    raise_nofile(count * 2 + 1024)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "profile.txt")
        options = ("--echo-delay", str(DELAY), "--max-streams", str(count * 2), "--profile", path)
        with AppProcess("getgpt", *options) as server:
            row = hold(server, count, spread)  # type: ignore[arg-type]
        with open(path) as report:
            lines = report.read().splitlines()[:90]
    return (
        f"one process under pyinstrument, {count:,} streams over {spread:.0f} s (one worker's half of the "
        f"burst): TTFC p50 {row[1]} ms, p99 {row[2]} ms, {row[-2]} complete\n\n"
        + "\n".join("    " + line for line in lines)
    )


def run(quick: bool = False) -> str:
    count = 300 if quick else 10_000
    parts = ["## 8. Workers", "", burst(count, 2.0), "", idle_memory(count, 2.0 if quick else 10.0), ""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=2.0)
    parser.add_argument("--only", choices=("burst", "memory", "profile"))
    args = parser.parse_args()
    print(machine(), "\n")
    if args.only == "profile":
        print(profile(args.streams // 2, args.spread))
        return
    if args.only != "memory":
        print(burst(args.streams, args.spread), "\n")
    if args.only != "burst":
        print(idle_memory(args.streams, 10.0))


if __name__ == "__main__":
    main()
