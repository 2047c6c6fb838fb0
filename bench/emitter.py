"""A bare HTTP/1.1 server that answers every POST with a pre-built SSE response.

The server must cost nothing, so the clients' own cost is what a benchmark measures: each
response is built once (status line, headers, chunked body) and written with one
``transport.write``. It runs in its own process (``python -m bench.emitter``, which prints
its port) so it does not share the clients' interpreter lock.

The request path chooses the response, so one emitter serves every benchmark and every
contender whatever path its library appends (``/api/chat/stream``, ``/v1/chat/completions``):
the first path segment is ``<n>`` or ``<n>-<g>`` -- ``n`` content chunks, framed ``g`` SSE
events per HTTP chunk (default 1: one HTTP chunk per event, which is what a streaming ASGI or
WSGI server writes when the application yields event by event). A first segment of ``sleep``
followed by ``<ms>`` (``/sleep250/``) holds the answer that long, for latency tests; one of
``pace`` followed by ``<ms>`` (``/pace20/``) sends the head and the first event at once, then one
event every ``ms`` milliseconds: a stream that is live for a while, for the failover drill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from functools import lru_cache

from .stream import events

__all__ = ["EmitterProcess", "chunked", "response_bytes"]


def chunked(parts: list[bytes]) -> bytes:
    """``parts`` in HTTP/1.1 chunked transfer-encoding, one HTTP chunk each, with the last-chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


@lru_cache(maxsize=16)
def response_bytes(n: int, group: int = 1) -> bytes:
    """The whole HTTP response for ``n`` content chunks, ``group`` events per HTTP chunk."""
    evs = events(n)
    parts = [b"".join(evs[i : i + group]) for i in range(0, len(evs), group)]
    head = (
        b"HTTP/1.1 200 OK\r\n"
        b"content-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n"
        b"\r\n"
    )
    return head + chunked(parts)


def _parse_target(target: str) -> tuple[int, int]:
    first = target.lstrip("/").split("/", 1)[0]
    n, _, g = first.partition("-")
    return int(n), int(g or 1)


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self._buf[:end].decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value.strip().lower() == "close"
            if len(self._buf) < end + 4 + length:
                return
            self._buf = self._buf[end + 4 + length :]
            self._answer(target, close)

    def _answer(self, target: str, close: bool) -> None:
        assert self._transport is not None
        if target.startswith("/pace"):
            first, _, rest = target[len("/pace") :].partition("/")
            self._paced(int(first) / 1000, "/" + rest, close)
            return
        if target.startswith("/sleep"):
            first, _, rest = target[len("/sleep") :].partition("/")
            loop = asyncio.get_running_loop()
            loop.call_later(int(first) / 1000, self._answer, "/" + rest, close)
            return
        try:
            n, group = _parse_target(target)
        except ValueError:
            self._transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            return
        self._transport.write(response_bytes(n, group))
        if close:
            self._transport.close()

    def _paced(self, gap: float, target: str, close: bool) -> None:
        transport = self._transport
        assert transport is not None
        try:
            n, _ = _parse_target(target)
        except ValueError:
            transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            return
        parts = [b"%x\r\n%s\r\n" % (len(event), event) for event in events(n)] + [b"0\r\n\r\n"]
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        transport.write(head + parts[0])
        loop = asyncio.get_running_loop()

        def send(index: int) -> None:
            if transport.is_closing():
                return
            transport.write(parts[index])
            if index + 1 < len(parts):
                loop.call_later(gap, send, index + 1)
            elif close:
                transport.close()

        loop.call_later(gap, send, 1)


async def _serve(port: int, prebuild: list[int]) -> None:
    for n in prebuild:
        response_bytes(n)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, "127.0.0.1", port, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class EmitterProcess:
    """Runs the emitter in a child process; ``url`` is its base, e.g. ``http://127.0.0.1:PORT``."""

    def __init__(self, prebuild: tuple[int, ...] = (), port: int = 0) -> None:
        args = [
            sys.executable,
            "-m",
            "bench.emitter",
            f"--port={port}",
            *(f"--prebuild={n}" for n in prebuild),
        ]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the emitter did not start")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def base(self, n: int, group: int = 1) -> str:
        """The base URL (ending in ``/``) under which every path answers ``n`` chunks."""
        return f"{self.url}/{n}-{group}/"

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: gone at once, every connection reset, as a crashed server's are."""
        self._proc.kill()
        self._proc.wait(10)

    def __enter__(self) -> EmitterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def emitter(prebuild: tuple[int, ...] = ()) -> Iterator[EmitterProcess]:
    proc = EmitterProcess(prebuild)
    try:
        yield proc
    finally:
        proc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prebuild", type=int, action="append", default=[])
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.prebuild))


if __name__ == "__main__":
    main()
