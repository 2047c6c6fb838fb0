"""A Redis that answers, but not what a Redis would: RESP on loopback, each command's reply scripted.

A real redis-server cannot be made to answer the rate-limit script with a string, so this one
speaks just enough of the protocol (RESP2 arrays of bulk strings in, one reply out) for redis-py
to talk to it: ``PING`` gets ``PONG``, ``HELLO`` an error (so redis-py speaks RESP2), a command
named in ``replies`` gets that reply (raw RESP bytes), anything else ``OK``. ``commands`` records
every command's name, in order.
"""

from __future__ import annotations

import asyncio

from .loopback import LoopbackServer

__all__ = ["OddRedis", "bulk"]


def bulk(text: str) -> bytes:
    """A RESP bulk string."""
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class OddRedis(LoopbackServer):
    """``with OddRedis({"EVALSHA": bulk("soon")}) as redis: redis.url``."""

    def __init__(self, replies: dict[str, bytes]) -> None:
        super().__init__()
        self.replies = {"HELLO": b"-ERR unknown command 'HELLO'\r\n"}
        self.replies.update((name.upper(), reply) for name, reply in replies.items())
        self.commands: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await reader.readuntil(b"\r\n")
            if not line.startswith(b"*"):
                return  # not RESP: hang up, as a confused server would
            parts = []
            for _ in range(int(line[1:])):
                size = int((await reader.readuntil(b"\r\n"))[1:])
                parts.append((await reader.readexactly(size + 2))[:-2])
            name = parts[0].decode("latin-1").upper() if parts else ""
            self.commands.append(name)
            if name == "PING":
                writer.write(b"+PONG\r\n")
            else:
                writer.write(self.replies.get(name, b"+OK\r\n"))
            await writer.drain()
