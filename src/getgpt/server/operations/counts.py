"""The counts ``GET /healthz`` reports: reply slots held and taken, refusals, failures, tokens.

``/metrics`` has the same and more as Prometheus series (:mod:`getgpt.server.operations.prometheus`);
these are the process's own plain numbers, for a liveness check or a person with ``curl``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...protocol.reply import Usage

__all__ = ["Counts"]

#: The names ``/healthz`` gave two counts before they were named for what they count; kept
#: beside the new ones for one release (0.2), then gone.
OLD_NAMES = {"active_streams": "active_slots", "streams_total": "admitted_total"}


@dataclass
class Counts:
    """Kept in ``app.state.counts``. Only the event loop's thread touches it, so no lock is needed."""

    #: Requests holding a reply slot now: chat requests, streamed or not, and forwarded ones.
    active_slots: int = 0
    #: Requests admitted (given a reply slot) since start.
    admitted_total: int = 0
    #: Requests refused before a backend ran (bad input, limits, checks).
    rejected_total: int = 0
    #: Replies that ended with an error from the backend.
    failed_total: int = 0
    #: Replies whose client went away before they ended.
    disconnects_total: int = 0
    #: Tokens the backend reported (an upstream's real counts, the echo's own), prompt and reply.
    prompt_tokens_total: int = 0
    completion_tokens_total: int = 0

    def count_usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self.prompt_tokens_total += usage.prompt_tokens or 0
            self.completion_tokens_total += usage.completion_tokens or 0

    def snapshot(self) -> dict[str, int]:
        counts = {
            "active_slots": self.active_slots,
            "admitted_total": self.admitted_total,
            "rejected_total": self.rejected_total,
            "failed_total": self.failed_total,
            "disconnects_total": self.disconnects_total,
            "prompt_tokens_total": self.prompt_tokens_total,
            "completion_tokens_total": self.completion_tokens_total,
        }
        for old, new in OLD_NAMES.items():
            counts[old] = counts[new]
        return counts
