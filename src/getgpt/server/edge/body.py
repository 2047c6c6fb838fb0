"""Reading a request body with limits: its content type, its size (enforced while reading), its time,
and the share it takes of the bytes of bodies the server holds at once (:class:`BodyBudget`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from starlette.types import Receive, Scope

from ..api_error import ApiError, try_later
from .connections import body_arrived
from .scope import header

__all__ = ["DECODED_ITEM", "BodyBudget", "ClientGone", "HeldBody", "decoded_size", "read_json_body"]

#: Bytes a decoded JSON object, array or list item takes besides its text, at most (CPython 3.11,
#: 64-bit: an empty dict is 64 bytes, a list 56, a list's slot 8, a short str ~50, an int 28).
DECODED_ITEM = 64


class ClientGone(Exception):
    """The client disconnected before the body arrived: there is no one to answer."""


# asyncio.timeout (3.11+) times the read in the request's own task; wait_for would start another.
_timeout = getattr(asyncio, "timeout", None)


def decoded_size(body: bytes) -> int:
    """What ``body`` (JSON) may take once decoded: its bytes, and :data:`DECODED_ITEM` for each
    ``{``, ``[`` and ``,`` in it (every object, array and item but the first of each).

    Text and base64 decode to about their own size; small items do not: 32 MiB of ``{},`` took
    ~430 MiB decoded (measured), which this counts as ~700 MiB. Three scans of the bytes in C.
    """
    return len(body) + DECODED_ITEM * (body.count(b"{") + body.count(b"[") + body.count(b","))


class BodyBudget:
    """The bytes of request bodies one app holds at once, each from its first byte read until its
    request has been answered (its decoded form lives as long), counted as :func:`decoded_size`
    once whole. A request that would take more than is left is refused ``503`` (``server_busy``)."""

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.used = 0
        #: Called with what each request adds to :attr:`used` once its body is whole, and takes
        #: back when it ends (the /metrics gauge): twice a request, not once a read.
        self.on_change = on_change
        #: Called when a request is refused for want of room (``getgpt_budget_refusals_total``).
        self.on_refusal: Callable[[], None] | None = None

    def hold(self) -> HeldBody:
        """A request's share, empty until its body is read; ``with`` gives it back."""
        return HeldBody(self)

    def busy(self) -> ApiError:
        if self.on_refusal is not None:
            self.on_refusal()
        return try_later(f"the server holds {self.limit} bytes of request bodies already", "server_busy")


class HeldBody:
    """One request's share of a :class:`BodyBudget`."""

    __slots__ = ("budget", "reported", "size")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0
        self.reported = 0

    def take(self, size: int) -> None:
        """Hold ``size`` bytes more, or raise a ``503`` when the budget has not that much left."""
        budget = self.budget
        if budget.used + size > budget.limit:
            raise budget.busy()
        budget.used += size
        self.size += size

    def report(self) -> None:
        on_change = self.budget.on_change
        if on_change is not None and self.size != self.reported:
            on_change(self.size - self.reported)
            self.reported = self.size

    def release(self) -> None:
        budget = self.budget
        budget.used -= self.size
        self.size = 0
        self.report()

    def __enter__(self) -> HeldBody:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _check_type(scope: Scope) -> None:
    kind = (header(scope, b"content-type") or b"").partition(b";")[0].strip().lower()
    if kind != b"application/json":
        sent = kind.decode("latin-1")[:100] or "none"
        raise ApiError(
            415,
            f"the request body must be JSON (Content-Type: application/json), not {sent}",
            code="unsupported_media_type",
        )


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes", code="body_too_large")


async def _read(receive: Receive, limit: int, held: HeldBody | None) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            if held is not None:
                held.take(len(chunk))
            parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def read_json_body(
    scope: Scope, receive: Receive, limit: int, timeout: float, held: HeldBody | None = None
) -> bytes:
    """The body of a JSON request, or an :class:`ApiError` (415, 413, 408, 503), or :class:`ClientGone`.

    With ``held``, the body's bytes are taken from its budget as they arrive (a declared length
    more than is left is refused before any is read), then what the whole body may take once
    decoded; the caller gives them back when the request ends. After an :class:`ApiError` the
    rest of the body is unread: the response must close the connection.
    """
    _check_type(scope)
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise _too_large(limit)
        # Refused at once rather than after the bytes were sent; nothing is held for it yet, so a
        # client cannot keep the budget by only saying how much it will send.
        if held is not None and held.budget.used + int(declared) > held.budget.limit:
            raise held.budget.busy()
    try:
        if body_arrived():
            # All of it is with uvicorn (the usual request, sent in one write): nothing to wait
            # for, so no timer to arm and cancel -- 5.7 us a request under uvloop.
            body = await _read(receive, limit, held)
        elif _timeout is None:
            body = await asyncio.wait_for(_read(receive, limit, held), timeout)
        else:
            async with _timeout(timeout):
                body = await _read(receive, limit, held)
    except asyncio.TimeoutError:
        raise ApiError(
            408, f"the request body did not arrive within {timeout:g} seconds", code="body_timeout"
        ) from None
    if held is not None:
        _take_decoded(held, body)
    return body


def _take_decoded(held: HeldBody, body: bytes) -> None:
    more = decoded_size(body) - len(body)
    budget = held.budget
    if held.size + more > budget.limit:
        raise ApiError(
            413,
            f"the request body would take ~{held.size + more} bytes once decoded (its many small "
            f"objects, arrays and items), more than the {budget.limit} the server gives request bodies",
            code="body_too_complex",
        )
    held.take(more)
    held.report()
