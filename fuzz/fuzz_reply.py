"""Atheris target: the reply parser. Any bytes, cut into any reads, give only getgpt errors; text,
finish_reason, usage and the error are the same whatever the cuts; feed_json likewise."""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["getgpt"]):
    from _common import cut
    from getgpt.errors import GetGptError
    from getgpt.reply import ReplyParser


def _outcome(parts: list[bytes]) -> tuple[object, ...]:
    parser = ReplyParser()
    pieces: list[str] = []
    error: tuple[str, str] | None = None
    try:
        for part in parts:
            pieces += parser.feed(part)
        pieces += parser.close()
    except GetGptError as exc:
        error = (type(exc).__name__, exc.partial)
        # Nothing is lost: the error carries every piece, returned or not (close() raises
        # IncompleteStream with the last event's text in ``partial`` rather than returning it).
        assert exc.partial.startswith(parser.text)
    assert parser.text.startswith("".join(pieces))
    return parser.text, parser.finish_reason, parser.usage, parser.done, error


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 7) == 0:
        with contextlib.suppress(GetGptError):
            "".join(ReplyParser().feed_json(fdp.ConsumeBytes(fdp.remaining_bytes())))
        return
    parts = cut(fdp, fdp.ConsumeBytes(fdp.remaining_bytes()))
    split = _outcome(parts)
    whole = _outcome([b"".join(parts)])
    assert split == whole, (parts, split, whole)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
