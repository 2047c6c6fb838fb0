"""The pump's decisions, driven directly: a client that does not read holds its backend back, the
write budget holds back replies that hold bytes but never one that holds none, and every reply
releases its slot once however it ends. (Over real sockets: tests/chaos/test_unread_replies.py.)"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from starlette.types import Message

from getgpt.server.chat.pump import Ending, ReplyOptions, WriteBudget, deliver
from getgpt.server.chat.wire import Outcome
from getgpt.server.operations.prometheus import PrometheusMetrics

KIB = 1024


class Slot:
    """A reply slot that records its releases."""

    def __init__(self) -> None:
        self.outcome = Outcome()
        self.endings: list[Ending] = []
        self.sent_tokens = 0
        self.charge: Callable[[], Awaitable[None]] | None = None

    def release(self, ending: Ending) -> None:
        self.endings.append(ending)


class Backend:
    """An endless (or ``count``-long) reply of ``piece``, counting what was taken from it."""

    def __init__(self, piece: str | bytes, count: int | None = None) -> None:
        self.piece = piece
        self.count = count
        self.taken = 0
        self.closed = False

    async def pieces(self) -> AsyncIterator[str | bytes]:
        try:
            while self.count is None or self.taken < self.count:
                self.taken += 1
                yield self.piece
                await asyncio.sleep(0)  # an upstream read's worth of waiting
        finally:
            self.closed = True


class Client:
    """The ASGI side of a client: reads (``send`` returns at once) or not (a body ``send`` waits
    until the client reads again), and may leave."""

    def __init__(self, *, reads: bool) -> None:
        self.reading = asyncio.Event()
        if reads:
            self.reading.set()
        self.left = asyncio.Event()
        self.received: list[Message] = []

    async def receive(self) -> Message:
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and not self.reading.is_set():
            # As uvicorn's send waits for the socket to drain, or for the connection to be lost.
            waits = [asyncio.ensure_future(self.reading.wait()), asyncio.ensure_future(self.left.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
        self.received.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.received if m["type"] == "http.response.body")


async def turns(count: int = 200) -> None:
    """Let the event loop run ``count`` times round: every task that can move, moves."""
    for _ in range(count):
        await asyncio.sleep(0)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


STREAM = ReplyOptions(model="m", stream=True, passthrough=True)


def test_a_reply_whose_client_does_not_read_stops_taking_pieces_from_its_backend() -> None:
    async def test() -> None:
        backend, client, slot = Backend(b"x" * KIB), Client(reads=False), Slot()
        budget = WriteBudget(64 * 1024 * KIB, 16 * KIB)
        reply = asyncio.ensure_future(
            deliver(client.receive, client.send, backend.pieces(), STREAM, slot, budget=budget)
        )
        await turns()
        held = backend.taken
        await turns()
        assert backend.taken == held  # it waits for the client, not for the backend
        # The write in flight (a piece) and at most the cap besides, in whole pieces.
        assert held <= 1 + 16 + 1
        assert 0 < budget.total <= 18 * KIB
        client.reading.set()  # the client reads again: the reply goes on
        await turns()
        assert backend.taken > held
        client.left.set()
        await reply
        assert slot.endings == [Ending.GONE] and backend.closed
        assert budget.total == 0  # all given back

    run(test)


@pytest.mark.parametrize(
    ("pieces", "options", "tokens"),
    [
        (["Привет", ", мир", "!"], ReplyOptions(model="m", stream=True), 3),  # 12 characters
        ([b'data: {"a":1}\n\ndata: {"b"', b":2}\n\n", b'data: {"c":3}\n\n'], STREAM, 3),  # 3 events
        ([b'{"id": "x", "choices": [', b"]}"], ReplyOptions(model="m", stream=False, passthrough=True), 7),
    ],
)
def test_a_charged_reply_is_tallied_and_charged_before_its_end_goes_out(
    pieces: list[str | bytes], options: ReplyOptions, tokens: int
) -> None:
    # The key store's charge: the tokens the backend handed over, estimated (text: four
    # characters a token; events: one each; a whole JSON reply: four bytes a token), awaited once
    # the backend has ended and closed, before the reply's last bytes.
    async def test() -> None:
        client, slot = Client(reads=True), Slot()
        closed: list[bool] = []
        seen: list[tuple[int, int, bool]] = []

        async def backend() -> AsyncIterator[str | bytes]:
            try:
                for piece in pieces:
                    yield piece
            finally:
                closed.append(True)

        async def charge() -> None:
            last_sent = any(m.get("more_body") is False for m in client.received)
            seen.append((slot.sent_tokens, len(closed), last_sent))

        slot.charge = charge
        budget = WriteBudget(64 * 1024 * KIB, 16 * KIB)
        await deliver(client.receive, client.send, backend(), options, slot, budget=budget)
        assert seen == [(tokens, 1, False)]
        assert slot.endings == [Ending.OK]
        assert client.received[-1].get("more_body") is False

    run(test)


def test_text_pieces_count_as_the_events_they_make_for_every_choice() -> None:
    async def test() -> None:
        # 4-character pieces, each an event of ~200 bytes, for 3 choices: 16 KiB holds ~27 pieces.
        backend, client, slot = Backend("abcd"), Client(reads=False), Slot()
        slot.outcome.choices = 3
        budget = WriteBudget(64 * 1024 * KIB, 16 * KIB)
        text = ReplyOptions(model="m", stream=True)
        reply = asyncio.ensure_future(
            deliver(client.receive, client.send, backend.pieces(), text, slot, budget=budget)
        )
        await turns()
        assert backend.taken <= 2 * (16 * KIB // (3 * 204)) + 2
        client.left.set()
        await reply

    run(test)


def test_the_write_budget_holds_back_replies_that_hold_bytes_never_one_that_holds_none() -> None:
    async def test() -> None:
        metrics = PrometheusMetrics()
        budget = WriteBudget(32 * KIB, 1024 * KIB, metrics)  # any one reply could take it all
        stalled = [(Backend(b"s" * KIB), Client(reads=False), Slot()) for _ in range(4)]
        replies = [
            asyncio.ensure_future(deliver(c.receive, c.send, b.pieces(), STREAM, s, budget=budget))
            for b, c, s in stalled
        ]
        await turns()
        assert budget.total >= budget.limit  # spent by clients that read nothing
        held = [backend.taken for backend, _, _ in stalled]
        # A client that reads gets a reply ten times the budget while it stays spent.
        backend, client, slot = Backend(b"r" * KIB, count=320), Client(reads=True), Slot()
        await deliver(client.receive, client.send, backend.pieces(), STREAM, slot, budget=budget)
        assert client.body.startswith(b"r" * 320 * KIB) and slot.endings == [Ending.OK]
        assert [backend.taken for backend, _, _ in stalled] == held  # the stalled ones stayed put
        # The budget, and past it for each reply a step the count may lag by (16 KiB), a piece
        # waiting, one being written and one written.
        assert sum(held) <= 32 + 4 * (16 + 3)
        for _, stalled_client, _ in stalled:
            stalled_client.left.set()
        await asyncio.gather(*replies)
        assert budget.total == 0
        waited = {
            labels["reason"]: value
            for metric in metrics.write_waits.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
            for labels, value in [(sample.labels, sample.value)]
        }
        assert waited.get("total", 0) > 0

    run(test)


def test_every_ending_releases_the_slot_once_and_gives_the_budget_back() -> None:
    async def whole(backend: Backend, reads: bool, leave: bool) -> tuple[list[Ending], int]:
        client, slot = Client(reads=reads), Slot()
        budget = WriteBudget(1024 * KIB, 64 * KIB)
        reply = asyncio.ensure_future(
            deliver(client.receive, client.send, backend.pieces(), STREAM, slot, budget=budget)
        )
        await turns()
        if leave:
            client.left.set()
        await reply
        return slot.endings, budget.total

    async def test() -> None:
        assert await whole(Backend(b"ok", count=10), reads=True, leave=False) == ([Ending.OK], 0)
        assert await whole(Backend(b"gone"), reads=False, leave=True) == ([Ending.GONE], 0)
        assert await whole(Backend(b"gone"), reads=True, leave=True) == ([Ending.GONE], 0)

    run(test)


def test_a_finished_reply_leaves_nothing_for_the_cyclic_collector() -> None:
    # The tasks hold their pump through their coroutines; a pump left holding its tasks made 20
    # objects of garbage a reply, kept (with all the reply held) until a full collection.
    async def test() -> None:
        budget = WriteBudget(1024 * KIB, 64 * KIB)
        gc.collect()
        gc.disable()
        try:
            for _ in range(100):
                client, slot = Client(reads=True), Slot()
                pieces = Backend(b"piece", count=3).pieces()
                await deliver(client.receive, client.send, pieces, STREAM, slot, budget=budget)
            assert gc.collect() < 10
        finally:
            gc.enable()

    run(test)
