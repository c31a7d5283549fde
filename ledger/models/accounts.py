"""Accounts, wallets and the double-entry journal (docs/architecture.md "Money model").

A ``transactions`` row has ≥2 ``postings`` summing to zero. ``wallets`` caches
``balance`` (Σ postings on its account) and ``held`` (Σ open hold amounts), kept in
step in the same DB transaction. Money columns are BIGINT credits.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, BigId, utcnow

# System accounts (docs/architecture.md "Money model"); wallets get ``wallet:{user_id}``.
STRIPE_CLEARING = "stripe:clearing"
REVENUE_GPU = "revenue:gpu"
PROMOTIONS = "promotions"
ADJUSTMENTS = "adjustments"
SYSTEM_ACCOUNTS = (STRIPE_CLEARING, REVENUE_GPU, PROMOTIONS, ADJUSTMENTS)


def wallet_account(user_id: str) -> str:
    return f"wallet:{user_id}"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # wallet | system
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Wallet(Base):
    __tablename__ = "wallets"
    __table_args__ = (CheckConstraint("held >= 0", name="held_not_negative"),)

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), unique=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def available(self) -> int:
        return self.balance - self.held


class LedgerTransaction(Base):
    """One money movement. ``op_key`` is its idempotency key, unique forever."""

    __tablename__ = "transactions"
    # A wallet's entries, newest first (ledger.entries) walk this index.
    __table_args__ = (Index("ix_transactions_user_created", "user_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    op_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # topup | capture | (clawback, adjust, ...)
    amount: Mapped[int] = mapped_column(BigInteger)  # the operation's amount, for replays
    user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    ref: Mapped[str | None] = mapped_column(String(200), index=True)  # session / job id
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Posting(Base):
    """One leg of a transaction; immutable. Positive = credit to the account."""

    __tablename__ = "postings"
    __table_args__ = (CheckConstraint("amount <> 0", name="amount_not_zero"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
