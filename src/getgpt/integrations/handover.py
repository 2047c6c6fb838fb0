"""Handing one reply over to a framework: stop sequences applied, nothing lost when it fails.

The client hands a failed reply's text to its error (``partial``), including the text read
together with the error that was never yielded as a piece. A framework only hands on what it
was given as pieces (LiteLLM builds its own error and counts the text it saw), so the handover
yields that rest before the error is raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

from ..client import AsyncChatStream, ChatStream
from ..protocol.errors import GetGptError
from .stops import StopScanner

__all__ = ["Handover"]


class Handover:
    """The text of one reply as it may be passed on; see the module's documentation."""

    __slots__ = ("_read", "stops")

    def __init__(self, stop: str | Iterable[str] | None = None) -> None:
        self.stops = StopScanner(stop)
        self._read = 0

    @property
    def stopped(self) -> bool:
        """True once a stop sequence ended the reply: the caller closes the stream."""
        return self.stops.stopped

    def piece(self, piece: str) -> str:
        """What to pass on of the next piece the client yielded (possibly ``""``)."""
        self._read += len(piece)
        return self.stops.feed(piece)

    def rest(self, error: GetGptError) -> str:
        """What to pass on of the text ``error`` carries beyond the pieces already read."""
        unread = error.partial[self._read :]
        self._read += len(unread)
        return self.stops.feed(unread) + self.stops.flush()

    def tail(self) -> str:
        """What the stop scanner held back, once the reply has ended."""
        return self.stops.flush()

    def texts(self, reply: ChatStream) -> Iterator[str]:
        """What to pass on of ``reply``, piece by piece (never ``""``), up to a stop sequence.

        When the reply fails, what its error carries beyond the pieces comes first, then the
        error. The stop scanner's held-back text is left to :meth:`tail` (a framework may want
        it in its last chunk).
        """
        try:
            for piece in reply:
                text = self.piece(piece)
                if text:
                    yield text
                if self.stopped:
                    return
        except GetGptError as exc:
            rest = self.rest(exc)
            if rest:
                yield rest
            raise

    # The async twin of texts().
    async def atexts(self, reply: AsyncChatStream) -> AsyncIterator[str]:
        """As :meth:`texts`, for an async reply."""
        try:
            async for piece in reply:
                text = self.piece(piece)
                if text:
                    yield text
                if self.stopped:
                    return
        except GetGptError as exc:
            rest = self.rest(exc)
            if rest:
                yield rest
            raise

    def finish_reason(self, reply: ChatStream | AsyncChatStream) -> str | None:
        """``"stop"`` when a stop sequence ended the reply, else what the server said."""
        return "stop" if self.stopped else reply.finish_reason
