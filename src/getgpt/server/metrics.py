"""Counters the server reports on ``GET /healthz``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metrics"]


@dataclass
class Metrics:
    """Kept in ``app.state.metrics``. Only the event loop's thread touches it, so no lock is needed."""

    #: Chat requests being answered now, streamed or not, on both chat endpoints.
    active_streams: int = 0
    #: Chat requests admitted since start.
    streams_total: int = 0
    #: Chat requests refused before a backend ran (bad input, limits, checks).
    rejected_total: int = 0
    #: Replies that ended with an error from the backend.
    failed_total: int = 0
    #: Streams whose client went away before the reply ended.
    disconnects_total: int = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "active_streams": self.active_streams,
            "streams_total": self.streams_total,
            "rejected_total": self.rejected_total,
            "failed_total": self.failed_total,
            "disconnects_total": self.disconnects_total,
        }
