"""Stop sequences, applied on the client side.

The GetGpt request has no ``stop`` field (its nine fields never change), and a server that knows
only those refuses one it does not know. So the integrations cut the reply themselves: the text
before the first stop sequence is passed on, and the caller then closes the stream, which makes
the server stop its backend at once. A stop sequence split over several pieces is still found:
the scanner holds back the end of the text that could begin one.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["StopScanner", "stop_list"]


def stop_list(stop: str | Iterable[str] | None) -> list[str]:
    """The non-empty stop sequences of OpenAI's ``stop`` parameter (a string, a list or None)."""
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else list(stop)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"stop sequences must be strings, not {type(item).__name__}")
    return [item for item in items if item]


class StopScanner:
    """Cuts a reply, given piece by piece, before the first of its stop sequences."""

    __slots__ = ("_held", "_longest", "stopped", "stops")

    def __init__(self, stop: str | Iterable[str] | None) -> None:
        self.stops = stop_list(stop)
        self._longest = max((len(s) for s in self.stops), default=0)
        self._held = ""
        #: True once a stop sequence was seen: no more text will be passed on.
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that can be passed on now (possibly ``""``)."""
        if not self.stops:
            return piece
        if self.stopped:
            return ""
        text = self._held + piece
        cut = self._first_stop(text)
        # A longer stop sequence may have begun before the one found and not be whole yet
        # (stops "a\nb" and "\n", text so far "a\n"): the cut waits until it is known.
        begun = len(text) - self._partial_tail(text)
        if cut >= 0 and cut <= begun:
            return self._stop(text, cut)
        self._held = text[begun:]
        return text[:begun]

    def flush(self) -> str:
        """The text held back, once the reply has ended (cut if it holds a stop sequence)."""
        held, self._held = self._held, ""
        if self.stopped:
            return ""
        cut = self._first_stop(held)
        return self._stop(held, cut) if cut >= 0 else held

    def _first_stop(self, text: str) -> int:
        """Where the first whole stop sequence in ``text`` begins, or -1."""
        return min((at for at in (text.find(s) for s in self.stops) if at >= 0), default=-1)

    def _stop(self, text: str, cut: int) -> str:
        self.stopped = True
        self._held = ""
        return text[:cut]

    def _partial_tail(self, text: str) -> int:
        """Length of the longest end of ``text`` that some stop sequence begins with."""
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self.stops):
                return size
        return 0
