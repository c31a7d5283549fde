"""What Stripe told us and the money it moved: webhook events (inbox rows), top-ups
(one per Checkout Session), refunds and disputes, customers and subscriptions.
Amounts from Stripe are cents; credits are ints."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, BigId, Republishing, check_in, utcnow


class EventStatus(StrEnum):
    """``stripe_events.status``."""

    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"
    WRONG_MODE = "wrong_mode"  # livemode differs from the deployment's: not applied, reported


class StripeEvent(Republishing, Base):
    """A Stripe webhook event exactly as received (raw body), keyed by ``evt_`` id;
    re-published by the outbox sweeper while ``received`` (``Republishing``)."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_status_received", "status", "received_at"),
                      check_in("status", EventStatus))

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    livemode: Mapped[bool] = mapped_column(Boolean)
    api_version: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime)


class TopupStatus(StrEnum):
    """``topups.status``."""

    OPEN = "open"            # session created, not paid yet (or paid by a delayed method)
    CREDITED = "credited"    # credits posted (once, op key ``topup:{session_id}``)
    FAILED = "failed"        # async_payment_failed: closed without credit
    EXPIRED = "expired"      # checkout.session.expired: closed without credit
    MISMATCH = "mismatch"    # paid amount/currency differ from the stored top-up: flagged


class Topup(Base):
    """A credit purchase through one Stripe Checkout Session (credited at most once)."""

    __tablename__ = "topups"
    __table_args__ = (check_in("status", TopupStatus),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    checkout_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    pack: Mapped[str] = mapped_column(String(32))
    credits: Mapped[int] = mapped_column(BigInteger)
    amount_total: Mapped[int] = mapped_column(BigInteger)  # cents, from Stripe
    currency: Mapped[str] = mapped_column(String(3))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16))  # TopupStatus
    event_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    credited_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Issue 3: the session ↔ payment_intent ↔ charge link, the Stripe customer (for
    # subscription invoices), why a top-up was flagged or closed, when it closed.
    charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)


class ReversalStatus(StrEnum):
    """``stripe_reversals.status``."""

    ACTIVE = "active"            # refund pending/succeeded: its share is clawed back
    FAILED = "failed"            # refund failed/canceled: restored (terminal)
    WITHDRAWN = "withdrawn"      # dispute funds withdrawn: clawed back
    REINSTATED = "reinstated"    # dispute won / funds reinstated: restored (terminal)
    LOST = "lost"                # dispute lost: stays clawed back (terminal)
    WON = "won"                  # dispute won before any withdrawal was seen (terminal)
    INQUIRY = "inquiry"          # warning_* dispute: no funds moved

    TAKEN: ClassVar[frozenset[ReversalStatus]]  # money Stripe took back from us


ReversalStatus.TAKEN = frozenset({ReversalStatus.ACTIVE, ReversalStatus.WITHDRAWN, ReversalStatus.LOST})


class Reversal(Base):
    """A Stripe refund (``re_``) or dispute (``dp_``) of a top-up's charge.

    ``amount`` is Stripe's amount in cents; ``clawed`` the net credits this reversal's
    steps moved out of the wallet (claw-back minus restore). Each step is one ledger
    transaction with its own operation key (``refund:{id}``, ``refund:{id}:restore``,
    ``dispute:{id}:withdrawn``, ``dispute:{id}:reinstated``), so it applies at most once.
    """

    __tablename__ = "stripe_reversals"
    __table_args__ = (check_in("status", ReversalStatus),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # refund | dispute
    topup_id: Mapped[int] = mapped_column(ForeignKey("topups.id"), index=True)
    charge_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)  # cents
    status: Mapped[str] = mapped_column(String(16))  # ReversalStatus
    clawed: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class StripeCustomer(Base):
    """Stripe customer (``cus_``) → wallet, learned from a paid Checkout Session; used to
    credit subscription invoices (``invoice.paid``)."""

    __tablename__ = "stripe_customers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class StripeSubscription(Base):
    """A Stripe subscription (``sub_``) of a wallet, as its latest event showed it.

    Learned from the subscription Checkout Session (``checkout.session.completed``,
    ``mode=subscription``) and kept current by ``customer.subscription.created`` /
    ``updated`` / ``deleted``; ``snapshot_at`` (the event's ``created``, s) keeps an
    older snapshot delivered late from overwriting a newer one. No money: credits come
    with paid invoices. ``status`` is Stripe's (trialing, active, canceled …): no CHECK.
    """

    __tablename__ = "stripe_subscriptions"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime)
    snapshot_at: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
