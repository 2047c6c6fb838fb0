"""What the atheris targets share: cutting one input into the reads a transport might deliver."""

from __future__ import annotations

from typing import Any

#: Most reads one input is cut into; more adds little and slows each execution.
MAX_CUTS = 16


def cut(fdp: Any, data: bytes) -> list[bytes]:
    """``data`` cut at offsets drawn from ``fdp`` (an ``atheris.FuzzedDataProvider``)."""
    count = fdp.ConsumeIntInRange(0, MAX_CUTS)
    points = sorted({fdp.ConsumeIntInRange(0, len(data)) for _ in range(count)})
    parts: list[bytes] = []
    start = 0
    for point in [*points, len(data)]:
        parts.append(data[start:point])
        start = point
    return parts
