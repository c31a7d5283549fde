"""Job rows, the quote frozen in them, their receipt, and the notification (outbound
webhook) each terminal state leaves in the outbox."""
from __future__ import annotations

import calendar
import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from ledger.models import Job, JobStatus, Notification, NotificationStatus, StopReason, utcnow
from pricing import Quote, card_by_version, quote_body
from pricing.ratecard import Lifetimes


class db_utcnow(FunctionElement[datetime]):
    """The database's clock as naive UTC (the representation of every stored timestamp):
    deadlines such as hold expiry are compared with DB time, not a worker's clock."""

    type = DateTime()
    inherit_cache = True


@compiles(db_utcnow, "postgresql")
def _pg_now(element: Any, compiler: Any, **kw: Any) -> str:
    return "(now() AT TIME ZONE 'utc')"


@compiles(db_utcnow, "sqlite")
def _sqlite_now(element: Any, compiler: Any, **kw: Any) -> str:
    # Same text layout as SQLAlchemy stores DATETIME on SQLite, so comparisons hold.
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


# Why we asked RunPod to stop a job (``jobs.stop_reason``): the user's cancel, or its
# hold expired (aliases of ``StopReason``'s members).
STOP_CANCEL, STOP_EXPIRE = StopReason.CANCEL, StopReason.EXPIRE


# Operation keys of the job's ledger calls (one hold, then one capture, release or expiry).
def hold_key(job_id: str) -> str:
    return f"job:{job_id}:hold"


def capture_key(job_id: str) -> str:
    return f"job:{job_id}:capture"


def release_key(job_id: str) -> str:
    return f"job:{job_id}:release"


def expire_key(job_id: str) -> str:
    return f"job:{job_id}:expire"


def request_cancel(job: Job) -> bool:
    """Mark ``job`` (row-locked by the caller) for cancelling; the worker acts on it
    (``jobs.cancel``). False if the job already ended. Asking twice changes nothing."""
    if job.status in JobStatus.TERMINAL:
        return False
    if job.stop_reason is None:
        job.stop_requested_at = job.updated_at = utcnow()
        job.stop_reason = STOP_CANCEL
    return True


# Error prefixes of a job parked by ``services.poison`` (read by ``gpubill reconcile``).
PARKED = "parked after"
POISON_CANCELLED = "cancelled by the user; task failed"


def new_job(*, job_id: str, user_id: str, job_type: str, params: dict[str, Any],
            job_input: dict[str, Any], quote: Quote, webhook_token: str) -> Job:
    """A ``requested`` job priced by ``quote`` (credits, Decimal prices, GPU-seconds)."""
    now = utcnow()
    return Job(
        id=job_id, user_id=user_id, type=job_type, status=JobStatus.REQUESTED,
        params=params, input=job_input, ratecard_version=quote.ratecard_version,
        endpoint_id=quote.endpoint_id, gpu=quote.gpu,
        estimated_gpu_seconds=quote.estimated_gpu_seconds, hold_credits=quote.hold_credits,
        max_gpu_seconds=quote.max_gpu_seconds, credits_per_gpu_second=quote.credits_per_gpu_second,
        min_charge=quote.min_charge, gpu_usd_per_second=quote.gpu_usd_per_second,
        cancel_policy=quote.cancel_policy, webhook_token=webhook_token, dispatch_attempts=0,
        flagged=False, status_polls=0, created_at=now, updated_at=now,
    )


def job_quote(job: Job) -> Quote:
    """The quote frozen on the job when it was requested."""
    return Quote(job_type=job.type, ratecard_version=job.ratecard_version,
                 endpoint_id=job.endpoint_id, gpu=job.gpu,
                 estimated_gpu_seconds=job.estimated_gpu_seconds, hold_credits=job.hold_credits,
                 max_gpu_seconds=job.max_gpu_seconds,
                 credits_per_gpu_second=job.credits_per_gpu_second, min_charge=job.min_charge,
                 gpu_usd_per_second=job.gpu_usd_per_second, cancel_policy=job.cancel_policy)


def lifetimes_of(job: Job) -> Lifetimes:
    """Hold life and RunPod policy of ``job``, from its frozen quote and rate card."""
    return card_by_version(job.ratecard_version).lifetimes(job.max_gpu_seconds)


