"""A process's memory, read from ``/proc/PID/status``: what a memory-budget test asserts on.

``rss_of(pid)`` is the resident set now, in bytes. ``growth(pid)`` measures a block::

    with growth(server.process.pid) as grown:
        ...  # the attack
    assert grown.peak < 64 * MIB          # the most the process grew at any moment in the block
    assert grown.now() < 16 * MIB         # what it still holds (read again later: it may shrink)

The peak is the kernel's own high-water mark (``VmHWM``), reset at the start of the block by
writing ``5`` to ``/proc/PID/clear_refs`` (a process of the same user, Linux 4.0+), so a peak
between two samples is not missed; where that cannot be written, a thread samples ``VmRSS`` every
``every`` seconds instead. Linux only, like ``/proc``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MIB", "Growth", "growth", "peak_of", "rss_of"]

MIB = 1 << 20


def _status(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0]) * 1024  # the kernel writes kB
    raise LookupError(f"/proc/{pid}/status has no {name}")


def rss_of(pid: int) -> int:
    """Bytes of process ``pid`` resident in memory now (``VmRSS``)."""
    return _status(pid, "VmRSS")


def peak_of(pid: int) -> int:
    """The most bytes process ``pid`` has had resident since it started or its peak was reset."""
    return _status(pid, "VmHWM")


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Growth:
    """How much a process grew from the start of a :func:`growth` block, in bytes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = rss_of(pid)
        self.exact = _reset_peak(pid)  # the kernel keeps the peak from now on
        self.highest = self.start  # the highest RSS seen, where the kernel does not keep it
        self.end: int | None = None  # growth at the end of the block

    @property
    def peak(self) -> int:
        """The largest growth at any moment of the block (so far, while inside it)."""
        highest = max(self.highest, peak_of(self.pid)) if self.exact and self.end is None else self.highest
        return highest - self.start

    def now(self) -> int:
        """Growth now, read afresh: after the block, whether the memory came back."""
        return rss_of(self.pid) - self.start

    def __repr__(self) -> str:
        end = "?" if self.end is None else f"{self.end / MIB:+.1f}"
        return f"Growth(start={self.start / MIB:.1f} MiB, peak={self.peak / MIB:+.1f}, end={end} MiB)"


@contextmanager
def growth(pid: int, *, every: float = 0.02) -> Iterator[Growth]:
    """Measure process ``pid``'s resident memory across the block (see the module's text)."""
    grown = Growth(pid)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            try:
                grown.highest = max(grown.highest, rss_of(pid))
            except (OSError, LookupError):
                return  # the process has ended

    sampler = None if grown.exact else threading.Thread(target=sample, daemon=True)
    if sampler is not None:
        sampler.start()
    try:
        yield grown
    finally:
        stop.set()
        if sampler is not None:
            sampler.join()
        end = rss_of(pid)
        grown.highest = max(grown.highest, end, peak_of(pid) if grown.exact else end)
        grown.end = end - grown.start
