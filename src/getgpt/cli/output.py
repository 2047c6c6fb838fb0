"""Where the command line writes: a reply as it streams, notes, the prompt.

Plain text when piped, when ``--plain`` says so, on a ``dumb`` terminal and when ``NO_COLOR`` is
set (https://no-color.org): not one escape byte then. On a terminal otherwise, rich styles the
reply and runs a spinner until its first piece -- with the seconds left when the client waits
before trying again (a ``Retry-After``).

rich is imported only when a terminal needs it: ``getgpt --help`` stays fast.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from .text import Texts

__all__ = ["Output", "Received", "no_color", "plain_wanted"]


def no_color(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``NO_COLOR`` asks for no colour: set, and not empty (no-color.org)."""
    return bool((os.environ if environ is None else environ).get("NO_COLOR"))


def plain_wanted(plain_flag: bool, stream: TextIO) -> bool:
    """Whether output to ``stream`` is plain text: asked for, piped, a dumb terminal, or NO_COLOR."""
    return plain_flag or not stream.isatty() or os.environ.get("TERM") == "dumb" or no_color()


class Received:
    """A reply as it reached the screen: its text, and whether Ctrl-C stopped it."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.stopped = False
        self.reasoning = ""
        self.tool_calls: list[dict[str, Any]] = []
        #: Why the reply ended, as the server said (None when it was stopped or said nothing).
        self.finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def cut(self) -> bool:
        """Whether the token limit (``max_tokens``) ended the reply."""
        return self.finish_reason == "length"


class _Waiting:
    """The spinner's words, drawn afresh at each refresh: the seconds left count down by themselves."""

    def __init__(self, texts: Texts) -> None:
        self.texts = texts
        self.until: float | None = None
        self.status: int | None = None

    def words(self) -> str:
        if self.until is None:
            return self.texts("reply.waiting")
        return _retrying(self.texts, max(0, math.ceil(self.until - time.monotonic())), self.status)

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(self.words(), style="dim")


def _retrying(texts: Texts, seconds: int, status: int | None) -> str:
    if status == 429:
        return texts("reply.retry_asked", seconds=seconds)
    if status is not None:
        return texts("reply.retry_status", seconds=seconds, status=status)
    return texts("reply.retry_connect", seconds=seconds)


class Output:
    """Where a reply goes: plain text when piped, rich colours and a spinner on a terminal."""

    def __init__(self, stream: TextIO, pretty: bool, texts: Texts) -> None:
        self.stream = stream
        self.texts = texts
        self.console: Any = None
        self._waiting = _Waiting(texts)
        if pretty:
            try:
                from rich.console import Console
            except ImportError:  # rich comes with the server extra; plain text does without it
                pretty = False
            else:
                self.console = Console(file=stream, highlight=False)
        self.pretty = pretty

    def retrying(self, seconds: float, status: int | None) -> None:
        """The client waits ``seconds`` before trying again (``status``: what it was answered, if
        anything): the spinner counts them down; plain output says it once, when a server asked."""
        if self.console is not None:
            self._waiting.until, self._waiting.status = time.monotonic() + seconds, status
        elif status is not None:
            self.note(_retrying(self.texts, math.ceil(seconds), status))

    def reply(
        self, pieces: Iterator[str], received: Received, before: Callable[[], None] = lambda: None
    ) -> None:
        """Write ``pieces`` as they arrive into ``received``; a spinner runs until the first on a
        terminal. ``before`` runs once the first piece is in (or the reply ended without one),
        before it is written.

        KeyboardInterrupt is left to the caller, with ``received`` holding what was written.
        """
        try:
            if self.console is not None:
                self._waiting.until = None
                with self.console.status(self._waiting, spinner="dots"):
                    first = next(pieces, "")
            else:
                first = next(pieces, "")
            before()
            pieces = _chain(first, pieces)
            write, flush = self.stream.write, self.stream.flush
            with _WholePieces() as whole:
                for piece in pieces:
                    with whole:
                        if self.console is not None:
                            self.console.out(piece, end="", style="bold", highlight=False)
                        else:
                            write(piece)
                        flush()
                        received.pieces.append(piece)
        finally:
            self.end_line(received)

    def end_line(self, received: Received) -> None:
        if received.pieces and not received.text.endswith("\n"):
            self.stream.write("\n")
        self.stream.flush()

    def reasoning(self, text: str) -> None:
        """The model's reasoning: dimmed, or marked when plain, on stderr (it is not the reply)."""
        if not text:
            return
        label = self.texts("reply.reasoning")
        if self.console is not None:
            from rich.console import Console
            from rich.text import Text

            Console(stderr=True, highlight=False).print(Text(f"{label}: {text}", style="dim"))
        else:
            print(f"[{label}] {text}", file=sys.stderr)

    def tool_calls(self, received: Received) -> None:
        """The tool calls the model made, marked, where the reply goes: they are its reply."""
        for call in received.tool_calls:
            function = call.get("function") or {}
            line = self.texts(
                "reply.tool_call", name=function.get("name", "?"), arguments=function.get("arguments", "")
            )
            if self.console is not None:
                from rich.text import Text

                self.console.print(Text(f"→ {line}", style="cyan"))
            else:
                self.stream.write(f"[{line}]\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A remark about the session, to stderr so it never mixes with a reply being piped."""
        if self.console is not None:
            from rich.console import Console
            from rich.text import Text

            Console(stderr=True, highlight=False).print(Text(text, style="dim"))
        else:
            print(text, file=sys.stderr)

    def ask(self) -> str:
        """The next line the user types; raises EOFError at the end of input."""
        if not sys.stdin.isatty():
            return input()
        you = self.texts("session.you")
        if self.console is not None:
            # \001 and \002 tell readline the colour codes take no room, so editing keeps its place.
            return input(f"\001\x1b[1;32m\002{you}\001\x1b[0m\002> ")
        return input(f"{you}> ")


class _WholePieces:
    """Ctrl-C never lands between writing a piece and keeping it, so the text kept is the text seen.

    Entered once around the reply, it takes SIGINT (when Python's own handler has it, in the main
    thread); entered again around each piece, it holds an interrupt back until the piece is written
    and kept, then raises it. Waiting for the next piece, Ctrl-C interrupts at once, as always.
    """

    def __init__(self) -> None:
        self.previous: Any = None
        self.depth = 0
        self.pending = False

    def _interrupt(self, signum: int, frame: Any) -> None:
        if self.depth > 1:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> _WholePieces:
        self.depth += 1
        if self.depth == 1:
            import signal
            import threading

            main = threading.current_thread() is threading.main_thread()
            if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0 and self.previous is not None:
            import signal

            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
        if self.depth == 1 and self.pending:
            self.pending = False
            raise KeyboardInterrupt


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest
