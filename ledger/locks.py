"""Leases in the database for periodic tasks ("every periodic job is self-locking in the
DB", docs/architecture.md): at most one holder per name at a time, across processes and hosts.

A lease expires after ``ttl_s`` so a holder that crashed frees it without an operator.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import rows_matched, transaction
from ledger.models import TaskLock, utcnow
from ledger.statements import insert_ignore


def acquire(factory: sessionmaker[Session], name: str, holder: str, ttl_s: float) -> bool:
    """Take lease ``name`` for ``holder`` for ``ttl_s`` seconds; False if someone else
    holds an unexpired lease. Commits at once, so other processes see it."""
    with transaction(factory) as s:
        now = utcnow()
        until = now + timedelta(seconds=ttl_s)
        if insert_ignore(s, TaskLock, name=name, holder=holder, acquired_at=now,
                         expires_at=until) is not None:
            return True
        # Compare-and-set on expiry: of two processes taking over a stale lease, one wins.
        return rows_matched(s.execute(
            update(TaskLock).where(TaskLock.name == name, TaskLock.expires_at < now)
            .values(holder=holder, acquired_at=now, expires_at=until)
            .execution_options(synchronize_session=False))) == 1


def release(factory: sessionmaker[Session], name: str, holder: str) -> None:
    """Give lease ``name`` back (no-op if ``holder`` no longer holds it)."""
    with transaction(factory) as s:
        s.execute(delete(TaskLock).where(TaskLock.name == name, TaskLock.holder == holder)
                  .execution_options(synchronize_session=False))