COST_BASIS = {
    "runpod_cost_usd": "executionTime x GPU USD/s: the GPU time the user paid for",
    "runpod_billed_usd": "RunPod's bill: cold-start share of delayTime + executionTime, "
                         "per second rounded up (RunPod serverless pricing)",
}


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def receipt(job: Job) -> dict[str, Any]:
    """The job and its receipt (``GET /v1/jobs/{id}``, notification payloads).

    Credits are ints; ``runpod_cost_usd`` (RunPod ``executionTime`` × the GPU's USD per
    second: the GPU time the user paid for) and ``margin_usd`` (charge at $0.01 a credit
    − that cost), ``runpod_billed_usd`` (what RunPod bills us: cold-start share of
    ``delayTime`` + ``executionTime``, per second rounded up) and ``billed_margin_usd``
    are decimal strings; ``cost_basis`` says which is which; RunPod ``delay_ms``/``execution_ms``
    are milliseconds; timestamps ISO UTC.
    """
    cost, billed = job.runpod_cost_usd, job.runpod_billed_usd
    margin = billed_margin = None
    if cost is not None and job.charge is not None:
        margin = str(Decimal(job.charge) / 100 - cost)  # 1 credit = $0.01 list price
    if billed is not None and job.charge is not None:
        billed_margin = str(Decimal(job.charge) / 100 - billed)
    timestamps = {"requested": job.created_at, "held": job.held_at,
                  "dispatched": job.dispatched_at, "in_progress": job.in_progress_at,
                  "stop_requested": job.stop_requested_at}
    if job.status in JobStatus.TERMINAL:
        timestamps[job.status] = job.finished_at
    return {
        "job_id": job.id, "user_id": job.user_id, "type": job.type, "status": job.status,
        "params": job.params,
        "quote": quote_body(job_quote(job)),
        "hold": job.hold_credits if job.hold_id is not None else 0,
        "runpod": {"job_id": job.runpod_job_id, "status": job.runpod_status,
                   "delay_ms": job.delay_ms, "execution_ms": job.execution_ms},
        "charge": job.charge, "released": job.released,
        "runpod_cost_usd": str(cost) if cost is not None else None, "margin_usd": margin,
        "runpod_billed_usd": str(billed) if billed is not None else None,
        "billed_margin_usd": billed_margin, "cost_basis": COST_BASIS,
        "output": job.output, "error": job.error,
        "stop_reason": job.stop_reason, "flagged": bool(job.flagged),
        "created_at": _ts(job.created_at), "held_at": _ts(job.held_at),
        "dispatched_at": _ts(job.dispatched_at), "finished_at": _ts(job.finished_at),
        "timestamps": {k: _ts(v) for k, v in timestamps.items() if v is not None},
    }


# Terminal status → outbound event type. timed_out and lost are failures to the app
# (nothing charged); the object's ``status`` says which (docs/decisions.md).
EVENT_TYPES = {
    JobStatus.COMPLETED: "job.completed", JobStatus.FAILED: "job.failed",
    JobStatus.TIMED_OUT: "job.failed", JobStatus.LOST: "job.failed",
    JobStatus.CANCELLED: "job.cancelled", JobStatus.EXPIRED: "job.expired",
    JobStatus.REJECTED: "job.rejected",
}


def add_notification(s: Session, job: Job, status: str = NotificationStatus.PENDING) -> str:
    """Store the outbound webhook for ``job``'s terminal state in the caller's
    transaction; returns its event id (``evt_…``). Payload, Stripe-shaped:
    ``{id, object: "event", type, created (unix s), data: {object: receipt}}``.
    ``status`` ``skipped`` keeps the record when no app URL is configured."""
    now = utcnow()
    event_id = f"evt_{uuid.uuid4().hex}"
    event_type = EVENT_TYPES[JobStatus(job.status)]
    payload = json.dumps({"id": event_id, "object": "event", "type": event_type,
                          "created": calendar.timegm(now.timetuple()),
                          "data": {"object": receipt(job)}}, separators=(",", ":"))
    s.add(Notification(id=event_id, job_id=job.id, type=event_type, payload=payload,
                       status=status, attempts=0, created_at=now,
                       next_attempt_at=now))
    return event_id
