"""Counters the server reports on ``GET /healthz``."""

from __future__ import annotations

from dataclasses import dataclass

from ...protocol.reply import Usage

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
    #: Tokens the backend reported (an upstream's real counts, the echo's own), prompt and reply.
    prompt_tokens_total: int = 0
    completion_tokens_total: int = 0

    def count_usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self.prompt_tokens_total += usage.prompt_tokens or 0
            self.completion_tokens_total += usage.completion_tokens or 0

    def snapshot(self) -> dict[str, int]:
        return {
            "active_streams": self.active_streams,
            "streams_total": self.streams_total,
            "rejected_total": self.rejected_total,
            "failed_total": self.failed_total,
            "disconnects_total": self.disconnects_total,
            "prompt_tokens_total": self.prompt_tokens_total,
            "completion_tokens_total": self.completion_tokens_total,
        }
