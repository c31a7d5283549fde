"""Ledger tables (SQLAlchemy 2.0, typed). Money columns are BIGINT credits.

Double entry: a ``transactions`` row has ≥2 ``postings`` summing to zero. ``wallets``
caches ``balance`` (Σ postings on its account) and ``held`` (Σ open hold amounts), kept
in step in the same DB transaction. Holds are pending transfers that end exactly once.
Schema changes go through Alembic revisions in ``ledger/migrations``.
"""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Naive UTC now: one representation on SQLite and PostgreSQL alike."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


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


class HoldStatus:
    OPEN = "open"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"
    ALL = (OPEN, CAPTURED, RELEASED, EXPIRED)


class Hold(Base):
    """A pending transfer reserving ``amount`` credits of a wallet. Ends exactly once:
    captured (``captured`` ≤ amount, rest released), released or expired; ``close_key``
    is the operation key that ended it."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("captured >= 0 AND captured <= amount", name="captured_within_amount"),
        CheckConstraint("status IN ('open', 'captured', 'released', 'expired')", name="status_known"),
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


class JobStatus:
    REQUESTED = "requested"
    HELD = "held"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LOST = "lost"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    RUNNING = (DISPATCHED, IN_PROGRESS)
    TERMINAL = (COMPLETED, FAILED, TIMED_OUT, LOST, CANCELLED, EXPIRED, REJECTED)


class Job(Base):
    """A GPU export job, its frozen quote and its receipt (RunPod timings in ms)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_updated", "status", "updated_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.REQUESTED)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Quote, frozen at request time so settlement never depends on a later rate card.
    ratecard_version: Mapped[str] = mapped_column(String(32))
    endpoint_id: Mapped[str] = mapped_column(String(64))
    gpu: Mapped[str] = mapped_column(String(32))
    estimated_gpu_seconds: Mapped[Decimal] = mapped_column(Numeric(14, 3))
    hold_credits: Mapped[int] = mapped_column(BigInteger)
    max_gpu_seconds: Mapped[int] = mapped_column(Integer)
    credits_per_gpu_second: Mapped[Decimal] = mapped_column(Numeric(12, 6))
    min_charge: Mapped[int] = mapped_column(BigInteger)
    gpu_usd_per_second: Mapped[Decimal] = mapped_column(Numeric(12, 8))
    # Lifecycle.
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"))
    webhook_token: Mapped[str] = mapped_column(String(64), unique=True)
    runpod_job_id: Mapped[str | None] = mapped_column(String(100))
    runpod_status: Mapped[str | None] = mapped_column(String(16))
    dispatch_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Issue 11: the dispatch intent, recorded before /run (docs/runpod-boundary.md).
    dispatching_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Issue 11: unclassified task failures (poison jobs), task retries and re-publishes alike.
    task_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Issue 11: a /status refresh is scheduled for then; callbacks before it coalesce.
    refresh_due_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Receipt.
    delay_ms: Mapped[int | None] = mapped_column(BigInteger)
    execution_ms: Mapped[int | None] = mapped_column(BigInteger)
    charge: Mapped[int | None] = mapped_column(BigInteger)
    released: Mapped[int | None] = mapped_column(BigInteger)
    runpod_cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    # Issue 11: RunPod's bill (cold-start share of delayTime + executionTime, per second).
    runpod_billed_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    output: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    held_at: Mapped[datetime | None] = mapped_column(DateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Issue 4: cancel policy frozen with the quote; first IN_PROGRESS seen; a stop we
    # asked RunPod for (``stop_reason`` cancel | expire); lost jobs flagged for
    # operators; the silent-job poller's backoff (polls so far, next poll due).
    cancel_policy: Mapped[str] = mapped_column(String(16), default="charge_execution")
    in_progress_at: Mapped[datetime | None] = mapped_column(DateTime)
    stop_requested_at: Mapped[datetime | None] = mapped_column(DateTime)
    stop_reason: Mapped[str | None] = mapped_column(String(16))
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    status_polls: Mapped[int] = mapped_column(Integer, default=0)
    next_poll_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Outbox sweeper backoff: times re-published while stuck, and when next due.
    republishes: Mapped[int] = mapped_column(Integer, default=0)
    republish_at: Mapped[datetime | None] = mapped_column(DateTime)


class RunPodJob(Base):
    """Every RunPod job id we ever received for one of our jobs (docs/runpod-boundary.md).

    ``role``: ``billed`` (the job's recorded RunPod job, settled through its hold) or
    ``stray`` (a duplicate RunPod accepted — lost /run answer, re-dispatch — cancelled and
    written off as our loss). ``state``: ``open`` until its measured time is known, then
    ``settled``. ``execution_ms`` / ``delay_ms``: RunPod ``executionTime`` / ``delayTime``.
    """

    __tablename__ = "runpod_jobs"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(8), default="open")
    runpod_status: Mapped[str | None] = mapped_column(String(16))
    execution_ms: Mapped[int | None] = mapped_column(BigInteger)
    delay_ms: Mapped[int | None] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Outbox backoff of an open stray's cancel (the sweeper re-publishes it).
    republishes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    republish_at: Mapped[datetime | None] = mapped_column(DateTime)


