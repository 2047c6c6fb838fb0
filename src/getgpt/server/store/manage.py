"""What ``getgpt keys`` and the admin API do to keys: create, revoke, rotate, with their checks.

Both faces call these, so a key made one way reads the same as one made the other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .database import Database
from .keys import PERIODS, KeyRecord, new_key, parse_duration

__all__ = ["KeyNotFound", "create", "revoke", "rotate"]


class KeyNotFound(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key with id {key_id!r}")
        self.key_id = key_id


def _positive(name: str, value: int | None, most: int = 2**31 - 1) -> int | None:
    """A limit: a whole number from 1 to ``most`` (what its column holds on both databases)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if not 1 <= value <= most:
        raise ValueError(f"{name} must be 1 to {most}, not {value}")
    return value


def create(
    *,
    name: str,
    models: Sequence[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    budget_tokens: int | None = None,
    budget_period: str | None = None,
    expires: str | float | None = None,
    now: float | None = None,
) -> tuple[KeyRecord, str]:
    """A new key's record and the key itself (to show once); :class:`ValueError` for bad settings."""
    now = time.time() if now is None else now
    name = name.strip()
    if not name:
        raise ValueError("a key needs a name (--name): who or what it is for")
    if models is not None:
        models = [model.strip() for model in models if model.strip()]
        if not models:
            raise ValueError("models is empty: leave it out to allow every model")
        if any("," in model for model in models):
            raise ValueError("a model name holds no comma")
    if budget_tokens is not None and budget_period is None:
        budget_period = "month"
    if budget_period is not None:
        if budget_tokens is None:
            raise ValueError("budget_period needs budget_tokens")
        if budget_period not in PERIODS:
            raise ValueError(f"budget_period is one of {', '.join(PERIODS)}, not {budget_period!r}")
    expires_at = None
    if expires is not None:
        seconds = parse_duration(expires) if isinstance(expires, str) else float(expires)
        if not seconds > 0:
            raise ValueError("expires must be a positive duration, like 30d")
        expires_at = now + seconds
    key_id, key, digest = new_key()
    record = KeyRecord(
        id=key_id,
        name=name,
        hash=digest,
        models=tuple(models) if models is not None else None,
        rpm=_positive("rpm", rpm),
        tpm=_positive("tpm", tpm),
        budget_tokens=_positive("budget_tokens", budget_tokens, 2**63 - 1),
        budget_period=budget_period,
        created_at=now,
        expires_at=expires_at,
        changed_at=now,
    )
    return record, key


async def revoke(db: Database, key_id: str) -> KeyRecord:
    found = await db.revoke(key_id)
    if found is None:
        raise KeyNotFound(key_id)
    return found


async def rotate(db: Database, key_id: str, grace: str | float = 0.0) -> tuple[KeyRecord, str]:
    """A new key with the old one's name and limits; the old one stays valid ``grace`` longer."""
    old = await db.get_key(key_id)
    if old is None:
        raise KeyNotFound(key_id)
    if old.revoked_at is not None:
        raise ValueError(f"key {key_id} is revoked: create a new one instead")
    seconds = parse_duration(grace) if isinstance(grace, str) else float(grace)
    now = time.time()
    record, key = create(
        name=old.name,
        models=old.models,
        rpm=old.rpm,
        tpm=old.tpm,
        budget_tokens=old.budget_tokens,
        budget_period=old.budget_period,
        expires=(old.expires_at - now) if old.expires_at is not None and old.expires_at > now else None,
        now=now,
    )
    record = record.with_changes(rotated_from=old.id)
    await db.rotate(old, record, now + seconds)
    return record, key
