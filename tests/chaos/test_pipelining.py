"""Pipelined requests from clients that never read: memory the server may spend on them.

A connection used to cost the server ~15 MiB for 256 KiB of back-to-back ``GET /healthz``: every
request in a network read was parsed at once, each a scope, a header list and a response cycle
queued behind the first, whose answer the client never read (issue 20: 100 such connections
+1,261 MiB here, all of it still resident after they closed).
"""

from __future__ import annotations

import socket

from ..support.hostile import arrived, pipelined
from ..support.memory import MIB, growth
from ..support.serve_process import getgpt_serve
from ..support.waiting import wait_until

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BUDGET = 64 * MIB


def test_100_connections_pipelining_256_kib_each_grow_the_server_by_less_than_64_mib() -> None:
    with getgpt_serve("--idle-timeout", "60", "--write-timeout", "60") as server:
        pid = server.process.pid
        sockets: list[socket.socket] = []
        with growth(pid) as grown:
            try:
                sockets = pipelined(server.address, HEALTH, 256 << 10, 100, limit=30)
                # Until each connection has had ~100 answers (16 KiB of them, unread): the server
                # has read and parsed its first requests, and held the rest; or until the
                # budget is gone already.
                wait_until(lambda: grown.peak >= BUDGET or all(arrived(s) >= 16 << 10 for s in sockets), 90)
                if grown.peak < BUDGET:
                    server.healthz(timeout=10)
            finally:
                for sock in sockets:
                    sock.close()
        assert grown.peak < BUDGET, grown
