"""What the gateway's guards of issue 20 cost a request, in CPU time, beside what they guard.

Wall-clock benchmarks on a shared machine move by tens of percent between runs; CPU time
(``time.process_time``, best of several alternating rounds) does not, so each guard is timed
beside the work it sits on, in the same run:

- the duplicate-key test of a ``/v1`` body (``refuse_repeated_keys``) beside ``parse_openai``'s
  own decoding, for a small chat request and a 1,000-message one;
- the redaction of an upstream's error (its message and a 4 KiB error body) beside making the
  error alone: it runs where such an error is made, on the error path only, so a reply's pieces
  pay nothing for it;
- a whole reply read through the budget (``Holding.read``) beside the plain read it replaced
  (``aread_body``), 16 MiB in 64 KiB reads.

``python -m bench.guards [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def _drain(pieces: AsyncIterator[bytes]) -> int:
    seen = 0
    async for _ in pieces:
        seen += 1
    return seen


def run(quick: bool = False, *, rounds: int | None = None, loops: int | None = None) -> str:
    """``rounds`` (7, 3 quick) and ``loops`` (parses a timed call: 2,000, 200 quick; ten times as
    many errors made) given: those sizes instead (a smoke test's)."""
    rounds = rounds or (3 if quick else 7)
    loops = loops or (200 if quick else 2_000)
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
    errors = 10 * loops
    redaction = Redaction("http://user:secret@127.0.0.1:9/v1", "sk-bench")
    quoted = (
        b'{"error": {"message": "bad request", "echo": "Bearer sk-bench", "pad": "' + b"x" * 4000 + b'"}}'
    )
    message = "upstream answered HTTP 400: bad request"

    def made() -> list[ApiError]:
        return [ApiError(400, message, body=quoted) for _ in range(errors)]

    def redacted() -> list[ApiError]:
        return [
            redaction.error(ApiError(400, "upstream answered HTTP 400: bad request", body=quoted))
            for _ in range(errors)
        ]

    plain_errors, redacted_errors = _pair(made, redacted, rounds)
    # Each contender must have done its work: the key gone from the body, the rest kept.
    sample = redacted()[0]
    if sample.body is None or b"sk-bench" in sample.body or len(sample.body) < 4000:
        raise AssertionError("the redaction did not take the key out, or took more")
    rows.append(
        [
            "redaction of an upstream error (4 KiB body)",
            f"{(redacted_errors - plain_errors) / errors * 1e6:.2f} us",
            f"making the error {plain_errors / errors * 1e6:.2f} us",
            f"{(redacted_errors - plain_errors) / plain_errors:.0%}",
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
