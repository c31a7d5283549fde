"""Operators (issue 5): API keys, audited adjustments, reconcile runs, task locks."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, BigId, utcnow


class ApiKey(Base):
    """An app API key. Only the SHA-256 of the whole key is stored; the key carries its
    public ``id`` (``gpb_{id}_{secret}``), so a request finds its row by primary key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class Adjustment(Base):
    """Audit of an operator's adjustment: who, why, and the transaction it made."""

    __tablename__ = "adjustments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"), unique=True)
    op_key: Mapped[str] = mapped_column(String(200), unique=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # credits, signed (+ credits the wallet)
    allow_debt: Mapped[bool] = mapped_column(Boolean)
    operator: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ReconcileRun(Base):
    """One reconciliation of the whole ledger: per-check summary and violation count.
    ``run_key`` (e.g. ``nightly:2026-11-21``) makes a scheduled run happen once."""

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    trigger: Mapped[str] = mapped_column(String(16))  # beat | cli
    status: Mapped[str] = mapped_column(String(16))  # running | clean | violations | failed
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    violations: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[Any | None] = mapped_column(JSON)


class TaskLock(Base):
    """A lease held by one periodic task run; expires so a crashed holder frees it."""

    __tablename__ = "task_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
