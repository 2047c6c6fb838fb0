"""``getgpt`` on a pseudo-terminal, as a person runs it: typed keys in, the screen's bytes out.

The child makes the terminal its controlling one, so Ctrl-C typed into it (``\\x03``) becomes SIGINT
from the kernel's line discipline, exactly as in a real terminal.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from types import TracebackType

from .command import locale_env

__all__ = ["Terminal", "plain", "screen"]

# Runs in the child: take the terminal on stdin as the controlling one, then run the command as
# `python -m getgpt` does (its __main__ is these two lines) -- in this interpreter, not a second
# one started by exec (~0.1 s of CPU a test; `python -m getgpt` itself is run by support/command.py).
_LAUNCH = (
    "import fcntl, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "from getgpt.cli.commands import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\x01\x02\r]")


def plain(text: str) -> str:
    """Text as a person reads it on the screen: colour codes and carriage returns removed."""
    return _ESCAPES.sub("", text)


_CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|[\r\n\b\x01\x02]")


def screen(text: str) -> list[str]:
    """The lines a terminal shows at the end of ``text``: what a spinner drew and erased is gone.

    A small emulator of what rich and readline write: carriage return, line feed, backspace, the
    cursor moved up, down, left, right or to a column, a line erased; colours and other
    sequences change nothing here.
    """
    lines, row, col = [""], 0, 0

    def write(chars: str) -> None:
        nonlocal col
        line = lines[row].ljust(col)
        lines[row] = line[:col] + chars + line[col + len(chars) :]
        col += len(chars)

    at = 0
    for match in _CONTROL.finditer(text):
        write(text[at : match.start()])
        at = match.end()
        token, (arg, command) = match.group(0), (match.group(1) or "", match.group(2))
        count = int(arg) if arg.isdigit() else 1
        if token == "\r":
            col = 0
        elif token == "\n":
            row += 1
            lines += [""] * (row + 1 - len(lines))
        elif token == "\b":
            col = max(col - 1, 0)
        elif command == "A":
            row = max(row - count, 0)
        elif command == "B":
            row += count
            lines += [""] * (row + 1 - len(lines))
        elif command == "C":
            col += count
        elif command == "D":
            col = max(col - count, 0)
        elif command == "G":
            col = count - 1
        elif command == "K":
            lines[row] = {"": lines[row][:col], "0": lines[row][:col], "1": " " * col + lines[row][col:]}.get(
                arg, ""
            )
    write(text[at:])
    return [line.rstrip() for line in lines]


class Terminal:
    """``getgpt *args`` on a new pseudo-terminal, with ``env`` added to this process's environment."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.leader, follower = pty.openpty()
        self.output = b""
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, *args],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            start_new_session=True,
            env=locale_env({"TERM": "xterm-256color", **(env or {})}),
        )
        os.close(follower)

    def text(self) -> str:
        """Everything the screen has shown so far, as plain text."""
        return plain(self.output.decode("utf-8", "replace"))

    def screen(self) -> list[str]:
        """The lines on the screen now, what was drawn and erased (a spinner) gone; no blank ones."""
        return [line for line in screen(self.output.decode("utf-8", "replace")) if line.strip()]

    def type(self, keys: str) -> None:
        os.write(self.leader, keys.encode())

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.leader], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.leader, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.output += data
        return bool(data)

    def wait_for(self, pattern: str, timeout: float = 20.0, after: int = 0) -> str:
        """Read until ``pattern`` (a regular expression) shows in the plain text past ``after``."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text()[after:]):
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} never showed; the screen:\n{self.text()}"
            if not self._read(min(left, 0.2)) and self.process.poll() is not None:
                assert re.search(pattern, self.text()[after:]), f"exited first; the screen:\n{self.text()}"
        return self.text()

    def wait_exit(self, timeout: float = 20.0) -> int:
        """Read what is left until the child exits; its status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0):
            if not select.select([self.leader], [], [], 0)[0]:
                break
        return self.process.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.leader)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
