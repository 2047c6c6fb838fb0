"""Which of an upstream's statuses the server may pass on to its client, and the 502 for the rest.

A status goes out on the client's connection as the server's own, so it must be one the server
can answer with a body: an upstream's ``304 Not Modified`` passed on with a JSON body left bytes
on the client's keep-alive connection that its next request read as its status line ("illegal
status line" in httpx and the openai SDK); a ``205`` went out chunked; a status of 600 or 999 made
uvicorn fail to write any answer at all. So a final 1xx (an interim one -- 100, 103 -- is read
past by the transports), ``204 No Content``, ``205 Reset Content``, ``304 Not Modified`` and
anything outside 100-599 is the upstream failing the server: a 502 saying which status it sent.
"""

from __future__ import annotations

from ..api_error import ApiError

__all__ = ["BODILESS", "refused_status"]

#: Statuses whose answer has no body (RFC 9110): none can carry the relayed reply or its error.
BODILESS = frozenset({204, 205, 304})


def refused_status(status: int, upstream: str = "the upstream") -> ApiError | None:
    """The server's 502 for an upstream's ``status`` it cannot pass on, or None when it can."""
    if 200 <= status <= 599 and status not in BODILESS:
        return None
    if not 100 <= status <= 599:
        why = "which is no HTTP status (100-599)"
    elif status < 200:
        why = "an interim status, as its final answer"
    else:
        why = "a status that carries no body, so no reply"
    return ApiError(
        502,
        f"{upstream} answered HTTP {status}, {why}",
        type="upstream_error",
        code="bad_upstream_status",
    )
