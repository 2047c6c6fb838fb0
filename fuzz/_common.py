"""What the atheris targets and the hypothesis properties share: how an input is cut into the
reads a transport might deliver, and what the reply parser must make of it whatever the cuts."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from getgpt.protocol.errors import GetGptError
from getgpt.protocol.reply import ReplyParser

#: Most reads one input is cut into; more adds little and slows each execution.
MAX_CUTS = 16
_MARKS = 0xFFFF


def fuzz(test_one_input: Callable[[bytes], None]) -> None:
    """Run ``test_one_input`` under atheris with this process's command line (libFuzzer's flags)."""
    import atheris  # only the targets need it, not the properties that share this module

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` cut at ``points`` (offsets within it), in order."""
    parts: list[bytes] = []
    start = 0
    for point in [*sorted(set(points)), len(data)]:
        parts.append(data[start:point])
        start = point
    return parts


def cut(fdp: Any) -> list[bytes]:
    """The rest of ``fdp``'s input (an ``atheris.FuzzedDataProvider``), cut into reads.

    The cut points are drawn first: the provider takes integers from the end of the input and
    bytes from the front, so bytes drawn first would leave nothing to draw the cuts from.
    """
    count = fdp.ConsumeIntInRange(0, MAX_CUTS)
    marks = [fdp.ConsumeIntInRange(0, _MARKS) for _ in range(count)]
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    return split_at(data, [mark * len(data) // _MARKS for mark in marks])


#: Appended to a seed, these bytes make ``cut`` split it at a quarter, a half and three quarters.
CUT_SEED_TAIL = b"\x00\x40\x00\x80\x00\xc0\x03"


def reply_outcome(parts: list[bytes]) -> tuple[object, ...]:
    """Everything a reply parser fed ``parts`` ends with: text, finish reason, usage, done, error.

    Checks on the way that nothing is lost: the error carries every piece, returned or not
    (close() raises IncompleteStream with the last event's text in ``partial`` rather than
    returning it), and the pieces returned are a prefix of the text.
    """
    parser = ReplyParser()
    pieces: list[str] = []
    error: tuple[str, str] | None = None
    try:
        for part in parts:
            pieces += parser.feed(part)
        pieces += parser.close()
    except GetGptError as exc:
        error = (type(exc).__name__, exc.partial)
        assert exc.partial.startswith(parser.text)
    assert parser.text.startswith("".join(pieces))
    return parser.text, parser.finish_reason, parser.usage, parser.done, error
