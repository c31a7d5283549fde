"""The outbox of outbound webhooks to the app: one row per job's terminal state."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, check_in, utcnow


class NotificationStatus(StrEnum):
    """``notifications.status``."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"    # retries exhausted; kept for an operator to replay
    SKIPPED = "skipped"  # no GPUBILL_NOTIFY_URL configured


class Notification(Base):
    """An outbound webhook to the app about a job's terminal state (outbox row).

    Written in the transaction that ends the job; ``id`` (``evt_…``) is the event id the
    app deduplicates on; ``payload`` is the exact JSON body that is signed and sent.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("job_id", "type"),
        Index("ix_notifications_status_next", "status", "next_attempt_at"),
        check_in("status", NotificationStatus),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
