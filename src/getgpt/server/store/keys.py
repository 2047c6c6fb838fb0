"""API keys: their form, their hash, what a key may do, and the periods its budget counts in.

A key reads ``gg-<id>-<secret>``: ``id`` is 12 hex digits, readable in the key itself so a log
line or a bill can name the key without its secret; ``secret`` is 32 random bytes (256 bits) in
URL-safe base64. Only SHA-256 of the whole key is stored. A slow password hash would add nothing
here: it guards guessable secrets, and 256 random bits cannot be guessed; a fast hash keeps a
cache miss cheap. A presented key's hash is compared with the stored one in constant time.

Budget periods are calendar periods in UTC: ``day`` resets at 00:00, ``month`` on the first of
the month at 00:00, ``total`` never.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

__all__ = [
    "PERIODS",
    "KeyRecord",
    "day_of",
    "hash_key",
    "new_key",
    "parse_duration",
    "period_end",
    "period_start",
    "split_key",
]

PREFIX = "gg-"
ID_LENGTH = 12
PERIODS = ("day", "month", "total")
_KEY = re.compile(r"gg-([0-9a-f]{12})-([A-Za-z0-9_-]{43})")


def new_key() -> tuple[str, str, bytes]:
    """A fresh key: its id, the whole key (shown once), and the hash that is stored."""
    key_id = secrets.token_hex(ID_LENGTH // 2)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    key = f"{PREFIX}{key_id}-{secret}"
    return key_id, key, hash_key(key)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii", "replace")).digest()


def split_key(token: str) -> str | None:
    """The id of a key of this store's form, or None for anything else (a GETGPT_API_KEYS key)."""
    found = _KEY.fullmatch(token)
    return found.group(1) if found else None


@dataclass(frozen=True)
class KeyRecord:
    """One key as the store keeps it: never its secret, only the secret's hash."""

    id: str
    name: str
    hash: bytes = field(repr=False)
    models: tuple[str, ...] | None = None  # None: every model
    rpm: int | None = None
    tpm: int | None = None
    budget_tokens: int | None = None
    budget_period: str | None = None  # day, month or total, with budget_tokens
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    rotated_from: str | None = None
    changed_at: float = 0.0

    def matches(self, key: str) -> bool:
        """Whether ``key`` is this record's key (its hash compared in constant time)."""
        return hmac.compare_digest(hash_key(key), self.hash)

    def refusal(self, now: float) -> str | None:
        """Why the key cannot be used now (``revoked``, ``expired``), or None."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return None

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def public(self, now: float | None = None) -> dict[str, object]:
        """What the admin API and ``keys list`` show of it: everything but the hash."""
        now = time.time() if now is None else now
        return {
            "id": self.id,
            "name": self.name,
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_tokens": self.budget_tokens,
            "budget_period": self.budget_period,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "rotated_from": self.rotated_from,
            "status": self.refusal(now) or "active",
        }

    def with_changes(self, **changes: object) -> KeyRecord:
        return replace(self, **changes)  # type: ignore[arg-type]


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def day_of(when: float) -> str:
    """The UTC day of a time, as the spend table keys it: ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%d")


def period_start(period: str, now: float) -> str:
    """The first UTC day a budget of ``period`` counts from, as ``YYYY-MM-DD``."""
    day = datetime.fromtimestamp(now, timezone.utc)
    if period == "day":
        return day.strftime("%Y-%m-%d")
    if period == "month":
        return day.strftime("%Y-%m-01")
    return "0000-00-00"


def period_end(period: str, now: float) -> float | None:
    """When a budget of ``period`` resets next (a Unix time), or None for ``total``."""
    day = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return (day + timedelta(days=1)).timestamp()
    if period == "month":
        first = day.replace(day=1)
        return (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else first.replace(month=first.month + 1)
        ).timestamp()
    return None


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (a bare number is seconds)."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit is not None else text
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m or 45s") from None
    if not value >= 0:
        raise ValueError(f"a duration must not be negative, not {text!r}")
    return value * (unit or 1)
