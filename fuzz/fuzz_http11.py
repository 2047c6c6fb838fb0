"""Atheris target: the lean HTTP/1.1 path's response reader. Any bytes, cut into any reads, give
only getgpt's TransportError or ProtocolError, and the status, headers, body and whether the
reply is complete do not depend on where the cuts fall."""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["getgpt"]):
    from _common import cut, fuzz
    from getgpt._transports.http11.reader import ResponseReader
    from getgpt.errors import ProtocolError, TransportError


def _outcome(parts: list[bytes]) -> tuple[object, ...]:
    reader = ResponseReader("http://fuzz.test/")
    body = b""
    try:
        for part in parts:
            reader.feed(part)
            body += reader.take()
        reader.eof()
        body += reader.take()
    except (TransportError, ProtocolError) as exc:
        return ("error", type(exc).__name__)
    assert reader.complete
    return reader.status_code, reader.headers, body


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    parts = cut(fdp)
    split = _outcome(parts)
    whole = _outcome([b"".join(parts)])
    # A body cut short is still an error either way; the kind of error may differ (a cut inside a
    # compressed stream can surface as a decoding error), the success must not.
    if split[0] != "error" or whole[0] != "error":
        assert split == whole, (parts, split, whole)


if __name__ == "__main__":
    fuzz(test_one_input)
