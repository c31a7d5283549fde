"""API keys for the app's ``/v1`` API, created and revoked by operators.

A key is ``gpb_{id}_{secret}``: ``id`` (16 hex chars) is public and names the row, so a
request finds its key by primary key (no table scan, no timing side channel across
keys); ``secret`` is 256 random bits. Only ``sha256(key)`` is stored — for a
high-entropy random key a fast hash is enough (nothing to brute-force), and a leaked
table grants no access. Digests are compared with ``hmac.compare_digest``. The full key
exists only in ``create``'s return value: shown once, never stored.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger.models import ApiKey, utcnow

PREFIX = "gpb"
_FORMAT = re.compile(rf"^{PREFIX}_([0-9a-f]{{16}})_[A-Za-z0-9_-]{{43}}$")


class UnknownKey(LookupError):
    """No API key with that id."""


@dataclass(frozen=True, slots=True)
class NewKey:
    """A created key: ``key`` is the secret to hand over, shown once."""

    id: str
    name: str
    key: str


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(presented: str) -> str | None:
    """The id inside a well-formed key, else None."""
    m = _FORMAT.match(presented)
    return m.group(1) if m else None


def create(s: Session, *, name: str, created_by: str) -> NewKey:
    """Store a new key named ``name`` (1–100 chars); returns it with its secret.
    Raises ``ValueError`` for an empty or too long name."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise ValueError("name must be 1 to 100 characters")
    kid = secrets.token_hex(8)
    key = f"{PREFIX}_{kid}_{secrets.token_urlsafe(32)}"
    s.add(ApiKey(id=kid, name=name, secret_sha256=_digest(key), created_by=created_by[:100],
                 created_at=utcnow()))
    s.flush()
    return NewKey(kid, name, key)


def list_keys(s: Session, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, oldest first (no secrets: only digests are stored)."""
    q = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        q = q.where(ApiKey.revoked_at.is_(None))
    return list(s.scalars(q))


def revoke(s: Session, kid: str) -> ApiKey:
    """Revoke key ``kid`` (idempotent: an already revoked key keeps its first time).
    Raises ``UnknownKey``."""
    s.execute(update(ApiKey).where(ApiKey.id == kid, ApiKey.revoked_at.is_(None))
              .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
    row = s.get(ApiKey, kid, populate_existing=True)
    if row is None:
        raise UnknownKey(kid)
    return row


def verify(s: Session, presented: str) -> str | None:
    """The id of the live key ``presented`` is, or None (malformed, unknown, wrong
    secret or revoked)."""
    kid = key_id(presented)
    if kid is None:
        return None
    row = s.get(ApiKey, kid)
    # Compare even when the row is missing, so timing does not tell ids apart.
    stored = row.secret_sha256 if row is not None else "0" * 64
    if hmac.compare_digest(stored, _digest(presented)) and row is not None and row.revoked_at is None:
        return kid
    return None
