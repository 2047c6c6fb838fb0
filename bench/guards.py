"""What the gateway's guards of issue 20 cost a request, in CPU time, beside what they guard.

Wall-clock benchmarks on a shared machine move by tens of percent between runs; CPU time
(``time.process_time``, best of several alternating rounds) does not, so each guard is timed
beside the work it sits on, in the same run:

- the duplicate-key test of a ``/v1`` body (``refuse_repeated_keys``) beside ``parse_openai``'s
  own decoding, for a small chat request and a 1,000-message one;
- the forwarding backend's redacting wrapper around its reply (one more async generator, closed
  with the inner one) beside iterating the reply bare, per piece;
- a whole reply read through the budget (``Holding.read``) beside the plain read it replaced
  (``aread_body``), 16 MiB in 64 KiB reads.

``python -m bench.guards [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import msgspec

from getgpt.client.bodies import aread_body
from getgpt.server.api_error import ApiError
from getgpt.server.chat.parsing import parse_openai, refuse_repeated_keys
from getgpt.server.upstreams.budget import ReplyBudget
from getgpt.server.upstreams.redaction import Redaction

from .common import table

__all__ = ["run"]

_decode = msgspec.json.Decoder().decode


def _cpu(work: Callable[[], object], repeat: int) -> float:
    """CPU seconds of one call of ``work``: the best of ``repeat`` timed batches."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def _pair(plain: Callable[[], object], guarded: Callable[[], object], rounds: int) -> tuple[float, float]:
    """The two timed in turn, ``rounds`` times each, best of each."""
    a = b = float("inf")
    for _ in range(rounds):
        a = min(a, _cpu(plain, 1))
        b = min(b, _cpu(guarded, 1))
    return a, b


def _bodies() -> dict[str, bytes]:
    small = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there!"}],
        "stream": True,
        "temperature": 0.2,
    }
    big = {"model": "m", "messages": [{"role": "user", "content": "Привет, мир " * 8}] * 1000}
    return {
        "small chat request (190 B)": msgspec.json.encode(small),
        "1,000 messages (~150 KB)": msgspec.json.encode(big),
    }


class _Reads:
    """A reply read by read, as a transport's response hands it over."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def reads(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


async def _bare(count: int) -> AsyncGenerator[bytes, None]:
    piece = b"data: {}\n\n"
    for _ in range(count):
        yield piece


async def _wrapped(count: int, redaction: Redaction) -> AsyncIterator[bytes]:
    # As ForwardingBackend.stream wraps its relay.
    try:
        async with contextlib.aclosing(_bare(count)) as pieces:
            async for piece in pieces:
                yield piece
    except ApiError as exc:
        raise redaction.error(exc) from None


async def _drain(pieces: AsyncIterator[bytes]) -> int:
    seen = 0
    async for _ in pieces:
        seen += 1
    return seen


def run(quick: bool = False) -> str:
    rounds = 3 if quick else 7
    loops = 200 if quick else 2_000
    rows = []
    for name, body in _bodies().items():

        def plain(body: bytes = body) -> None:
            for _ in range(loops):
                parse_openai(body, 10_000)

        def guard(body: bytes = body) -> None:
            for _ in range(loops):
                refuse_repeated_keys(body)

        parse, check = _pair(plain, guard, rounds)
        rows.append(
            [
                f"duplicate-key test, {name}",
                f"{check / loops * 1e6:.2f} us",
                f"parse_openai (with it) {parse / loops * 1e6:.2f} us",
                f"{check / parse:.0%}",
            ]
        )
    pieces = 20_000 if quick else 200_000
    redaction = Redaction("http://user:secret@127.0.0.1:9/v1", "sk-bench")
    bare, wrapped = _pair(
        lambda: asyncio.run(_drain(_bare(pieces))),
        lambda: asyncio.run(_drain(_wrapped(pieces, redaction))),
        rounds,
    )
    # Each contender must have done the same work: every piece, the same bytes.
    if asyncio.run(_drain(_wrapped(pieces, redaction))) != pieces:
        raise AssertionError("the wrapper lost pieces")
    rows.append(
        [
            "redacting wrapper around a reply, per piece",
            f"{(wrapped - bare) / pieces * 1e6:.3f} us",
            f"the bare reply {bare / pieces * 1e6:.3f} us a piece",
            f"{(wrapped - bare) / bare:.0%}",
        ]
    )
    size = (1 if quick else 16) << 20
    reply = _Reads([b"x" * 65536] * (size // 65536))
    budget = ReplyBudget(1 << 30)

    async def held() -> bytes:
        with budget.holding() as holding:
            return await holding.read(reply, size)  # type: ignore[arg-type]

    old, new = _pair(
        lambda: asyncio.run(aread_body(reply, size)),  # type: ignore[arg-type]
        lambda: asyncio.run(held()),
        rounds,
    )
    if asyncio.run(held()) != asyncio.run(aread_body(reply, size)) or budget.held:  # type: ignore[arg-type]
        raise AssertionError("the budget's read is not the plain read's body, or kept some of it")
    rows.append(
        [
            f"whole reply of {size >> 20} MiB through the budget",
            f"{(new - old) * 1e3:+.2f} ms",
            f"the plain read {old * 1e3:.2f} ms",
            f"{(new - old) / old:+.0%}",
        ]
    )
    return "\n".join(
        [
            "## Issue 20's guards, in CPU time",
            "",
            f"best of {rounds} alternating rounds, time.process_time",
            "",
            table(["guard", "costs", "beside", "share"], rows),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(run(args.quick))


if __name__ == "__main__":
    main()
