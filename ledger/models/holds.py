"""Holds: pending transfers reserving part of a wallet (docs/architecture.md "Money model")."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, BigId, check_in, utcnow


class HoldStatus(StrEnum):
    """``holds.status``: open until it ends exactly once."""

    OPEN = "open"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"

    ALL: ClassVar[frozenset[HoldStatus]]


HoldStatus.ALL = frozenset(HoldStatus)


class Hold(Base):
    """A pending transfer reserving ``amount`` credits of a wallet. Ends exactly once:
    captured (``captured`` ≤ amount, rest released), released or expired; ``close_key``
    is the operation key that ended it."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("captured >= 0 AND captured <= amount", name="captured_within_amount"),
        check_in("status", HoldStatus),
        Index("ix_holds_open_expiry", "status", "expires_at"),
        Index("ix_holds_user_created", "user_id", "created_at", "id"),
        # Partial: a wallet's released/expired holds only, so a wallet whose holds were all
        # captured does not walk them all to find none.
        Index("ix_holds_user_released", "user_id", "closed_at", "id",
              postgresql_where=text("status IN ('released', 'expired')"),
              sqlite_where=text("status IN ('released', 'expired')")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    op_key: Mapped[str] = mapped_column(String(200), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("wallets.user_id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=HoldStatus.OPEN)
    captured: Mapped[int] = mapped_column(BigInteger, default=0)
    close_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    job_id: Mapped[str | None] = mapped_column(String(40), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
