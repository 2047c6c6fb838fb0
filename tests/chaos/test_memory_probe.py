"""The memory probe the budget tests rely on (tests/support/memory.py), against a real process
that grows and shrinks when told to."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..support.memory import MIB, growth, peak_of, rss_of

# Holds 96 MiB on "grow", lets it go on "free"; answers each command with a line once done.
_CHILD = """
import sys
held = None
for line in sys.stdin:
    if line.strip() == "grow":
        held = bytearray(96 << 20)
        for i in range(0, len(held), 4096):
            held[i] = 1  # touched: resident, not just reserved
    elif line.strip() == "free":
        held = None
    print("done", flush=True)
"""


@contextmanager
def _child() -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield child
    finally:
        child.kill()
        child.wait(10)


def _tell(child: subprocess.Popen[str], command: str) -> None:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(command + "\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "done"


def test_the_probe_sees_a_process_grow_and_give_the_memory_back() -> None:
    with _child() as child:
        _tell(child, "free")  # the interpreter is up
        assert 1 * MIB < rss_of(child.pid) <= peak_of(child.pid)
        with growth(child.pid) as grown:
            _tell(child, "grow")
            assert grown.peak >= 90 * MIB
            _tell(child, "free")
        assert grown.peak >= 90 * MIB  # the peak stays known after the memory went back
        assert grown.end is not None and grown.end < 16 * MIB
        assert grown.now() < 16 * MIB


def test_a_peak_from_before_the_block_does_not_count_in_it() -> None:
    with _child() as child:
        _tell(child, "grow")
        _tell(child, "free")  # the process's own high-water mark is now ~96 MiB above its RSS
        with growth(child.pid) as grown:
            _tell(child, "free")
        assert grown.peak < 16 * MIB, grown
