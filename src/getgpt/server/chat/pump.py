"""Driving a backend's reply to the client, and stopping it when the client goes away.

A backend's reply is text pieces (``str``) that the writer turns into events, or -- from a
backend that forwards an upstream's reply (``ReplyOptions.passthrough``) -- bytes that go out as
they came: events already framed, or the body of a whole JSON reply.

Three coroutines share a :class:`_Box` per reply:

- the *producer* task iterates the backend and appends its text pieces to the box;
- the *watcher* task waits for ``http.disconnect`` and then cancels the producer, which closes
  the backend's iterator -- and with it any upstream request -- at once, even while the backend
  is waiting on a slow upstream (a write to a closed socket alone would never notice that);
- the *writer* (the request's own task) sends what the box holds.

Pieces that pile up while a write is under way go out together in the next write, so a fast
backend costs one socket write per batch rather than one per tiny event; a slow one still gets
each piece sent the moment it arrives. The producer pauses when a batch grows past
``_HIGH_WATER`` characters of text (or ``_HIGH_WATER_BYTES`` of an upstream's events, about what
that much text makes), so a client that reads slowly cannot make the server buffer a whole reply.

Nothing is sent before the backend's first piece (or its end): an error the backend raises
before that becomes a plain JSON error with its status; after it, an in-stream error event.

A reply still open when a draining server's grace period ends is *cut*
(:mod:`getgpt.server.operations.drain`): the producer is stopped and the reply ends as if the backend had
raised the drain's error -- an in-stream error event and ``[DONE]`` after the text already sent.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import Message, Receive, Send

from ..api_error import ApiError
from ..edge.responses import STREAM_HEADERS, error_messages, json_messages, send_all
from ..operations.drain import Drain
from .wire import DONE, ChunkWriter, Outcome, completion_body, error_event

__all__ = ["Ending", "ReplyOptions", "ReplySlot", "deliver", "pass_on"]

log = logging.getLogger("getgpt.server")

_HIGH_WATER = 16 * 1024
_HIGH_WATER_BYTES = 512 * 1024
_UNUSED = ChunkWriter("")


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
    (:class:`getgpt.server.admission.slot.Slot`): where the backend's outcome is, and the release."""

    @property
    def outcome(self) -> Outcome: ...

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


Piece = str | bytes


class _Box:
    __slots__ = ("cut", "done", "error", "gone", "pieces", "ready", "room", "size")

    def __init__(self) -> None:
        # All text or all bytes, as the reply is (ReplyOptions.passthrough).
        self.pieces: list[Any] = []
        self.size = 0
        self.ready = asyncio.Event()  # pieces waiting, the producer ended, or the client left
        self.room = asyncio.Event()  # the writer took the last batch
        self.room.set()
        self.done = False
        self.error: ApiError | None = None
        self.gone = False
        self.cut: ApiError | None = None  # the drain's error, once it has cut this reply


async def _produce(pieces: AsyncIterator[Piece], box: _Box, streaming: bool, high_water: int) -> None:
    try:
        async for piece in pieces:
            if not piece:
                continue
            box.pieces.append(piece)
            if streaming:
                box.ready.set()
                box.size += len(piece)
                if box.size >= high_water:
                    box.room.clear()
                    await box.room.wait()
    except ApiError as exc:
        box.error = exc
    except asyncio.CancelledError:
        if box.cut is None:
            raise
        box.error = box.cut  # cut by the drain: the reply ends with its error, not as if complete
    except Exception:
        log.exception("backend failed")
        box.error = ApiError(500, "the backend failed", type="server_error", code="backend_error")
    finally:
        box.done = True
        box.ready.set()
        closing = getattr(pieces, "aclose", None)
        if closing is not None:
            await closing()