class IdempotencyKey(Base):
    """The first answer to a ``POST /v1/jobs`` with an ``Idempotency-Key``, kept forever.

    Keyed by (``scope`` = the API key's id, ``key``); ``request_hash`` is the SHA-256 of
    the canonical JSON body; ``response`` is the JSON body answered with ``status_code``.
    """

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class NotificationStatus:
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


class EventStatus:
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"
    WRONG_MODE = "wrong_mode"  # livemode differs from the deployment's: not applied, reported


class StripeEvent(Base):
    """A Stripe webhook event exactly as received (raw body), keyed by ``evt_`` id."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_status_received", "status", "received_at"),)

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
    republishes: Mapped[int] = mapped_column(Integer, default=0)  # outbox sweeper backoff
    republish_at: Mapped[datetime | None] = mapped_column(DateTime)


class Topup(Base):
    """A credit purchase through one Stripe Checkout Session (credited at most once)."""

    __tablename__ = "topups"

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


class TopupStatus:
    OPEN = "open"            # session created, not paid yet (or paid by a delayed method)
    CREDITED = "credited"    # credits posted (once, op key ``topup:{session_id}``)
    FAILED = "failed"        # async_payment_failed: closed without credit
    EXPIRED = "expired"      # checkout.session.expired: closed without credit
    MISMATCH = "mismatch"    # paid amount/currency differ from the stored top-up: flagged


class ReversalStatus:
    ACTIVE = "active"            # refund pending/succeeded: its share is clawed back
    FAILED = "failed"            # refund failed/canceled: restored (terminal)
    WITHDRAWN = "withdrawn"      # dispute funds withdrawn: clawed back
    REINSTATED = "reinstated"    # dispute won / funds reinstated: restored (terminal)
    LOST = "lost"                # dispute lost: stays clawed back (terminal)
    WON = "won"                  # dispute won before any withdrawal was seen (terminal)
    INQUIRY = "inquiry"          # warning_* dispute: no funds moved
    TAKEN = (ACTIVE, WITHDRAWN, LOST)  # money Stripe took back from us


class Reversal(Base):
    """A Stripe refund (``re_``) or dispute (``dp_``) of a top-up's charge.

    ``amount`` is Stripe's amount in cents; ``clawed`` the net credits this reversal's
    steps moved out of the wallet (claw-back minus restore). Each step is one ledger
    transaction with its own operation key (``refund:{id}``, ``refund:{id}:restore``,
    ``dispute:{id}:withdrawn``, ``dispute:{id}:reinstated``), so it applies at most once.
    """

    __tablename__ = "stripe_reversals"

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
    with paid invoices.
    """

    __tablename__ = "stripe_subscriptions"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))  # Stripe's: trialing, active, canceled …
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime)
    snapshot_at: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# -- Operators (issue 5): API keys, audited adjustments, reconcile runs, task locks. --------


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
