"""The job aggregate: one ``jobs`` row in named parts (docs/architecture.md "Job lifecycle").

``Job`` is one table — the hold/capture path reads and writes it by primary key with no
join (issue 17) — composed of declarative mixins, one per part:

- ``FrozenQuote``: the price, fixed when the job is requested (``ledger.jobs.job_quote``);
- ``Lifecycle``: status, the hold, the RunPod job, and when each step happened;
- ``Receipt``: what RunPod measured and what the user was charged;
- ``StopRequest``: a stop we asked RunPod for (the user's cancel, or hold expiry);
- ``Scheduling``: the /status refresh, the silent-job poller's and the outbox's backoffs.

Allowed status changes are in ``ledger.transitions``. Also here: every RunPod job id we
received (``RunPodJob``) and the stored answers of ``POST /v1/jobs`` (``IdempotencyKey``).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Backoff, Base, Republishing, check_in, utcnow


class JobStatus(StrEnum):
    """``jobs.status``, as the HTTP API shows it. Changes: ``ledger.transitions``."""

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

    NOT_STARTED: ClassVar[frozenset[JobStatus]]  # not on RunPod yet
    RUNNING: ClassVar[frozenset[JobStatus]]      # on RunPod
    TERMINAL: ClassVar[frozenset[JobStatus]]     # ended; never changes again


JobStatus.NOT_STARTED = frozenset({JobStatus.REQUESTED, JobStatus.HELD})
JobStatus.RUNNING = frozenset({JobStatus.DISPATCHED, JobStatus.IN_PROGRESS})
JobStatus.TERMINAL = frozenset(JobStatus) - JobStatus.NOT_STARTED - JobStatus.RUNNING


class StopReason(StrEnum):
    """``jobs.stop_reason``: why we asked RunPod to stop the job."""

    CANCEL = "cancel"  # the user's cancel
    EXPIRE = "expire"  # its hold expired


class FrozenQuote:
    """The quote, frozen at request time so settlement never depends on a later rate
    card (prices Decimal, GPU-seconds, credits int)."""

    ratecard_version: Mapped[str] = mapped_column(String(32))
    endpoint_id: Mapped[str] = mapped_column(String(64))
    gpu: Mapped[str] = mapped_column(String(32))
    estimated_gpu_seconds: Mapped[Decimal] = mapped_column(Numeric(14, 3))
    hold_credits: Mapped[int] = mapped_column(BigInteger)
    max_gpu_seconds: Mapped[int] = mapped_column(Integer)
    credits_per_gpu_second: Mapped[Decimal] = mapped_column(Numeric(12, 6))
    min_charge: Mapped[int] = mapped_column(BigInteger)
    gpu_usd_per_second: Mapped[Decimal] = mapped_column(Numeric(12, 8))
    cancel_policy: Mapped[str] = mapped_column(String(16), default="charge_execution")


class Lifecycle:
    """Where the job is: ``status`` (``JobStatus``), its hold, its RunPod job, and when
    each step happened (naive UTC). ``dispatching_at``: the dispatch intent, recorded
    before /run (docs/runpod-boundary.md); ``task_failures``: unclassified task failures
    (poison jobs); ``flagged``: on the operators' list (lost, parked)."""

    status: Mapped[str] = mapped_column(String(16), default=JobStatus.REQUESTED)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"))
    webhook_token: Mapped[str] = mapped_column(String(64), unique=True)
    runpod_job_id: Mapped[str | None] = mapped_column(String(100))
    runpod_status: Mapped[str | None] = mapped_column(String(16))
    dispatch_attempts: Mapped[int] = mapped_column(Integer, default=0)
    dispatching_at: Mapped[datetime | None] = mapped_column(DateTime)
    task_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    held_at: Mapped[datetime | None] = mapped_column(DateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime)
    in_progress_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Receipt:
    """What the job cost: RunPod ``delayTime``/``executionTime`` (ms), credits charged
    and released (int), our cost in USD (``executionTime`` × GPU USD/s) and RunPod's
    bill (cold-start share of ``delayTime`` + ``executionTime``, per second), the
    output or error."""

    delay_ms: Mapped[int | None] = mapped_column(BigInteger)
    execution_ms: Mapped[int | None] = mapped_column(BigInteger)
    charge: Mapped[int | None] = mapped_column(BigInteger)
    released: Mapped[int | None] = mapped_column(BigInteger)
    runpod_cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    runpod_billed_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    output: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class StopRequest:
    """A stop we asked RunPod for: when, and why (``StopReason``; NULL: none)."""

    stop_requested_at: Mapped[datetime | None] = mapped_column(DateTime)
    stop_reason: Mapped[str | None] = mapped_column(String(16))


class Scheduling(Republishing):
    """When the workers look at the job again: ``refresh_due_at`` (a /status refresh is
    scheduled; callbacks before it coalesce), ``last_checked_at`` (RunPod last asked),
    the silent-job poller's backoff (``status_polls``, ``next_poll_at``: ``polling()``)
    and the outbox sweeper's (``republishes``, ``republish_at``: ``republishing()``)."""

    refresh_due_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime)
    status_polls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_poll_at: Mapped[datetime | None] = mapped_column(DateTime)

    @classmethod
    def polling(cls) -> Backoff:
        """The silent-job poller's schedule as a ``Backoff``."""
        return Backoff(cls.status_polls, cls.next_poll_at)


class Job(FrozenQuote, Lifecycle, Receipt, StopRequest, Scheduling, Base):
    """A GPU export job of ``user_id``: what was asked (``type``, ``params``,
    ``input``) and the parts above (one row)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_updated", "status", "updated_at"),
        check_in("status", JobStatus),
        check_in("stop_reason", StopReason),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)


class RunPodRole(StrEnum):
    BILLED = "billed"  # the job's recorded RunPod job, settled through its hold
    STRAY = "stray"    # a duplicate RunPod accepted: cancelled, written off as our loss


class RunPodState(StrEnum):
    OPEN = "open"        # measured time not known yet
    SETTLED = "settled"


class RunPodJob(Republishing, Base):
    """Every RunPod job id we ever received for one of our jobs (docs/runpod-boundary.md).

    ``role``: ``RunPodRole``; ``state``: ``RunPodState``. ``execution_ms`` / ``delay_ms``:
    RunPod ``executionTime`` / ``delayTime``. ``republishes``/``republish_at``: the outbox
    backoff of an open stray's cancel (the sweeper re-publishes it).
    """

    __tablename__ = "runpod_jobs"
    __table_args__ = (check_in("role", RunPodRole), check_in("state", RunPodState))

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(8), default=RunPodState.OPEN)
    runpod_status: Mapped[str | None] = mapped_column(String(16))
    execution_ms: Mapped[int | None] = mapped_column(BigInteger)
    delay_ms: Mapped[int | None] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime)


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
