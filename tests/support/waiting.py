"""How a test waits for something it cannot be told about: poll a condition, with a bound.

A test never sleeps to let something happen (a server start, a slot freed, a connection closed):
it waits for the condition that says it has happened, here, and fails with a clear message when
the condition is still false at the bound. The bound is generous -- it only keeps a broken build
from hanging -- so a slow, loaded machine waits longer instead of failing. A test that asserts
*how soon* something happens measures that itself (see tests/server/test_hostile_clients.py).

- :func:`wait_until` -- from a test or a helper's thread; returns the seconds it took.
- :func:`wait_until_async` -- the same inside an event loop (a fake server's script).

When the thing to wait for can tell you, prefer that: a ``threading.Event`` set by the code under
test, a line in a ``getgpt serve`` log (:meth:`.serve_process.ServeProcess.wait_for_output`), an
injected clock (``RateLimiter(clock=...)``). When it is the kernel that knows (a server read the
bytes, accepted the connection, filled its buffers), :mod:`.sockets` reads it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["POLL", "wait_until", "wait_until_async"]

#: Seconds between two looks at a condition: short against any bound used, long against a look.
POLL = 0.01


def wait_until(condition: Callable[[], object], limit: float = 10.0, what: str = "") -> float:
    """Seconds until ``condition()`` was true; fails if it is still false after ``limit`` seconds."""
    start = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - start
        assert elapsed < limit, f"{what or 'condition'} still false after {elapsed:.2f} s"
        time.sleep(POLL)
    return time.monotonic() - start


async def wait_until_async(condition: Callable[[], object], limit: float = 10.0, what: str = "") -> float:
    """:func:`wait_until` for a coroutine: the loop runs other tasks between two looks."""
    start = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - start
        if elapsed >= limit:
            raise TimeoutError(f"{what or 'condition'} still false after {elapsed:.2f} s")
        await asyncio.sleep(POLL)
    return time.monotonic() - start
