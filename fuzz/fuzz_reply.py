"""Atheris target: the reply parser. Any bytes, cut into any reads, give only getgpt errors; text,
finish_reason, usage and the error are the same whatever the cuts; feed_json likewise."""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports(include=["getgpt"]):
    from _common import cut, fuzz, reply_outcome
    from getgpt.protocol.errors import GetGptError
    from getgpt.protocol.reply import ReplyParser


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 7) == 0:
        with contextlib.suppress(GetGptError):
            "".join(ReplyParser().feed_json(fdp.ConsumeBytes(fdp.remaining_bytes())))
        return
    parts = cut(fdp)
    split = reply_outcome(parts)
    whole = reply_outcome([b"".join(parts)])
    assert split == whole, (parts, split, whole)


if __name__ == "__main__":
    fuzz(test_one_input)
