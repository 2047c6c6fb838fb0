"""Driving a reply to the client: the backend's pieces in, the response body out; stopping the
backend when the client goes away, and holding it back while the client reads slowly.

A backend's reply is text pieces (``str``) that the writer turns into events, or -- from a
backend that forwards an upstream's reply (``ReplyOptions.passthrough``) -- bytes that go out as
they came: events already framed, or the body of a whole JSON reply. :func:`deliver` sends a chat
reply; :func:`pass_on` an upstream's response to one of OpenAI's other routes. Both are one
:class:`_Pump`, a small state machine that three tasks share:

- the *producer* task iterates the backend and hands its pieces over;
- the *watcher* task waits for ``http.disconnect`` and then cancels the producer, which closes
  the backend's iterator -- and with it any upstream request -- at once, even while the backend
  is waiting on a slow upstream (a write to a closed socket alone would never notice that);
- the *writer* (the request's own task) sends what was handed over, in one write loop.

Its state (:class:`_State`) moves once: ``RUNNING`` -> ``ENDED`` (the backend ended),
``FAILED`` (it raised, or the drain cut the reply) or ``GONE`` (the client left; from ``ENDED`` or
``FAILED`` too, while the end is being written).

Pieces handed over while a write is under way go out together in the next write, so a fast
backend costs one socket write per batch rather than one per tiny event; a slow one still gets
each piece sent the moment it arrives.

Back-pressure: the bytes waiting to be written to a client are capped per stream
(``stream_buffer_bytes``: what the pump holds, handed over or being sent) and across every reply of
the app (:class:`WriteBudget`, ``write_budget_bytes``: that, and the last write each reply gave the
socket, which uvicorn holds until the client reads it). A stream at its cap, or one holding
anything while the total is spent, stops taking pieces from its backend -- and so stops reading
its upstream, whose connection then stops reading the socket -- until its client reads; a stream
holding nothing may always go on, so clients that read are never held back by those that do not.
The bytes are counted in the producer by a cheap per-piece sum and reported to the budget every
:data:`_STEP` bytes, not per piece.

Nothing is sent before the backend's first piece (or its end): an error the backend raises
before that becomes a plain JSON error with its status; after it, an in-stream error event.

A reply still open when a draining server's grace period ends is *cut*
(:mod:`getgpt.server.operations.drain`): the producer is stopped and the reply ends as if the backend had
raised the drain's error -- an in-stream error event and ``[DONE]`` after the text already sent.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import Message, Receive, Send

from ..api_error import ApiError
from ..edge.responses import STREAM_HEADERS, error_messages, json_messages
from ..operations.drain import Drain
from .wire import DONE, ChunkWriter, Outcome, completion_body, error_event, estimate_tokens

if TYPE_CHECKING:
    from ..operations.prometheus import PrometheusMetrics

__all__ = ["Ending", "ReplyOptions", "ReplySlot", "WriteBudget", "deliver", "pass_on"]

log = logging.getLogger("getgpt.server")

#: Bytes a stream reports to the write budget at a time: how far the budget's count may lag behind
#: what a stream holds (a sum per piece is all the producer does between two reports).
_STEP = 16 * 1024
#: About what a text piece's ``chat.completion.chunk`` event adds around the text (194 bytes with
#: the default model's name), so text held is counted as the bytes it will be sent as.
_EVENT_BYTES = 200
_UNUSED = ChunkWriter("")
_NEVER = sys.maxsize
_BACKEND_FAILED = ApiError(500, "the backend failed", type="server_error", code="backend_error")


def _wake(waiter: asyncio.Future[None], _: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _finished(*tasks: asyncio.Future[None]) -> None:
    """Until each of ``tasks`` is done, however it ended (its exception is not raised here; this
    task's own cancellation is). asyncio.wait without what it needs for a timeout or for the
    first done: 4 us less for two tasks under uvloop, and it runs twice a reply."""
    for task in tasks:
        if not task.done():
            waiter: asyncio.Future[None] = task.get_loop().create_future()
            callback = functools.partial(_wake, waiter)
            task.add_done_callback(callback)
            try:
                await waiter
            finally:
                task.remove_done_callback(callback)


class Ending(enum.Enum):
    """How a reply ended; the value is its ``outcome`` label in ``/metrics``."""

    #: The reply went out whole.
    OK = "ok"
    #: The backend failed (before the first byte: an error response; after it, an error event),
    #: or the drain cut the reply.
    ERROR = "error"
    #: The client went away before the reply's end.
    GONE = "gone"


class ReplySlot(Protocol):
    """What the pump needs of the reply slot its request holds
    (:class:`getgpt.server.admission.slot.Slot`): where the backend's outcome is, the release, and
    -- with the key store on -- where a chat reply's tokens are tallied and who charges them."""

    @property
    def outcome(self) -> Outcome: ...

    #: The completion tokens the backend handed over, estimated (four characters of text a
    #: token; an upstream's events one each; a whole JSON reply four bytes a token): what a
    #: reply that ends without reported usage -- a stream cut mid-way -- is charged.
    sent_tokens: int
    #: Charges the request's key its tokens; :func:`deliver` awaits it as the backend ends,
    #: before the reply's last bytes go out, so the client's next request sees the spend.
    charge: Callable[[], Awaitable[None]] | None

    def release(self, ending: Ending) -> None:
        """Free the slot; the pump calls it once the backend has finished and closed, just before
        the reply's last bytes go out (so a client that read the whole reply finds the slot free)."""
        ...


@dataclass
class ReplyOptions:
    """What the writer needs to know about the reply it sends."""

    model: str
    stream: bool
    include_usage: bool = False
    #: The backend hands over bytes to send as they are, not text to make events of.
    passthrough: bool = False
    #: Characters of the prompt, for a usage estimate when the backend reports none.
    prompt_chars: int = 0


class WriteBudget:
    """The bytes waiting to be written to slow clients, across every reply of one app (the
    ``writes`` budget).

    ``limit`` bytes in all (``write_budget_bytes``), ``per_stream`` for one reply
    (``stream_buffer_bytes``); see the module docstring. Only the event loop's thread touches it.
    """

    def __init__(self, limit: int, per_stream: int, metrics: PrometheusMetrics | None = None) -> None:
        self.limit = limit
        self.per_stream = per_stream
        #: Bytes counted now.
        self.total = 0
        self._waiting: set[_Pump] = set()
        #: With several workers, what adds a change to ``getgpt_budget_used_bytes{budget="writes"}``
        #: (one process reads ``total`` at each exposition instead); ``_shown`` is what it holds.
        self._add_shown = metrics.budget("writes", limit, lambda: self.total) if metrics else None
        self._shown = 0
        self._metrics = metrics

    def _add(self, count: int) -> None:
        before = self.total
        self.total = before + count
        self._show(before)

    def _give_back(self, count: int) -> None:
        before = self.total
        self.total = before - count
        self._show(before)
        if self._waiting and self.total < self.limit:
            for pump in self._waiting:
                pump.room.set()

    def _show(self, before: int) -> None:
        # With several workers the gauge moves in steps of 64 KiB: a fast reply's batches come and
        # go below that without a write to the metric (a multiprocess gauge is a write to a file).
        add = self._add_shown
        if add is not None and (before ^ self.total) >> 16:
            add(self.total - self._shown)
            self._shown = self.total


class _State(enum.Enum):
    RUNNING = "running"  # the backend is producing
    ENDED = "ended"  # the backend ended as it should: what is held goes out with the end
    FAILED = "failed"  # the backend raised, or the drain cut the reply: ``error`` says why
    GONE = "gone"  # the client left: nothing more is written


# The states and endings as plain names: reading a member off its Enum class costs ~0.35 us in
# CPython 3.11, and a reply looks at its state some twenty times (7 us of a 25 us short reply).
_RUNNING, _ENDED, _FAILED, _GONE = _State.RUNNING, _State.ENDED, _State.FAILED, _State.GONE
_OK, _ERROR, _LEFT = Ending.OK, Ending.ERROR, Ending.GONE


Piece = str | bytes
Frame = Callable[[Sequence[Any]], bytes]


class _Pump:
    """One reply on its way out; see the module docstring."""

    __slots__ = (
        "budget",
        "cap",
        "changed",
        "counted",
        "cut_by",
        "error",
        "extra",
        "held",
        "in_flight",
        "last_sent",
        "limit",
        "outcome",
        "producer",
        "producer_waits",
        "released",
        "room",
        "scale",
        "size",
        "state",
        "tallied",
        "tallied_events",
        "tally",
        "watcher",
        "writer_waits",
    )

    def __init__(
        self,
        outcome: Outcome,
        budget: WriteBudget,
        *,
        stream: bool,
        text: bool,
        tally: ReplySlot | None = None,
    ) -> None:
        self.outcome = outcome
        self.budget = budget
        self.state = _RUNNING
        self.error: ApiError | None = None
        self.cut_by: ApiError | None = None  # the drain's error, once it has cut this reply
        # What the producer handed over and the writer has not taken: all text or all bytes.
        self.held: list[Any] = []
        # Their count, each piece's length (and, for text, its event's): the cheap per-piece sum.
        self.size = 0
        self.extra = _EVENT_BYTES if text else 0
        self.scale = 1  # the events each text piece makes (its choices), read at the first stop
        # Where the producer next stops to count: at most _STEP on from the last count, or at every
        # piece while the budget is spent; a text reply's first stop is at its first piece (the
        # backend has said by then how many choices its text stands for). A whole reply is held
        # whole (as the reply it is, not as writes waiting): never counted here.
        self.cap = budget.per_stream
        self.limit = (1 if text else min(_STEP, self.cap)) if stream else _NEVER
        self.counted = 0  # bytes of this reply in the budget's total
        self.in_flight = 0  # bytes of the write under way (a send that has not returned)
        self.last_sent = 0  # bytes of the last write, which uvicorn may still hold
        self.changed = asyncio.Event()  # a piece (while the writer waits), the end, or the client left
        self.writer_waits = False
        self.room = asyncio.Event()  # the writer took or sent what was held, or the budget has room
        self.producer_waits = False
        self.producer: asyncio.Future[None] | None = None
        self.watcher: asyncio.Future[None] | None = None
        self.released = False
        # The slot whose tokens this reply tallies and charges as the backend ends (the key
        # store's), else None: here in the loop that takes each piece already, not in a wrapper
        # of the backend's iterator (an async generator more a piece: ~8 us a request).
        self.tally = tally
        self.tallied = 0  # characters of text, or bytes
        self.tallied_events = 0  # "data:" lines among the bytes

    # --- the producer --------------------------------------------------------------------------

    async def produce(self, pieces: AsyncIterator[Piece]) -> None:
        try:
            tally = self.tally is not None
            events = tally and not self.extra  # bytes (an upstream's): their "data:" lines count
            async for piece in pieces:
                if not piece:
                    continue
                self.held.append(piece)
                size = len(piece)
                self.size += size + self.extra
                if tally:
                    self.tallied += size
                    if events:
                        self.tallied_events += piece.count(b"data:")  # type: ignore[arg-type]
                if self.writer_waits:
                    self.writer_waits = False
                    self.changed.set()
                if self.size >= self.limit:
                    await self._full()
            self._end(_ENDED, None)
        except ApiError as exc:
            # Kept without its traceback: through it the pump would be in a cycle with the frames
            # that raised it -- and what they held, a whole reply read in part -- until a full
            # collection (50 refused whole replies left ~600 MiB to it).
            self._end(_FAILED, exc.with_traceback(None))
        except asyncio.CancelledError:
            if self.cut_by is None:
                raise
            self._end(_FAILED, self.cut_by)  # cut by the drain: its error ends the reply
        except Exception:
            log.exception("backend failed")
            self._end(_FAILED, _BACKEND_FAILED)
        finally:
            self.changed.set()
            closing = getattr(pieces, "aclose", None)
            if closing is not None:
                await closing()
            slot = self.tally
            if slot is not None:
                slot.sent_tokens = self.tallied_events or estimate_tokens(self.tallied)
                if slot.charge is not None:
                    await slot.charge()

    def _end(self, state: _State, error: ApiError | None) -> None:
        if self.state is _RUNNING:
            self.state, self.error = state, error

    async def _full(self) -> None:
        """The producer's stop every :data:`_STEP` bytes: count what this reply holds in the
        budget, and wait while it holds its cap, or holds anything while the total is spent."""
        budget = self.budget
        self.scale = scale = self.outcome.choices
        while True:
            own = self.size * scale + self.in_flight
            unreported = own + self.last_sent - self.counted
            if unreported > 0:
                self.counted += unreported
                budget._add(unreported)
            spent = budget.total >= budget.limit
            if own == 0 or (own < self.cap and not spent):
                self.limit = self.size + (1 if spent else max(1, min(self.cap - own, _STEP) // scale))
                return
            spent = own < self.cap
            metrics = budget._metrics
            if metrics is not None:
                metrics.write_waited("total" if spent else "stream")
            if spent:
                budget._waiting.add(self)
            self.room.clear()
            self.producer_waits = True
            try:
                await self.room.wait()
            finally:
                self.producer_waits = False
                budget._waiting.discard(self)

    # --- the watcher and the drain -------------------------------------------------------------

    async def watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.state = _GONE
        if self.producer is not None:
            self.producer.cancel()
        self.changed.set()
        self.room.set()

    def cut(self, error: ApiError) -> None:
        """End the reply with ``error`` (the drain's), stopping the backend."""
        if self.state is _RUNNING and self.cut_by is None and self.producer is not None:
            self.cut_by = error
            self.producer.cancel()

    # --- the writer ----------------------------------------------------------------------------

    async def first(self) -> None:
        """Until the first piece, the backend's end, or the client's leaving."""
        while self.state is _RUNNING and not self.held:
            self.changed.clear()
            self.writer_waits = True
            await self.changed.wait()

    async def whole(self) -> None:
        """Until the backend's end, or the client's leaving."""
        while self.state is _RUNNING:
            self.changed.clear()
            await self.changed.wait()

    async def write(self, send: Send, first: bytes, frame: Frame) -> bytes | None:
        """The write loop: send what the producer hands over, as it comes, until the backend
        ends. Returns the bytes left to go out with the reply's end (``first`` if nothing was
        sent), or None once the client has left."""
        pending = first
        while True:
            state = self.state
            if state is _GONE:
                return None
            held = self.held
            if state is not _RUNNING:
                return pending + frame(held) if held else pending
            if not held:
                self.changed.clear()
                self.writer_waits = True
                await self.changed.wait()
                continue
            self.held = []
            self.in_flight = self.size * self.scale
            self.size = 0
            await send({"type": "http.response.body", "body": pending + frame(held), "more_body": True})
            pending = b""
            self._sent()

    def _sent(self) -> None:
        # The send returned, so the one before it has left uvicorn's buffer (it writes only below
        # its high-water mark): that one is given back; this one is held until the next returns.
        back = min(self.last_sent, self.counted)
        self.last_sent, self.in_flight = self.in_flight, 0
        if back:
            self.counted -= back
            self.budget._give_back(back)
        if self.producer_waits:
            self.room.set()

    @property
    def ending(self) -> Ending:
        state = self.state
        return _LEFT if state is _GONE else _ERROR if state is _FAILED else _OK

    # --- the whole run ---------------------------------------------------------------------------

    async def run(
        self,
        receive: Receive,
        send: Send,
        pieces: AsyncIterator[Piece],
        respond: Callable[[], Any],
        *,
        slot: ReplySlot,
        drain: Drain | None,
    ) -> None:
        """Start the producer and the watcher, let ``respond`` write all but the end, then release
        ``slot`` and send the end; whatever happens, stop both tasks and give the budget back."""
        producer = self.producer = asyncio.ensure_future(self.produce(pieces))
        watcher = self.watcher = asyncio.ensure_future(self.watch(receive))
        ticket = drain.register(self.cut) if drain is not None else None
        try:
            last: list[Message] = await respond()
            if last:
                await _finished(producer)
                self.released = True
                slot.release(self.ending)
                for message in last:  # the end: usually one message, the error or whole response two
                    await send(message)
        finally:
            if ticket is not None and drain is not None:
                drain.unregister(ticket)
            watcher.cancel()
            if self.state is not _GONE and self.cut_by is None:
                # Once only: a second cancel would interrupt the backend's own clean-up, and with it the
                # closing of the upstream connection (the watcher has already cancelled it when gone).
                producer.cancel()
            await _finished(producer, watcher)
            for task in (producer, watcher):
                if not task.cancelled() and task.exception() is not None:
                    log.error("stream task failed", exc_info=task.exception())
            # The tasks hold the pump through their coroutines: without this the pump, and all a
            # reply held, would wait for the cyclic collector (20 objects a reply).
            self.producer = self.watcher = None
            if self.counted:
                self.budget._give_back(self.counted)
                self.counted = 0
            if not self.released:
                slot.release(self.ending)


async def deliver(
    receive: Receive,
    send: Send,
    pieces: AsyncIterator[Piece],
    reply: ReplyOptions,
    slot: ReplySlot,
    *,
    budget: WriteBudget,
    drain: Drain | None = None,
) -> None:
    """Send the backend's ``pieces`` as ``reply`` says, releasing ``slot`` with how the reply
    ended; return once the backend is closed."""
    outcome = slot.outcome
    tally = slot if slot.charge is not None else None
    pump = _Pump(outcome, budget, stream=reply.stream, text=not reply.passthrough, tally=tally)

    async def stream() -> list[Message]:
        """Send the stream but its end; return the messages that end it (none if the client left)."""
        await pump.first()
        if pump.state is _GONE:
            return []
        if pump.error is not None and not pump.held:
            return error_messages(pump.error)
        await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        passthrough = reply.passthrough
        # A passthrough reply's events are the upstream's: no writer of the server's own is made for
        # it (making one draws a random id: microseconds a request, on the gateway's latency).
        writer = (
            _UNUSED
            if passthrough
            else ChunkWriter(reply.model, include_usage=reply.include_usage, choices=outcome.choices)
        )
        chars = 0
        frame: Frame = b"".join if passthrough else writer.pieces
        if reply.include_usage and not passthrough:

            def counting(texts: Sequence[Any]) -> bytes:
                nonlocal chars
                chars += sum(map(len, texts))
                return writer.pieces(texts)

            frame = counting

        # What the backend left when it ended goes out with the reply's end: one write, not two
        # (on a short reply, socket writes are most of what the server costs).
        rest = await pump.write(send, b"" if passthrough else writer.first(), frame)
        if rest is None:
            return []
        error = pump.error
        if error is not None:
            tail = error_event(error)
            log.warning("stream ended by an error: %s %s", error.status, error.code)
        elif passthrough:
            tail = DONE  # the upstream's own [DONE] was not passed on: the end is the server's to write
        else:
            tail = writer.last(outcome, reply.prompt_chars, chars)
        return [{"type": "http.response.body", "body": rest + tail, "more_body": False}]

    async def whole() -> list[Message]:
        """Wait for the whole reply; return its one JSON response's messages (none if the client left)."""
        await pump.whole()
        if pump.state is _GONE:
            return []
        if pump.error is not None:
            return error_messages(pump.error)
        if reply.passthrough:
            return json_messages(200, b"".join(pump.held))
        text = "".join(pump.held)
        return json_messages(200, completion_body(reply.model, text, outcome, reply.prompt_chars))

    await pump.run(receive, send, pieces, stream if reply.stream else whole, slot=slot, drain=drain)


async def pass_on(
    receive: Receive,
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: AsyncIterator[bytes],
    *,
    slot: ReplySlot,
    budget: WriteBudget,
    drain: Drain | None = None,
) -> None:
    """Send an upstream's response on as it comes: ``status``, ``headers``, then ``body`` read by read.

    The same pump as :func:`deliver`. A body that breaks off ends an event stream with an error
    event (as a chat stream does) and anything else cut short, so the client sees an incomplete
    body, never a complete one. An event stream still open when the ``drain`` cuts it ends with
    the drain's error event, as a chat stream does. Releases ``slot`` as :func:`deliver` does.
    """
    pump = _Pump(slot.outcome, budget, stream=True, text=False)
    events = any(
        name == b"content-type" and value.startswith(b"text/event-stream") for name, value in headers
    )

    async def forwarded() -> list[Message]:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        rest = await pump.write(send, b"", b"".join)
        if rest is None:
            return []
        error = pump.error
        if error is None:
            return [{"type": "http.response.body", "body": rest, "more_body": False}]
        if events:
            log.warning("forwarded stream ended by an error: %s %s", error.status, error.code)
            return [{"type": "http.response.body", "body": rest + error_event(error), "more_body": False}]
        # No way to say it inside a JSON body: the body stays incomplete, and the server closes
        # the connection.
        log.warning("forwarded body broke off: %s", error.message)
        return [{"type": "http.response.body", "body": rest, "more_body": True}]

    # Only an event stream can say it was cut; another body is left its few seconds after the cut.
    await pump.run(receive, send, body, forwarded, slot=slot, drain=drain if events else None)
