"""Atheris target: the gateway's event relay. Any bytes, cut into any reads, give events to send on
and at most one ApiError (a 502); the events, the end and the error are the same whatever the cuts
-- the byte-level fast path and the event-by-event way must agree."""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["getgpt"]):
    from _common import cut, fuzz
    from getgpt.protocol.sse import SSEDecoder
    from getgpt.server.api_error import ApiError
    from getgpt.server.upstreams.relay import EventRelay


def outcome(parts: list[bytes]) -> tuple[object, ...]:
    relay = EventRelay(strip_usage=True)
    out = b""
    raised: ApiError | None = None
    try:
        for part in parts:
            out += relay.feed(part)
        out += relay.close()
    except ApiError as exc:
        raised = exc
    error = raised or relay.error
    if error is not None:
        assert error.status == 502, (error.status, error.message)
    events = SSEDecoder().decode(out)
    return events, relay.done, relay.finished, relay.usage, None if error is None else error.code


def test_one_input(data: bytes) -> None:
    parts = cut(atheris.FuzzedDataProvider(data))
    split = outcome(parts)
    whole = outcome([b"".join(parts)])
    if split[-1] is None and whole[-1] is None:
        assert split == whole, (parts, split, whole)


if __name__ == "__main__":
    fuzz(test_one_input)
