"""A server process's resident memory, from ``/proc/PID/status`` (Linux): now, and its peak.

Minimal, for the whole-reply budget's test; the edge engineer's ``tests/support/memory.py`` (not
on main yet when this was written) measures more and may take its place.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MIB", "peak_of", "reset_peak", "rss_of"]

MIB = 1 << 20


def _status(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0]) * 1024  # the kernel writes kB
    raise LookupError(f"/proc/{pid}/status has no {name}")


def rss_of(pid: int) -> int:
    """Bytes of process ``pid`` resident now (``VmRSS``)."""
    return _status(pid, "VmRSS")


def peak_of(pid: int) -> int:
    """The most bytes process ``pid`` has had resident since it began or :func:`reset_peak` (``VmHWM``)."""
    return _status(pid, "VmHWM")


def reset_peak(pid: int) -> None:
    """Start ``pid``'s peak again from what it holds now (``5`` to ``/proc/PID/clear_refs``)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