async def _watch(receive: Receive, box: _Box, producer: asyncio.Future[None]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    box.gone = True
    producer.cancel()
    box.ready.set()
    box.room.set()


async def deliver(
    receive: Receive,
    send: Send,
    pieces: AsyncIterator[Piece],
    reply: ReplyOptions,
    slot: ReplySlot,
    *,
    drain: Drain | None = None,
) -> None:
    """Send the backend's ``pieces`` as ``reply`` says, releasing ``slot`` with how the reply
    ended; return once the backend is closed."""
    outcome = slot.outcome
    box = _Box()
    high_water = _HIGH_WATER_BYTES if reply.passthrough else _HIGH_WATER
    producer = asyncio.ensure_future(_produce(pieces, box, reply.stream, high_water))
    watcher = asyncio.ensure_future(_watch(receive, box, producer))

    def cut(error: ApiError) -> None:
        if not box.done and not box.gone and box.cut is None:
            box.cut = error
            producer.cancel()

    ticket = drain.register(cut) if drain is not None else None
    try:
        if reply.stream:
            last = await _write_stream(send, box, reply, outcome)
        else:
            last = await _write_whole(box, reply, outcome)
        if last:
            await asyncio.wait((producer,))
            slot.release(_ending(box))
            await send_all(send, last)
    finally:
        if ticket is not None and drain is not None:
            drain.unregister(ticket)
        watcher.cancel()
        if not box.gone and box.cut is None:
            # Once only: a second cancel would interrupt the backend's own clean-up, and with it the
            # closing of the upstream connection (the watcher has already cancelled it when gone).
            producer.cancel()
        await asyncio.wait((producer, watcher))
        for task in (producer, watcher):
            if not task.cancelled() and task.exception() is not None:
                log.error("stream task failed", exc_info=task.exception())
        slot.release(_ending(box))


def _ending(box: _Box) -> Ending:
    return Ending.GONE if box.gone else Ending.ERROR if box.error is not None else Ending.OK


async def _write_stream(send: Send, box: _Box, reply: ReplyOptions, outcome: Outcome) -> list[Message]:
    """Send the stream but its end; return the messages that end it (none if the client left)."""
    await box.ready.wait()
    if box.gone:
        return []
    if box.error is not None and not box.pieces:
        return error_messages(box.error)
    await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
    passthrough = reply.passthrough
    # A passthrough reply's events are the upstream's: no writer of the server's own is made for it
    # (making one draws a random id: microseconds a request, on the gateway's latency).
    writer = (
        _UNUSED
        if passthrough
        else ChunkWriter(reply.model, include_usage=reply.include_usage, choices=outcome.choices)
    )
    head = b"" if passthrough else writer.first()
    chars = 0
    while True:
        batch = box.pieces
        if batch and not box.done:
            box.pieces = []
            box.size = 0
            box.room.set()
            if passthrough:
                body = b"".join(batch)
            else:
                if reply.include_usage:
                    chars += sum(map(len, batch))
                body = writer.pieces(batch)
            await send({"type": "http.response.body", "body": head + body, "more_body": True})
            head = b""
            if box.gone:
                return []
            continue
        if box.done:
            break
        box.ready.clear()
        await box.ready.wait()
        if box.gone:
            return []
    # What the backend left when it ended goes out with the reply's end: one write, not two
    # (on a short reply, socket writes are most of what the server costs).
    if batch:
        if passthrough:
            head += b"".join(batch)
        else:
            head += writer.pieces(batch)
            if reply.include_usage:
                chars += sum(map(len, batch))
    if box.error is not None:
        tail = error_event(box.error)
        log.warning("stream ended by an error: %s %s", box.error.status, box.error.code)
    elif passthrough:
        tail = DONE  # the upstream's own [DONE] was not passed on: the end is the server's to write
    else:
        tail = writer.last(outcome, reply.prompt_chars, chars)
    return [{"type": "http.response.body", "body": head + tail, "more_body": False}]


async def _write_whole(box: _Box, reply: ReplyOptions, outcome: Outcome) -> list[Message]:
    """Wait for the whole reply; return the messages of the one JSON response (none if the client left)."""
    while not box.done:
        box.ready.clear()
        await box.ready.wait()
        if box.gone:
            return []
    if box.error is not None:
        return error_messages(box.error)
    if reply.passthrough:
        return json_messages(200, b"".join(box.pieces))
    text = "".join(box.pieces)
    return json_messages(200, completion_body(reply.model, text, outcome, reply.prompt_chars))


async def pass_on(
    receive: Receive,
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: AsyncIterator[bytes],
    *,
    slot: ReplySlot,
) -> None:
    """Send an upstream's answer on as it comes: ``status``, ``headers``, then ``body`` read by read.

    The same watch for the client leaving as :func:`deliver`. A body that breaks off ends an event
    stream with an error event (as a chat stream does) and anything else cut short, so the client
    sees an incomplete body, never a complete one. Releases ``slot`` as :func:`deliver` does.
    """
    box = _Box()
    producer = asyncio.ensure_future(_produce(body, box, True, _HIGH_WATER_BYTES))
    watcher = asyncio.ensure_future(_watch(receive, box, producer))
    events = any(
        name == b"content-type" and value.startswith(b"text/event-stream") for name, value in headers
    )
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        while not box.gone:
            batch = box.pieces
            if batch and not box.done:
                box.pieces = []
                box.size = 0
                box.room.set()
                await send({"type": "http.response.body", "body": b"".join(batch), "more_body": True})
                continue
            if box.done:
                break
            box.ready.clear()
            await box.ready.wait()
        if not box.gone:
            await asyncio.wait((producer,))
            slot.release(_ending(box))
            last = b"".join(box.pieces)
            if box.error is None:
                await send({"type": "http.response.body", "body": last, "more_body": False})
            elif events:
                log.warning("forwarded stream ended by an error: %s %s", box.error.status, box.error.code)
                await send(
                    {"type": "http.response.body", "body": last + error_event(box.error), "more_body": False}
                )
            else:
                # No way to say it inside a JSON body: the body stays incomplete, and the server
                # closes the connection.
                log.warning("forwarded body broke off: %s", box.error.message)
                await send({"type": "http.response.body", "body": last, "more_body": True})
    finally:
        watcher.cancel()
        if not box.gone:
            producer.cancel()
        await asyncio.wait((producer, watcher))
        slot.release(_ending(box))
