"""A raw HTTP/1.1 upstream on loopback that misbehaves on cue, and the scripts it runs.

:class:`FaultUpstream` reads one request per connection, counts it, then follows a script -- send
some events and close, reset the connection, stop mid-chunk, hang, answer anything at all -- and
records when its peer closed the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator

from . import sockets
from .loopback import LoopbackServer
from .waiting import wait_until_async

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n"
)
# A script that waits on its peer never waits longer than this, so a test cannot hang forever.
PATIENCE = 20.0


def events(*texts: str) -> bytes:
    out = b""
    for text in texts:
        chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
        out += b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"
    return out


def response(status: int, body: bytes, content_type: str, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Status", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode() + body


class FaultUpstream(LoopbackServer):
    """A raw HTTP/1.1 server on loopback, in its own thread and event loop, that runs ``script``."""

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.hits = 0
        #: time.monotonic() of each moment a peer was seen closing its connection.
        self.peer_closed: list[float] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self.hits += 1
        await self.script(reader, writer)

    async def wait_for_peer_to_close(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            while await asyncio.wait_for(reader.read(1024), PATIENCE):
                pass
            self.peer_closed.append(time.monotonic())


# --------------------------------------------------------------------------- scripts


def die_after(*texts: str) -> Script:
    """200, some events, then a clean close (FIN): no [DONE], no finish_reason."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + events(*texts))
        await writer.drain()

    return script


def reset_after(*texts: str) -> Script:
    """200, some events, then a TCP reset."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + events(*texts))
        await writer.drain()
        # The client has read the events before the reset, which would discard what it had not.
        here, peer = writer.get_extra_info("sockname")[1], writer.get_extra_info("peername")[1]
        await wait_until_async(
            lambda: sockets.unsent(here, peer) == 0 and sockets.unread(peer, here) == 0,
            PATIENCE,
            "the client read the events",
        )
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return script


def cut_mid_chunk(*texts: str) -> Script:
    """Chunked transfer encoding, events in whole chunks, then a chunk that never ends."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED_HEAD)
        for text in texts:
            data = events(text)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        writer.write(b'400\r\ndata: {"choi')
        await writer.drain()

    return script


def hang_after(upstream: list[FaultUpstream], *texts: str, head: bool = True) -> Script:
    """Optionally the head and some events, then silence until the peer gives up."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if head:
            writer.write(STREAM_HEAD + events(*texts))
            await writer.drain()
        await upstream[0].wait_for_peer_to_close(reader)

    return script


def answer(data: bytes) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return script


@contextlib.contextmanager
def hanging(*texts: str, head: bool = True) -> Iterator[FaultUpstream]:
    box: list[FaultUpstream] = []
    with FaultUpstream(hang_after(box, *texts, head=head)) as upstream:
        box.append(upstream)
        yield upstream
