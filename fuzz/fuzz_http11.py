"""Atheris target: the lean HTTP/1.1 path's response reader, two ways.

Raw bytes (mode 0): any bytes, cut into any reads, with or without compression asked for, give
only getgpt's TransportError or ProtocolError (LimitExceeded among them); the status, headers, body
and whether the reply is complete do not depend on where the cuts fall; no decoded piece is
larger than the decoder's bound.

A built reply (mode 1), the header path and decompression: a head of fuzzer-chosen headers (names
that repeat, so values are joined), a body compressed or not, asked for or not, cut anywhere. The
reader must give exactly the headers (repeated ones joined in order) and the body, or the one
typed error the bounds call for: LimitExceeded past MAX_HEADERS or MAX_HEAD_BYTES, a ProtocolError
for a coding not asked for.
"""

from __future__ import annotations

import gzip
import zlib

import atheris

with atheris.instrument_imports(include=["getgpt"]):
    from _common import cut, fuzz, split_at
    from getgpt._transports.decoding import PIECE, accepted
    from getgpt._transports.http11.reader import MAX_HEAD_BYTES, MAX_HEADERS, ResponseReader
    from getgpt.protocol.errors import LimitExceeded, ProtocolError, TransportError

URL = "http://fuzz.test/"
ALL = accepted({"Accept-Encoding": "gzip, deflate"})
NAMES = ["X-A", "x-a", "Set-Cookie", "X-B", "Link", "Cache-Control"]
VISIBLE = bytes(range(0x21, 0x7F))


def _read(reader: ResponseReader, parts: list[bytes]) -> bytes:
    body = b""
    decoding = bool(reader.asked)

    def take() -> bytes:
        out = b""
        while True:
            piece = reader.take()
            assert len(piece) <= PIECE or not decoding, len(piece)
            out += piece
            if not reader.more:
                return out

    for part in parts:
        reader.feed(part)
        body += take()
    reader.eof()
    return body + take()


def _outcome(parts: list[bytes], asked: frozenset[str]) -> tuple[object, ...]:
    reader = ResponseReader(URL, asked)
    try:
        body = _read(reader, parts)
    except (TransportError, ProtocolError) as exc:
        return ("error", type(exc).__name__)
    assert reader.complete
    return reader.status_code, reader.headers, body


def _raw(fdp: atheris.FuzzedDataProvider) -> None:
    asked = ALL if fdp.ConsumeBool() else frozenset()
    parts = cut(fdp)
    split = _outcome(parts, asked)
    whole = _outcome([b"".join(parts)], asked)
    # A body cut short is still an error either way; the kind of error may differ (a cut inside a
    # compressed stream can surface as a decoding error), the success must not.
    if split[0] != "error" or whole[0] != "error":
        assert split == whole, (parts, split, whole)


def _built(fdp: atheris.FuzzedDataProvider) -> None:
    coding = ["", "gzip", "deflate"][fdp.ConsumeIntInRange(0, 2)]
    asked = ALL if fdp.ConsumeBool() else frozenset()
    fields: list[tuple[str, str]] = []
    for _ in range(fdp.ConsumeIntInRange(0, MAX_HEADERS + 8)):
        name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
        value = bytes(VISIBLE[b % len(VISIBLE)] for b in fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 300)))
        fields.append((name, value.decode() or "v"))
    cuts = [fdp.ConsumeIntInRange(0, 1 << 16) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    packed = {"": body, "gzip": gzip.compress(body), "deflate": zlib.compress(body)}[coding]
    framing = [("Content-Length", str(len(packed)))] + ([("Content-Encoding", coding)] if coding else [])
    head = "".join(f"{name}: {value}\r\n" for name, value in fields + framing)
    wire = b"HTTP/1.1 200 OK\r\n" + head.encode() + b"\r\n" + packed
    outcome = _outcome(split_at(wire, [c % (len(wire) + 1) for c in cuts]), asked)
    every = fields + framing
    size = len("OK") + sum(len(n) + len(v) + 4 for n, v in every)
    if len(every) > MAX_HEADERS or size > MAX_HEAD_BYTES:
        assert outcome == ("error", LimitExceeded.__name__), outcome
        return
    if outcome == ("error", LimitExceeded.__name__):
        # Counted as the bytes arrive, a head whose wire form (status line and line ends
        # included) passes the bound may be stopped before its headers are counted exactly.
        assert len(wire) - len(packed) > MAX_HEAD_BYTES, (len(wire), len(packed))
        return
    if coding and coding not in asked and packed:
        assert outcome == ("error", ProtocolError.__name__), outcome
        return
    expected: dict[str, list[str]] = {}
    for name, value in every:
        expected.setdefault(name.lower(), []).append(value)
    assert outcome == (200, {k: ", ".join(v) for k, v in expected.items()}, body), (fields, outcome)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 1):
        _built(fdp)
    else:
        _raw(fdp)


if __name__ == "__main__":
    fuzz(test_one_input)
