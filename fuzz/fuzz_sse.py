"""Atheris target: the SSE decoder. Any bytes, cut into any reads, give only ProtocolError, and the
events do not depend on where the cuts fall."""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["getgpt"]):
    from _common import cut, fuzz
    from getgpt.protocol.errors import ProtocolError
    from getgpt.protocol.sse import SSEDecoder

# Small limits reach the oversize paths with small inputs; the default checks the rest.
LIMITS = (8, 64, 1 << 20)


def _events(parts: list[bytes], limit: int) -> list[bytes] | None:
    decoder = SSEDecoder(limit)
    events: list[bytes] = []
    try:
        for part in parts:
            events += decoder.decode(part)
        events += decoder.flush()
    except ProtocolError:
        return None
    return events


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    limit = fdp.PickValueInList(list(LIMITS))
    parts = cut(fdp)
    split = _events(parts, limit)
    if limit == LIMITS[-1]:
        # Under a limit no input reaches, one read and many reads must agree exactly.
        whole = _events([b"".join(parts)], limit)
        assert split == whole, (parts, split, whole)


if __name__ == "__main__":
    fuzz(test_one_input)
