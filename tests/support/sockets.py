"""What the kernel knows of loopback TCP sockets, read from ``/proc/net/tcp`` (Linux, IPv4).

Some orderings only the kernel can tell: that a server (in this process or another) has *read*
what a client sent, has *accepted* a connection, or has stopped reading so the client's sends
queue up. The tests wait for those with :func:`.waiting.wait_until` instead of sleeping::

    wait_until(lambda: sockets.unread(server_port, client_port) == 0)  # the server read it all
    wait_until(lambda: sockets.accept_queue(server_port) == 0)        # ... accepted every one
    wait_until(lambda: sockets.unsent(client_port, server_port) > 0)  # its buffers are full
    wait_until(lambda: sockets.released(server_port, client_port))    # it closed the connection

Each side of a loopback connection is a socket of its own, named here by its local port and its
peer's port. A socket that does not exist (not yet connected, already closed) counts as 0.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["accept_queue", "port_of", "released", "unread", "unsent"]

_LISTEN = "0A"


@dataclass(frozen=True)
class _Entry:
    port: int
    peer: int
    state: str
    unsent: int  # tx_queue: bytes sent but not yet acknowledged by the peer's kernel
    unread: int  # rx_queue: bytes received but not yet read; for a listener, connections not accepted
    inode: int  # 0 once no process holds the socket (closed, the kernel finishing the connection)


def _entries() -> list[_Entry]:
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
        tx, rx = queues.split(":")
        found.append(
            _Entry(int(local[-4:], 16), int(remote[-4:], 16), state, int(tx, 16), int(rx, 16), int(fields[9]))
        )
    return found


def unread(port: int, *peers: int) -> int:
    """Bytes that arrived at the socket(s) on ``port`` from ``peers`` and were not read yet (one
    look at the kernel's table, however many peers)."""
    wanted = set(peers)
    return sum(e.unread for e in _entries() if e.port == port and e.peer in wanted and e.state != _LISTEN)


def unsent(port: int, peer: int) -> int:
    """Bytes written to the socket on ``port`` that ``peer``'s side has not taken in yet (more than
    a moment: its receive buffer is full, because nothing reads it)."""
    return sum(e.unsent for e in _entries() if e.port == port and e.peer == peer and e.state != _LISTEN)


def accept_queue(port: int) -> int:
    """Connections to the listener(s) on ``port`` whose handshake is done and that wait for ``accept``."""
    return sum(e.unread for e in _entries() if e.port == port and e.state == _LISTEN)


def released(port: int, peer: int) -> bool:
    """Whether the program that held the socket on ``port`` to ``peer`` has closed it for good
    (the kernel may still be ending the connection): a half-close, as a server lingering to drop
    what a refused client still sends, is not that."""
    return all(e.inode == 0 for e in _entries() if e.port == port and e.peer == peer)


def port_of(sock: socket.socket) -> int:
    """The local port of ``sock``."""
    return int(sock.getsockname()[1])
